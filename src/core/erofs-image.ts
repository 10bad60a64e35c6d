/**
 * Making an erofs image of store paths the way the seed's runner (and nixpkgs' qemu-vm.nix) does:
 * every path at the image's root (names relative to /nix/store, macOS's case-hack suffixes
 * removed), owned by root, every time stamp 0, a fixed UUID and the label `nix-store` the guest
 * mounts it by:
 *
 *   tar --create … --transform 's|/nix/store/||' … | mkfs.erofs --quiet --force-uid=0 --force-gid=0 \
 *     -L nix-store -U eb176051-bd15-49b7-9e6b-462e0b467019 -T 0 --tar=f store.img
 *
 * The tar stream is made here (tar-stream), so no GNU tar is needed on the host. mkfs.erofs
 * before 1.7 cannot read a tar stream (Debian bookworm has 1.5): the paths are then laid out in a
 * staging directory (hard links where the file system allows, copies otherwise) and given to
 * mkfs.erofs as a directory. Before 1.6 it has no `-L` either: the label is then written into the
 * superblock here, with its checksum, as mkfs.erofs itself would.
 */
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type { Header } from 'tar-stream';
import { run } from '../host/runner.ts';

/** The UUID every store image gets (qemu-vm.nix, the seed's build.nix). */
export const STORE_IMAGE_UUID = 'eb176051-bd15-49b7-9e6b-462e0b467019';
export const STORE_DIR = '/nix/store';

/** What a mkfs.erofs can do, from its help text. */
export interface MkfsCapabilities {
  /** `--tar` (erofs-utils 1.7+). */
  tar: boolean;
  /** `-L label` (erofs-utils 1.6+). */
  label: boolean;
}

export function capabilitiesFromHelp(help: string): MkfsCapabilities {
  return { tar: /--tar\b/.test(help), label: /^\s*-L\b/m.test(help) };
}

/** Ask a mkfs.erofs what it can do (`--help` exits 0 or 1 depending on the version). */
export async function mkfsCapabilities(mkfs: string): Promise<MkfsCapabilities> {
  const r = await run([mkfs, '--help'], { allowFailure: true, timeoutMs: 30_000 });
  return capabilitiesFromHelp(`${r.stdout}\n${r.stderr}`);
}

export interface ImageProgress {
  /** Bytes of store content taken in so far (file contents, as in the NAR sizes). */
  bytes: number;
}

export interface MakeImageOptions {
  mkfs: string;
  caps: MkfsCapabilities;
  /** Store paths to put at the root. */
  paths: readonly string[];
  /** The image to write (replaced). */
  out: string;
  /** Scratch space for the staging directory (old mkfs.erofs only). */
  workDir: string;
  label?: string;
  storeDir?: string;
  onProgress?(p: ImageProgress): void;
  signal?: AbortSignal;
}

/** The name a store file has in the image: relative to the store, without macOS's case hack. */
export function imageName(storeRel: string): string {
  return storeRel.replace(/~nix~case~hack~\d+/g, '');
}

/** mkfs.erofs's flags for a reproducible store image (the seed's, less the source). */
export function mkfsFlags(caps: MkfsCapabilities, label: string): string[] {
  return [
    '--quiet',
    '--force-uid=0',
    '--force-gid=0',
    ...(caps.label ? ['-L', label] : []),
    '-U',
    STORE_IMAGE_UUID,
    '-T',
    '0',
  ];
}

/** The argv that makes the image: from a tar stream on stdin, or from a staging directory. */
export function mkfsArgv(mkfs: string, caps: MkfsCapabilities, label: string, out: string, staging?: string): string[] {
  return caps.tar || staging === undefined
    ? [mkfs, ...mkfsFlags(caps, label), '--tar=f', out]
    : [mkfs, ...mkfsFlags(caps, label), out, staging];
}

/** Make the image. Resolves with the mode it used. */
export async function makeErofsImage(o: MakeImageOptions): Promise<'tar' | 'staging'> {
  const label = o.label ?? 'nix-store';
  const storeDir = o.storeDir ?? STORE_DIR;
  fs.rmSync(o.out, { force: true });
  if (o.caps.tar) {
    const stream = await storeTar(o.paths, { storeDir, onProgress: o.onProgress });
    await run(mkfsArgv(o.mkfs, o.caps, label, o.out), { input: stream, signal: o.signal, stderrTailChars: 4000 });
    return 'tar';
  }
  const staging = path.join(o.workDir, `staging-${path.basename(o.out)}`);
  try {
    await stage(o.paths, staging, { storeDir, onProgress: o.onProgress, signal: o.signal });
    await run(mkfsArgv(o.mkfs, o.caps, label, o.out, staging), { signal: o.signal, stderrTailChars: 4000 });
  } finally {
    removeTree(staging);
  }
  if (!o.caps.label) setErofsLabel(o.out, label);
  return 'staging';
}

