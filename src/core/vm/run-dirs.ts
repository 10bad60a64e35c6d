/**
 * The directories behind the seed runner's share words, per VM, and the names of its files:
 *
 *   <vm dir>/tmp/                the run's scratch directory ($TMPDIR): made afresh before each
 *                                boot (xchg, certs, every "$TMPDIR"/… share), removed when the run
 *                                ends, and at adoption when its run is found gone
 *   <vm dir>/keys/               the VM's keys directory ($KEYS): private (0700), kept
 *   <vm dir>/store-writable.img  the persistent writable store image (disks.ts)
 *
 * Paths are fixed per VM (one run at a time), so what a run was given can be compared with what
 * the flake says now. The supervisor owns the scratch directory's life (it knows when a run ends);
 * this module only names, resolves and fills.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { SharedDir, ShareWord, VmSpec } from '../../api/types.ts';
import type { VmRuntimePaths } from './runtime-paths.ts';

/** $TMPDIR of the VM's runs. */
export function scratchDir(p: Pick<VmRuntimePaths, 'dir'>): string {
  return path.join(p.dir, 'tmp');
}

/** $KEYS: the VM's private keys directory. */
export function keysDir(p: Pick<VmRuntimePaths, 'dir'>): string {
  return path.join(p.dir, 'keys');
}

/** The persistent writable store image (the seed runner's store-writable.img). */
export function writableImagePath(p: Pick<VmRuntimePaths, 'dir'>): string {
  return path.join(p.dir, 'store-writable.img');
}

/** The exchange directory the seed's runner always makes ($TMPDIR/xchg). */
export const XCHG = 'xchg';
/** Where useHostCerts puts the host's CA bundle, as the seed's runner does. */
export const CERTS_DIR = 'certs';
export const CERTS_FILE = 'ca-certificates.crt';

export interface ShareContext {
  scratch: string;
  keys: string;
  /** The VM's shared folder (its setting, else the agent's SHARED_DIR), absolute, or null. */
  sharedDir: string | null;
}

function below(dir: string, rel: string): string {
  return rel === '' ? dir : path.join(dir, rel);
}

/** Where a word share's source is for this VM. */
export function wordPath(w: ShareWord, ctx: ShareContext): string {
  switch (w.word) {
    case 'TMPDIR':
      return below(ctx.scratch, w.rel);
    case 'KEYS':
      return below(ctx.keys, w.rel);
    case 'SHARED_DIR':
      if (ctx.sharedDir) return ctx.sharedDir;
      return 'path' in w.fallback ? w.fallback.path : wordPath(w.fallback, ctx);
  }
}

/** The shares with every source an absolute host path. */
export function resolveShares(shares: readonly SharedDir[], ctx: ShareContext): SharedDir[] {
  return shares.map((s) => (s.word ? { ...s, source: wordPath(s.word, ctx) } : s));
}

/** The spec as it runs: its shares resolved. The same object when it has no word shares. */
export function resolveSpec(spec: VmSpec, ctx: ShareContext): VmSpec {
  return spec.shares.some((s) => s.word) ? { ...spec, shares: resolveShares(spec.shares, ctx) } : spec;
}

/** Is this share's source a directory nixvm makes (scratch or keys) rather than one the user provides? */
export function madeByNixvm(s: SharedDir, ctx: ShareContext): boolean {
  if (!s.word) return false;
  if (s.word.word !== 'SHARED_DIR') return true;
  return ctx.sharedDir === null && !('path' in s.word.fallback);
}

/** What a run's scratch directory holds before boot. */
export interface ScratchPlan {
  /** Directories to make, relative to the scratch directory. */
  dirs: string[];
  /** Files to copy in (following symlinks, as `cp -L`), relative to it. */
  files: Array<{ rel: string; from: string }>;
}

/** Every relative path below the scratch directory a share of this spec uses. */
function scratchRels(shares: readonly SharedDir[], ctx: ShareContext): string[] {
  const out: string[] = [];
  for (const s of shares) {
    const w = s.word;
    if (!w) continue;
    if (w.word === 'TMPDIR') out.push(w.rel);
    else if (w.word === 'SHARED_DIR' && !ctx.sharedDir && !('path' in w.fallback) && w.fallback.word === 'TMPDIR')
      out.push(w.fallback.rel);
  }
  return out;
}

/** The scratch directory of a run of `spec`: xchg always (as the seed), every $TMPDIR share, certs. */
export function scratchPlan(spec: VmSpec, ctx: ShareContext, caBundle: string | null): ScratchPlan {
  const dirs = new Set<string>([XCHG, ...scratchRels(spec.shares, ctx).filter((r) => r !== '')]);
  const files: ScratchPlan['files'] = [];
  if (spec.hostCerts) {
    dirs.add(CERTS_DIR);
    if (caBundle) files.push({ rel: path.join(CERTS_DIR, CERTS_FILE), from: caBundle });
  }
  return { dirs: [...dirs].sort(), files };
}

/** Make the scratch directory afresh (private), as the plan says. */
export function prepareScratch(dir: string, plan: ScratchPlan): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const d of plan.dirs) fs.mkdirSync(path.join(dir, d), { recursive: true, mode: 0o700 });
  for (const f of plan.files) {
    const to = path.join(dir, f.rel);
    fs.mkdirSync(path.dirname(to), { recursive: true, mode: 0o700 });
    fs.copyFileSync(f.from, to);
    fs.chmodSync(to, 0o644);
  }
}

/** Remove a run's scratch directory (nothing there is kept). */
export function removeScratch(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The keys directory, private to the user (0700) whatever it was. */
export function ensureKeysDir(dir: string, rels: readonly string[] = []): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if ((fs.statSync(dir).mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700);
  for (const r of rels) if (r !== '') fs.mkdirSync(path.join(dir, r), { recursive: true, mode: 0o700 });
}

/** The $KEYS shares' paths below the keys directory. */
export function keysRels(spec: VmSpec): string[] {
  return spec.shares.flatMap((s) => (s.word?.word === 'KEYS' ? [s.word.rel] : []));
}
