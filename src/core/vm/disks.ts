/**
 * The persistent writable store image of a VM (the seed's store-writable.img, for writableStore
 * without writableStoreUseTmpfs): a sparse raw file in the VM's state dir, made on its first start
 * at virtualisation.diskSize MiB, then kept across restarts, agent restarts and rebuilds. It is
 * never deleted or remade implicitly: only `nixvm disk reset` deletes it, only `nixvm disk grow`
 * grows it (sparse, while the VM is stopped), and nothing shrinks it (that would cut off data).
 *
 * A small JSON record beside it names the VM it belongs to (directory names may be hashed) and
 * the size it was made or grown to.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { DiskImage, VmSpec } from '../../api/types.ts';
import { shellWord } from '../../host/shell.ts';
import { writableImagePath } from './run-dirs.ts';
import type { VmRuntimePaths } from './runtime-paths.ts';

const MIB = 1024 * 1024;

interface ImageRecord {
  vm: string;
  sizeMiB: number;
  createdAt: number;
}

function recordPath(image: string): string {
  return `${image}.json`;
}

/** Apparent and allocated size of a file, or null when it is not there. */
export function fileSizes(file: string): { apparentBytes: number; allocatedBytes: number } | null {
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) return null;
    return { apparentBytes: st.size, allocatedBytes: st.blocks * 512 };
  } catch {
    return null;
  }
}

/** The writable store image of a VM as the contract shows it, when it exists. */
export function writableImage(p: Pick<VmRuntimePaths, 'dir'>): DiskImage | null {
  const file = writableImagePath(p);
  const sizes = fileSizes(file);
  return sizes ? { role: 'writable-store', path: file, readOnly: false, ...sizes } : null;
}

function readRecord(image: string): ImageRecord | null {
  try {
    const r = JSON.parse(fs.readFileSync(recordPath(image), 'utf8')) as ImageRecord;
    return typeof r.vm === 'string' ? r : null;
  } catch {
    return null;
  }
}

function writeRecord(image: string, rec: ImageRecord): void {
  const f = recordPath(image);
  fs.writeFileSync(`${f}.tmp`, JSON.stringify(rec));
  fs.renameSync(`${f}.tmp`, f);
}

/** Make the image (sparse, `sizeMiB`) if it is not there; an existing one is left exactly as it is. */
export function ensureWritableImage(p: Pick<VmRuntimePaths, 'dir'>, vm: string, sizeMiB: number): boolean {
  const file = writableImagePath(p);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    // ftruncate: a hole of the full size, no blocks written.
    fs.ftruncateSync(fd, sizeMiB * MIB);
  } finally {
    fs.closeSync(fd);
  }
  writeRecord(file, { vm, sizeMiB, createdAt: Date.now() });
  return true;
}

/** What the writable image and virtualisation.diskSize say about each other. */
export function writableNotice(
  name: string,
  spec: VmSpec | null,
  image: DiskImage | null,
): { notice: string | null; canGrow: boolean } {
  const want = spec?.writableStore?.sizeMiB;
  if (!want || !image) return { notice: null, canGrow: false };
  const have = Math.floor(image.apparentBytes / MIB);
  if (want > have) {
    return {
      notice: `virtualisation.diskSize of ${JSON.stringify(name)} is ${want} MiB, but its writable store image is ${have} MiB; grow it with \`nixvm disk grow ${shellWord(name)}\` while it is stopped.`,
      canGrow: true,
    };
  }
  if (want < have) {
    return {
      notice: `virtualisation.diskSize of ${JSON.stringify(name)} is ${want} MiB, smaller than its ${have} MiB writable store image, which cannot shrink without losing data; to start over at ${want} MiB, run \`nixvm disk reset ${shellWord(name)}\` (it deletes what the VM keeps in its writable Nix store).`,
      canGrow: false,
    };
  }
  return { notice: null, canGrow: false };
}

/** Grow the image to `sizeMiB` (sparse). Refuses a smaller size; returns false when already that big. */
export function growWritableImage(p: Pick<VmRuntimePaths, 'dir'>, vm: string, sizeMiB: number): boolean {
  const file = writableImagePath(p);
  const sizes = fileSizes(file);
  if (!sizes) throw new Error(`${JSON.stringify(vm)} has no writable store image yet (it is made at its first start).`);
  const bytes = sizeMiB * MIB;
  if (bytes < sizes.apparentBytes) {
    throw new Error(
      `The writable store image of ${JSON.stringify(vm)} is ${Math.floor(sizes.apparentBytes / MIB)} MiB and cannot shrink to ${sizeMiB} MiB without losing data; run \`nixvm disk reset ${shellWord(vm)}\` to start over at the new size.`,
    );
  }
  if (bytes === sizes.apparentBytes) return false;
  fs.truncateSync(file, bytes);
  const rec = readRecord(file);
  writeRecord(file, { vm, sizeMiB, createdAt: rec?.createdAt ?? Date.now() });
  return true;
}

/** Delete the image (and its record). Returns whether there was one. */
export function resetWritableImage(p: Pick<VmRuntimePaths, 'dir'>): boolean {
  const file = writableImagePath(p);
  const had = fs.existsSync(file);
  fs.rmSync(file, { force: true });
  fs.rmSync(recordPath(file), { force: true });
  return had;
}

/** Every writable store image under `<stateDir>/vms`, with the VM its record names. */
export function allWritableImages(vmsRoot: string): Array<DiskImage & { vm: string }> {
  let dirs: fs.Dirent[];
  try {
    dirs = fs.readdirSync(vmsRoot, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: Array<DiskImage & { vm: string }> = [];
  for (const d of dirs) {
    if (!d.isDirectory()) continue;
    const img = writableImage({ dir: path.join(vmsRoot, d.name) });
    if (!img) continue;
    out.push({ ...img, vm: readRecord(img.path)?.vm ?? d.name });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}
