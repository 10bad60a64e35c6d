/**
 * The vfkit binary: where it is and whether it is new enough.
 * nixvm needs vfkit ≥ 0.6.2: that release added `--pidfile` (adoption after an agent restart) and
 * a SIGTERM handler that asks the guest to shut down before forcing it.
 */
import { realpathSync, statSync } from 'node:fs';
import { locateProgram } from '../../host/locate.ts';
import { run, RunError } from '../../host/runner.ts';

export const MIN_VFKIT_VERSION = '0.6.2';

const INSTALL_HINT =
  'install it with `brew install vfkit` or `nix profile install nixpkgs#vfkit`, or set its path in the settings';

/**
 * Find vfkit: the settings' path, then NIXVM_VFKIT, then the login shell's PATH, our PATH, the
 * Nix profiles and Homebrew. A configured path that is wrong is reported as such, not as "missing".
 */
export function locateVfkit(setting?: string | null): string {
  return locateProgram('vfkit', {
    explicit: setting ?? undefined,
    envVar: 'NIXVM_VFKIT',
    extraDirs: ['/opt/homebrew/bin', '/usr/local/bin'],
    installHint: INSTALL_HINT,
  });
}

/** A vfkit older than we need; names what was found and what to do. */
export class VfkitVersionError extends Error {
  readonly bin: string;
  readonly found: string;
  readonly required: string;
  constructor(bin: string, found: string, required = MIN_VFKIT_VERSION) {
    super(
      `vfkit ${found} at ${bin} is too old: nixvm needs vfkit ${required} or newer (for --pidfile and a graceful SIGTERM); ` +
        'upgrade it with `brew upgrade vfkit` or `nix profile upgrade`, or point the vfkit setting at a newer one.',
    );
    this.name = 'VfkitVersionError';
    this.bin = bin;
    this.found = found;
    this.required = required;
  }
}

export interface VfkitVersion {
  bin: string;
  /** As vfkit prints it, e.g. `v0.6.2` or `v0.6.2-12-gabc1234`; null when it printed none (a `go build` dev build). */
  version: string | null;
  /** [major, minor, patch], or null when the version is unknown. */
  parts: [number, number, number] | null;
}

/**
 * Read a version out of `vfkit --version`. vfkit sets cobra's template to
 * `vfkit version: <version>\n` (the colon is there "for crc's convenience", cmd/vfkit/root.go);
 * <version> comes from `git describe` (v0.6.2, v0.6.2-3-gdeadbee), a tarball's describe, the Go
 * module version, or is empty/"unknown" for local builds.
 */
export function parseVfkitVersion(output: string): { version: string | null; parts: [number, number, number] | null } {
  const line = output.split('\n').find((l) => /version/i.test(l)) ?? output;
  const m = line.match(/version:?\s*(\S*)/i);
  const version = m?.[1] && m[1] !== 'unknown' ? m[1] : null;
  const n = (version ?? '').match(/^v?(\d+)\.(\d+)(?:\.(\d+))?/);
  if (!version || !n) return { version, parts: null };
  return { version, parts: [Number(n[1]), Number(n[2]), Number(n[3] ?? 0)] };
}

export function compareVersions(a: [number, number, number], b: [number, number, number]): number {
  for (let i = 0; i < 3; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Run `vfkit --version` through the runner. */
export async function vfkitVersion(
  bin: string,
  opts: { env?: Record<string, string | undefined> } = {},
): Promise<VfkitVersion> {
  let out: string;
  try {
    const r = await run([bin, '--version'], { env: opts.env, timeoutMs: 10_000 });
    out = r.stdout + r.stderr;
  } catch (e) {
    const why = e instanceof RunError ? e.message : (e as Error).message;
    throw new Error(`Could not ask ${bin} for its version (${why}); check that the vfkit setting points at vfkit.`);
  }
  return { bin, ...parseVfkitVersion(out) };
}

const checked = new Map<string, Promise<VfkitVersion>>();

/**
 * Check once per binary that vfkit is new enough; throws VfkitVersionError naming the version found.
 * The cache key includes the resolved file and its mtime, so `brew upgrade vfkit` is noticed
 * without restarting the agent. A build that prints no version is let through: we cannot tell.
 */
export function checkVfkitVersion(
  bin: string,
  opts: { env?: Record<string, string | undefined> } = {},
): Promise<VfkitVersion> {
  let key = bin;
  try {
    const real = realpathSync(bin);
    key = `${real}@${statSync(real).mtimeMs}`;
  } catch {
    // Missing binary: let vfkitVersion report it.
  }
  if (opts.env) key += `|${JSON.stringify(opts.env)}`;
  let p = checked.get(key);
  if (!p) {
    p = vfkitVersion(bin, opts).then((v) => {
      const min = parseVfkitVersion(`version: ${MIN_VFKIT_VERSION}`).parts!;
      if (v.parts && compareVersions(v.parts, min) < 0)
        throw new VfkitVersionError(bin, (v.version ?? '?').replace(/^v/, ''));
      return v;
    });
    checked.set(key, p);
    // A failure to run it at all may be transient (a half-finished upgrade): do not cache that.
    p.catch((e) => {
      if (!(e instanceof VfkitVersionError)) checked.delete(key);
    });
  }
  return p;
}