// ─── the tar stream ─────────────────────────────────────────────────────────────────────────

/**
 * A tar archive of `paths` with names relative to the store (as GNU tar with the seed's
 * --transform makes it): directories first, files with their modes, symlinks as they are, and a
 * file the archive already holds (an optimised store's hard links) as a hard link to it.
 */
export async function storeTar(
  paths: readonly string[],
  opts: { storeDir?: string; onProgress?(p: ImageProgress): void } = {},
): Promise<Readable> {
  // Loaded when an image is made: no part of the agent at rest.
  const { default: tar } = await import('tar-stream');
  const storeDir = opts.storeDir ?? STORE_DIR;
  const pack = tar.pack();
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  pack.pipe(out);
  pack.on('error', (err) => out.destroy(err));
  const progress = { bytes: 0 };
  const seen = new Map<string, string>();
  const entry = (header: Partial<Header> & { name: string }, body?: Buffer | Readable): Promise<void> =>
    new Promise((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body === undefined) {
        pack.entry(header, done);
        return;
      }
      if (Buffer.isBuffer(body)) {
        pack.entry(header, body, done);
        return;
      }
      const sink = pack.entry(header, done);
      body.on('error', reject);
      body.pipe(sink);
    });
  const base = { uid: 0, gid: 0, mtime: new Date(0) };
  const add = async (abs: string, name: string): Promise<void> => {
    const st = await fs.promises.lstat(abs);
    if (st.isDirectory()) {
      await entry({ ...base, name, type: 'directory', mode: st.mode & 0o7777 });
      const kids = (await fs.promises.readdir(abs)).sort();
      for (const k of kids) await add(path.join(abs, k), `${name}/${imageName(k)}`);
    } else if (st.isSymbolicLink()) {
      await entry({ ...base, name, type: 'symlink', linkname: await fs.promises.readlink(abs), mode: 0o777 });
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1 ? seen.get(key) : undefined;
      if (first !== undefined) {
        await entry({ ...base, name, type: 'link', linkname: first, mode: st.mode & 0o7777 });
        return;
      }
      if (st.nlink > 1) seen.set(key, name);
      const header = { ...base, name, type: 'file' as const, size: st.size, mode: st.mode & 0o7777 };
      if (st.size <= 1 << 20) await entry(header, await fs.promises.readFile(abs));
      else await entry(header, fs.createReadStream(abs));
      progress.bytes += st.size;
      opts.onProgress?.(progress);
    }
    // Sockets, fifos and devices never occur in a store path; anything else is left out.
  };
  void (async () => {
    for (const p of paths) {
      const rel = path.relative(storeDir, p);
      if (rel.startsWith('..') || rel.includes('/')) throw new Error(`${p} is not a path in ${storeDir}`);
      await add(p, imageName(rel));
    }
    pack.finalize();
  })().catch((err: Error) => pack.destroy(err));
  return out;
}

// ─── the staging directory (mkfs.erofs before 1.7) ─────────────────────────────────────────

/** Remove a staging tree, read-only directories included. */
export function removeTree(dir: string): void {
  if (!fs.existsSync(dir)) return;
  // Store directories are read-only (0555): make them writable first so they can go.
  const open = (d: string): void => {
    try {
      fs.chmodSync(d, 0o755);
    } catch {
      return;
    }
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) open(path.join(d, e.name));
  };
  open(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}

