/**
 * vitest globalSetup: say once, at the top of the run, which nix the tests run against (CI runs
 * the nix-facing tests on several versions; the output must show which one each run used).
 */
import { execFileSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { Nix } from '../src/core/nix/nix.ts';

export default function setup(): void {
  // Found the way the tests find it (test/setup-env.ts turns the login-shell probe off for them).
  process.env.NIXVM_NO_LOGIN_SHELL = '1';
  let line: string;
  try {
    const { bin } = Nix.locate();
    const version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
    const real = realpathSync(bin);
    line = `Nix under test: ${version} at ${bin}${real === bin ? '' : ` (${real})`}`;
  } catch (err) {
    line = `Nix under test: none (${(err as Error).message})`;
  }
  console.log(line);
}
