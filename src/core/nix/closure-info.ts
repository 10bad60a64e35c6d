/**
 * What a store image is made of, asked of nix: a flake attribute realised for the host (the
 * flake's own `virtualisation.host.pkgs.erofs-utils`), a closure's store paths, and its
 * registration info as nixpkgs' closureInfo makes it (the `nix-store --load-db` format: path,
 * NAR hash, NAR size, deriver, references), added to the store as a `closure-info` path like
 * closureInfo's output, so the image carries it as the seed's runner's does.
 *
 * Every call works on Nix 2.8, current Nix and Lix: `nix-store` (the multi-call binary next to
 * `nix`) for queries, `nix build --json` for realising.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run, RunError } from '../../host/runner.ts';
import { nixErrorText, trimSentence } from './errors.ts';
import { EVAL_ARGS, flakeInstallable, type Nix } from './nix.ts';

/** `nix-store` beside `nix` (a symlink to the same multi-call binary in every install). */
export function nixStoreBin(nix: Nix): string {
  return path.join(path.dirname(nix.bin), 'nix-store');
}

/** One sentence for a failed nix call about `what`, with nix's last words. */
export class ClosureInfoError extends Error {
  readonly detail: string;
  constructor(message: string, detail = '') {
    super(message);
    this.name = 'ClosureInfoError';
    this.detail = detail;
  }
}

function failure(what: string, err: unknown): ClosureInfoError {
  if (err instanceof RunError) {
    const text = nixErrorText(err.stderr);
    return new ClosureInfoError(`${what} failed: ${trimSentence(text || err.message, 300)}`, text);
  }
  return new ClosureInfoError(`${what} failed: ${err instanceof Error ? err.message : String(err)}`);
}

/** Build (or fetch) a flake attribute and return its `out` path. */
export async function realiseAttr(
  nix: Nix,
  flake: string,
  attrPath: readonly string[],
  opts: { signal?: AbortSignal } = {},
): Promise<string> {
  const installable = flakeInstallable(flake, attrPath);
  let stdout: string;
  try {
    ({ stdout } = await run(nix.argv('build', '--no-link', '--json', ...EVAL_ARGS, installable), {
      signal: opts.signal,
      stderrTailChars: 8000,
    }));
  } catch (err) {
    throw failure(`Building ${attrPath.join('.')}`, err);
  }
  const out = (JSON.parse(stdout) as Array<{ outputs?: Record<string, string> }>)[0]?.outputs?.out;
  if (!out) throw new ClosureInfoError(`Building ${attrPath.join('.')} gave no output path.`);
  return out;
}

/** Every store path in the closure of `roots`, sorted. */
export async function closurePaths(nix: Nix, roots: readonly string[]): Promise<string[]> {
  try {
    const { stdout } = await run([nixStoreBin(nix), '--query', '--requisites', ...roots]);
    return [...new Set(stdout.split('\n').filter((l) => l.startsWith('/')))].sort();
  } catch (err) {
    throw failure(`Listing the closure of ${roots.join(', ')}`, err);
  }
}

/** Paths per `nix-store --dump-db` call: well under macOS's 1 MiB argument limit. */
const DUMP_CHUNK = 2000;

export interface Registration {
  /** The `nix-store --load-db` text for every path. */
  text: string;
  /** The sum of the paths' NAR sizes. */
  narBytes: number;
}

/** Registration info of `paths` (which must all be valid), as closureInfo's `registration` file. */
export async function registration(nix: Nix, paths: readonly string[]): Promise<Registration> {
  const parts: string[] = [];
  for (let i = 0; i < paths.length; i += DUMP_CHUNK) {
    try {
      const { stdout } = await run([nixStoreBin(nix), '--dump-db', ...paths.slice(i, i + DUMP_CHUNK)]);
      parts.push(stdout.endsWith('\n') || stdout === '' ? stdout : `${stdout}\n`);
    } catch (err) {
      throw failure('Reading the registration info of the closure', err);
    }
  }
  const text = parts.join('');
  return { text, narBytes: narBytesOf(text) };
}

/** The NAR sizes in a registration text (path, hash, size, deriver, n, n references; repeated). */
export function narBytesOf(text: string): number {
  const lines = text.split('\n');
  let total = 0;
  for (let i = 0; i + 4 < lines.length; ) {
    const size = Number(lines[i + 2]);
    const refs = Number(lines[i + 4]);
    if (!Number.isFinite(size) || !Number.isInteger(refs)) break;
    total += size;
    i += 5 + refs;
  }
  return total;
}

/**
 * Add a closure-info directory (registration, store-paths, total-nar-size, as nixpkgs'
 * closureInfo lays it out) to the store; returns its store path. Content-addressed: the same
 * closure gives the same path.
 */
export async function addClosureInfo(nix: Nix, paths: readonly string[], reg: Registration): Promise<string> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-closure-info-'));
  const dir = path.join(tmp, 'closure-info');
  try {
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'registration'), reg.text);
    fs.writeFileSync(path.join(dir, 'store-paths'), paths.map((p) => `${p}\n`).join(''));
    fs.writeFileSync(path.join(dir, 'total-nar-size'), `${reg.narBytes}\n`);
    // Fixed modes and times, so the same closure always adds the same path.
    for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o444);
    const { stdout } = await run([nixStoreBin(nix), '--add', dir]);
    const out = stdout.trim().split('\n').at(-1) ?? '';
    if (!out.startsWith('/')) throw new Error(`nix-store --add printed ${JSON.stringify(stdout.slice(0, 200))}`);
    return out;
  } catch (err) {
    throw failure('Adding the closure info to the store', err);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