async function stage(
  paths: readonly string[],
  dir: string,
  opts: { storeDir: string; onProgress?(p: ImageProgress): void; signal?: AbortSignal },
): Promise<void> {
  removeTree(dir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const progress = { bytes: 0 };
  let linkable = true;
  const modes: Array<[string, number]> = [];
  const place = async (abs: string, to: string): Promise<void> => {
    opts.signal?.throwIfAborted();
    const st = await fs.promises.lstat(abs);
    if (st.isDirectory()) {
      await fs.promises.mkdir(to, { mode: 0o755 });
      modes.push([to, st.mode & 0o7777]);
      for (const k of (await fs.promises.readdir(abs)).sort()) await place(path.join(abs, k), path.join(to, k));
    } else if (st.isSymbolicLink()) {
      await fs.promises.symlink(await fs.promises.readlink(abs), to);
    } else if (st.isFile()) {
      if (linkable) {
        try {
          await fs.promises.link(abs, to);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          // Another file system (macOS keeps /nix on its own volume) or links not allowed: copy.
          if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw err;
          linkable = false;
        }
      }
      if (!linkable) {
        await fs.promises.copyFile(abs, to);
        await fs.promises.chmod(to, st.mode & 0o7777);
      }
      progress.bytes += st.size;
      opts.onProgress?.(progress);
    }
  };
  for (const p of paths) await place(p, path.join(dir, path.relative(opts.storeDir, p)));
  // Read-only directories last, deepest first, so they could be filled.
  for (const [d, mode] of modes.reverse()) await fs.promises.chmod(d, mode);
}

// ─── the label (mkfs.erofs before 1.6) ─────────────────────────────────────────────────────

/** Where erofs keeps its superblock, and the fields used here (include/erofs_fs.h). */
const SB = 1024;
const SB_MAGIC = 0xe0f5e1e2;
const SB_CHECKSUM = SB + 4;
const SB_FEATURE_COMPAT = SB + 8;
const SB_BLKSZBITS = SB + 12;
const SB_VOLUME_NAME = SB + 64;
const FEATURE_COMPAT_SB_CHKSUM = 0x1;

let crcTable: Uint32Array | null = null;

/** erofs-utils' erofs_crc32c: CRC-32C (Castagnoli), reflected, no final inversion. */
export function erofsCrc32c(crc: number, buf: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = crc >>> 0;
  for (const b of buf) c = (crcTable[(c ^ b) & 0xff]! ^ (c >>> 8)) >>> 0;
  return c >>> 0;
}

/** How many bytes from the superblock on its checksum covers (erofs_mkfs_superblock_csum_set). */
function checksummed(blockSize: number): number {
  return blockSize > SB ? blockSize - SB : blockSize;
}

function readBlock(file: string): { fd: number; block: Buffer; size: number } {
  const fd = fs.openSync(file, 'r+');
  const head = Buffer.alloc(SB + 128);
  fs.readSync(fd, head, 0, head.length, 0);
  if (head.readUInt32LE(SB) !== SB_MAGIC) {
    fs.closeSync(fd);
    throw new Error(`${file} is not an erofs image`);
  }
  const size = 1 << (head[SB_BLKSZBITS] ?? 12);
  const block = Buffer.alloc(SB + checksummed(size));
  fs.readSync(fd, block, 0, block.length, 0);
  return { fd, block, size };
}

/** Write `label` into an erofs image's superblock (and its checksum, when the image has one). */
export function setErofsLabel(file: string, label: string): void {
  const name = Buffer.from(label, 'utf8');
  if (name.length > 16) throw new Error(`the erofs label ${JSON.stringify(label)} is longer than 16 bytes`);
  const { fd, block, size } = readBlock(file);
  try {
    block.fill(0, SB_VOLUME_NAME, SB_VOLUME_NAME + 16);
    name.copy(block, SB_VOLUME_NAME);
    const len = checksummed(size);
    if (block.readUInt32LE(SB_FEATURE_COMPAT) & FEATURE_COMPAT_SB_CHKSUM) {
      block.writeUInt32LE(0, SB_CHECKSUM);
      block.writeUInt32LE(erofsCrc32c(0xffffffff, block.subarray(SB, SB + len)), SB_CHECKSUM);
    }
    fs.writeSync(fd, block, SB, len, SB);
  } finally {
    fs.closeSync(fd);
  }
}

/** An erofs image's label (volume name), or null when it is not an erofs image. */
export function readErofsLabel(file: string): string | null {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const head = Buffer.alloc(SB + 128);
      fs.readSync(fd, head, 0, head.length, 0);
      if (head.readUInt32LE(SB) !== SB_MAGIC) return null;
      const raw = head.subarray(SB_VOLUME_NAME, SB_VOLUME_NAME + 16);
      const end = raw.indexOf(0);
      return raw.subarray(0, end < 0 ? 16 : end).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
}
