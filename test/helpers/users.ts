/**
 * Another local user, for the tests of what one user must not be able to do to another's agent.
 * Needs root (useradd, setpriv); `rootOnly` says why a test does not run otherwise. CI runs
 * as root, so these run there.
 */
import { execFileSync } from 'node:child_process';

export const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

/** The reason printed when a test needing root is skipped (null when it runs). */
export function rootReason(what: string, why = 'to create a second local user and act as it'): string | null {
  if (IS_ROOT) return null;
  return `skipped: ${what} needs root (${why}); CI runs these as root.`;
}

/**
 * rootReason, said in the test output at once: vitest's default reporter prints a skipped test's
 * name and note nowhere, so without this line a run as another user skips it silently.
 */
export function rootOnly(file: string, what: string, why?: string): string | null {
  const reason = rootReason(what, why);
  if (reason) console.log(`${file}: ${reason}`);
  return reason;
}

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  /** argv that runs `argv` as this user (setpriv, no shell). */
  as(argv: string[]): string[];
}

/** A system user for tests (created once with useradd, no home, no login shell). */
export function testUser(name = 'nixvm-other'): TestUser {
  const id = (flag: string): number =>
    Number(execFileSync('id', [flag, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  try {
    id('-u');
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', name], {
      stdio: 'ignore',
    });
  }
  const uid = id('-u');
  const gid = id('-g');
  return {
    name,
    uid,
    gid,
    as: (argv) => ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', ...argv],
  };
}
