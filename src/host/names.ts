/**
 * File-system names derived from VM names. One owner, because several folders (state, console
 * logs, build logs) are keyed by the same VM and must agree on the name.
 *
 * macOS's default file system (APFS) ignores case and Unicode normalisation in names: `Web` and
 * `web`, or `café` written NFC and NFD, are one folder there. So a VM's folder keeps the VM's own
 * name only when that name is plain lower-case ASCII (the only names no folding can merge);
 * every other name gets a lower-case readable part plus a hash of the exact name. Folders that an
 * earlier nixvm made under the old rule (the name as it was, e.g. `Web`) are adopted unchanged
 * as long as no other VM's folder folds onto them.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export function shortHash(s: string): string {
  return crypto.createHash('sha256').update(s).digest('hex').slice(0, 12);
}

const MAX_PLAIN_BYTES = 64;
/** What a hashed folder name ends with; a plain name that looks like one is hashed too. */
const HASH_SUFFIX = /-[0-9a-f]{12}$/;

/**
 * A file-system-safe directory name for a VM, unique under case folding and Unicode
 * normalisation: the name itself when it is plain lower-case ASCII (letters, digits, `.`, `_`,
 * `-`, not starting with `.`), else a lower-case readable part plus a hash of the exact name.
 */
export function vmDirName(vm: string): string {
  if (
    vm.length > 0 &&
    /^[a-z0-9_-][a-z0-9._-]*$/.test(vm) &&
    Buffer.byteLength(vm) <= MAX_PLAIN_BYTES &&
    !HASH_SUFFIX.test(vm)
  ) {
    return vm;
  }
  const readable = vm
    .normalize('NFKD')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '_')
    .replace(/^[._]+/, '')
    .slice(0, 40);
  return `${readable || 'vm'}-${shortHash(vm)}`;
}

/** The folder name nixvm used before names had to survive case folding (mixed case kept as is). */
export function legacyVmDirName(vm: string): string {
  if (vm.length > 0 && /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(vm) && Buffer.byteLength(vm) <= MAX_PLAIN_BYTES) return vm;
  const readable = vm
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._]+/, '')
    .slice(0, 40);
  return `${readable || 'vm'}-${shortHash(vm)}`;
}

/** A folder name as a case-insensitive, normalisation-insensitive file system compares it. */
export function foldName(name: string): string {
  return name.normalize('NFD').toLowerCase();
}

export interface VmDirNamesOptions {
  /** The folders that hold one folder per VM (state, console logs, build logs). */
  roots: readonly string[];
  /** Every VM name the agent knows right now (to tell whether an old folder would collide). */
  names(): Iterable<string>;
}

/**
 * Resolves each VM's folder name: vmDirName(), unless a folder under the old rule already exists
 * for it (made by an earlier nixvm) and no other known VM's folder folds onto that one, in which
 * case the old folder is kept, so an upgrade neither loses a VM's records nor its logs.
 */
export class VmDirNames {
  readonly #o: VmDirNamesOptions;
  /** Whether each legacy folder name exists, looked up once (readdir: exact bytes, not folded). */
  #present: Set<string> | null = null;

  constructor(o: VmDirNamesOptions) {
    this.#o = o;
  }

  dirName(vm: string): string {
    const fresh = vmDirName(vm);
    const legacy = legacyVmDirName(vm);
    if (legacy === fresh || !this.#legacyPresent(legacy)) return fresh;
    const key = foldName(legacy);
    for (const other of this.#o.names()) {
      if (other === vm) continue;
      if (foldName(vmDirName(other)) === key || foldName(legacyVmDirName(other)) === key) return fresh;
    }
    return legacy;
  }

  #legacyPresent(name: string): boolean {
    if (!this.#present) {
      this.#present = new Set();
      for (const root of this.#o.roots) {
        try {
          for (const d of fs.readdirSync(root, { withFileTypes: true })) if (d.isDirectory()) this.#present.add(d.name);
        } catch {
          // No such folder yet: nothing to adopt there.
        }
      }
    }
    return this.#present.has(name);
  }
}

/** The folder holding one folder per VM under a state or logs dir. */
export function vmsDir(root: string): string {
  return path.join(path.resolve(root), 'vms');
}
