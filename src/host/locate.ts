/**
 * Finding external programs the way a GUI app launched by launchd must: launchd hands us a
 * bare PATH (/usr/bin:/bin:/usr/sbin:/sbin), so nix and vfkit are rarely on it.
 * Order: explicit setting or env var, then the login shell's PATH (and ours), then the
 * standard Nix profile locations.
 */
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ProgramNotFoundError, resolveProgram } from './runner.ts';

/** The standard places a Nix install puts binaries, system-wide and per user. */
export function nixProfileDirs(home = os.homedir(), user = os.userInfo().username): string[] {
  return [
    '/nix/var/nix/profiles/default/bin',
    path.join(home, '.nix-profile', 'bin'),
    `/etc/profiles/per-user/${user}/bin`,
    '/run/current-system/sw/bin',
    '/opt/homebrew/bin',
    '/usr/local/bin',
  ];
}

let loginPathCache: string[] | undefined;

/**
 * The PATH a login shell would have. Asked once and cached; a broken shell rc costs at most
 * the timeout and yields nothing rather than an error.
 */
export function loginShellPath(): string[] {
  if (loginPathCache) return loginPathCache;
  loginPathCache = [];
  if (process.env.NIXVM_NO_LOGIN_SHELL) return loginPathCache;
  const shell = process.env.SHELL || (process.platform === 'darwin' ? '/bin/zsh' : '/bin/sh');
  try {
    // Not through the runner: this is the runner's own bootstrap and must stay synchronous.
    // `env` prints PATH colon-joined whatever the shell (fish keeps "$PATH" as a list).
    const out = execFileSync(shell, ['-l', '-c', '/usr/bin/env'], {
      encoding: 'utf8',
      timeout: 3000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const line = out.split('\n').findLast((l) => l.startsWith('PATH='));
    if (line) loginPathCache = line.slice('PATH='.length).split(path.delimiter).filter(Boolean);
  } catch {
    // A shell that fails or hangs just contributes nothing.
  }
  return loginPathCache;
}

export interface LocateOptions {
  /** A path from the settings; wins over everything. */
  explicit?: string | undefined;
  /** An env var that names the binary (NIXVM_NIX, NIXVM_VFKIT). */
  envVar?: string;
  /** Extra directories to try last. */
  extraDirs?: string[];
  /** What to install when it is missing, for the error sentence. */
  installHint?: string;
}

/** Resolve a program to an absolute path, or throw a ProgramNotFoundError naming every place looked. */
export function locateProgram(name: string, opts: LocateOptions = {}): string {
  const fromEnv = opts.envVar ? process.env[opts.envVar] : undefined;
  const explicit = opts.explicit || fromEnv;
  if (explicit) {
    try {
      return resolveProgram(explicit);
    } catch {
      const from = opts.explicit ? `The ${name} path in the settings` : opts.envVar;
      throw new ProgramNotFoundError(
        name,
        [explicit],
        undefined,
        `${from}, ${explicit}, is not an executable file; fix or clear it.`,
      );
    }
  }
  const ownPath = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const dirs = [...new Set([...loginShellPath(), ...ownPath, ...nixProfileDirs(), ...(opts.extraDirs ?? [])])];
  try {
    return resolveProgram(name, dirs);
  } catch {
    // Twenty directories read as noise: say where in short; `nixvm doctor` lists them all.
    const extra = (opts.extraDirs ?? []).filter((d) => !nixProfileDirs().includes(d));
    const where = ['your PATH', '/opt/homebrew/bin', '/usr/local/bin', ...extra].join(', ');
    throw new ProgramNotFoundError(
      name,
      dirs,
      opts.installHint,
      `Could not find ${name} in ${where} or the Nix profiles${opts.installHint ? `; ${opts.installHint}` : ''} (\`nixvm doctor\` lists every directory searched).`,
    );
  }
}
