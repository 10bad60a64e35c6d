/**
 * Every VM's disks as the faces see them, and the disk commands: the store image it boots (or
 * would boot) from, its persistent writable store image and what virtualisation.diskSize says
 * about it, every image in the state dir for `nixvm disk ls` (those of VMs no flake defines any
 * more included), and `disk reset` / `disk grow`, which only ever run on a stopped VM.
 */
import path from 'node:path';
import { AgentError } from '../api/errors.ts';
import type { DiskImage, DiskListing, VmDisks, VmSpec } from '../api/types.ts';
import type { ClosureStore } from './closure-store.ts';
import type { FlakeSet } from './flake-set.ts';
import type { StoreImages } from './store-image.ts';
import { allWritableImages, growWritableImage, resetWritableImage, writableImage, writableNotice } from './vm/disks.ts';
import type { Launcher } from './vm/launcher.ts';
import type { Supervisor } from './vm/supervisor.ts';

export interface VmDiskOwners {
  flakes: FlakeSet;
  supervisor: Supervisor;
  launcher: Launcher;
  closures: ClosureStore;
  images: StoreImages;
  stateDir: string;
  /** Whether a start or restart of the VM is under way before vfkit runs (building, making its store image). */
  booting(name: string): boolean;
  log(line: string): void;
}

export class VmDiskList {
  readonly #o: VmDiskOwners;

  constructor(o: VmDiskOwners) {
    this.#o = o;
  }

  /** The closure whose store image this VM uses: the one it boots, else its last build. */
  #closure(name: string): string | null {
    return this.#o.supervisor.status(name).booted?.outPath ?? this.#o.closures.built(name)?.outPath ?? null;
  }

  /** What the VM's snapshot shows of its disks. */
  view(name: string, spec: VmSpec | null): VmDisks {
    const images: DiskImage[] = [];
    const closure = this.#closure(name);
    const booted = this.#o.supervisor.status(name).booted;
    // A store image while the VM uses one (or runs on one from before an edit turned it off).
    const usesImage = spec?.storeImage === true || booted?.argv.some((a) => a.startsWith('nvme,')) === true;
    if (closure && usesImage) {
      const img = this.#o.images.image(closure);
      if (img) images.push(img);
    }
    const writable = writableImage(this.#o.launcher.paths(name));
    if (writable) images.push(writable);
    const { notice, canGrow } = writableNotice(name, spec, writable);
    return {
      images,
      preparing: this.#o.images.progress(name),
      error: this.#o.images.error(name),
      notice,
      canGrow,
    };
  }

  /** Every image in the state dir, with the VMs it belongs to; nothing is deleted here. */
  list(): DiskListing[] {
    const defined = this.#o.flakes.defined();
    const names = new Set([...defined.keys(), ...this.#o.supervisor.list().map((s) => s.name)]);
    const users = new Map<string, string[]>();
    for (const n of names) {
      const c = this.#closure(n);
      if (c) users.set(c, [...(users.get(c) ?? []), n]);
    }
    const out: DiskListing[] = [];
    for (const img of this.#o.images.all()) {
      const closure = img.record?.closure ?? null;
      const vms = closure ? (users.get(closure) ?? []) : [];
      const { record: _r, ...disk } = img;
      out.push({ ...disk, vms, closure, orphan: vms.length === 0 });
    }
    for (const img of allWritableImages(path.join(this.#o.stateDir, 'vms'))) {
      const { vm, ...disk } = img;
      out.push({ ...disk, vms: [vm], closure: null, orphan: !defined.has(vm) });
    }
    return out;
  }

  #refuseLive(name: string, what: string): void {
    // The supervisor says "stopped" until vfkit runs: a start still building must count as live,
    // or the image would change under the boot that is about to attach it.
    if (this.#o.booting(name)) {
      throw new AgentError(
        'failed',
        `${JSON.stringify(name)} is starting; wait for it, or stop it, before you ${what} its writable store image.`,
      );
    }
    const st = this.#o.supervisor.status(name).state;
    if (st !== 'stopped' && st !== 'crashed') {
      throw new AgentError(
        'failed',
        `${JSON.stringify(name)} is ${st}; stop it before you ${what} its writable store image.`,
      );
    }
  }

  /** Delete a stopped VM's writable store image; its next start makes a fresh one. */
  reset(name: string): void {
    this.#refuseLive(name, 'reset');
    const had = resetWritableImage(this.#o.launcher.paths(name));
    if (!had) throw new AgentError('failed', `${JSON.stringify(name)} has no writable store image to reset.`);
    this.#o.log(`deleted the writable store image of ${JSON.stringify(name)} (disk reset)`);
  }

  /**
   * Delete the writable store image of a VM no flake defines any more (it has no snapshot, only a
   * `nixvm disk ls` row). Returns false when there is no such image, so the caller says "no such VM".
   */
  resetOrphan(name: string): boolean {
    const defined = this.#o.flakes.defined();
    const img = allWritableImages(path.join(this.#o.stateDir, 'vms')).find((i) => i.vm === name && !defined.has(i.vm));
    if (!img) return false;
    this.#refuseLive(name, 'reset');
    resetWritableImage({ dir: path.dirname(img.path) });
    this.#o.log(`deleted the writable store image of ${JSON.stringify(name)}, which no flake defines (disk reset)`);
    return true;
  }

  /** Grow a stopped VM's writable store image to its diskSize. */
  grow(name: string, spec: VmSpec | null): void {
    const want = spec?.writableStore?.sizeMiB;
    if (!want) {
      throw new AgentError(
        'failed',
        `${JSON.stringify(name)} has no persistent writable store (virtualisation.writableStore with writableStoreUseTmpfs = false).`,
      );
    }
    this.#refuseLive(name, 'grow');
    try {
      if (!growWritableImage(this.#o.launcher.paths(name), name, want)) {
        throw new AgentError('failed', `The writable store image of ${JSON.stringify(name)} is already ${want} MiB.`);
      }
    } catch (err) {
      if (err instanceof AgentError) throw err;
      throw new AgentError('failed', err instanceof Error ? err.message : String(err));
    }
    this.#o.log(`grew the writable store image of ${JSON.stringify(name)} to ${want} MiB`);
  }
}
