/** CI runs the nix-facing tests on three Nix versions: every test file that runs nix must be listed. */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { REPO_DIR } from '../helpers/fixtures.ts';

/** What a test file does when it runs real nix (directly, through an Agent, or on a fixture flake). */
const RUNS_NIX = /Nix\.locate\(|createTestAgent\(|copyFixture\(|\.\/harness\.ts'/;

it('.ci/nix-facing-tests names every test file that runs real nix', () => {
  const listed = readFileSync(path.join(REPO_DIR, '.ci', 'nix-facing-tests'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.replace(/^-/, ''));
  const testFiles = readdirSync(path.join(REPO_DIR, 'test'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => path.posix.join('test', f.split(path.sep).join('/')));
  const runsNix = testFiles.filter((f) => RUNS_NIX.test(readFileSync(path.join(REPO_DIR, f), 'utf8'))).sort();
  expect(runsNix, 'add the new nix-facing test file to .ci/nix-facing-tests').toEqual(
    runsNix.filter((f) => listed.includes(f)),
  );
  expect(
    listed.filter((f) => !testFiles.includes(f)),
    'files in .ci/nix-facing-tests that do not exist',
  ).toEqual([]);
});
