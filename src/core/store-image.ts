/**
 * Store images: the erofs image of a VM's closure that `virtualisation.useNixStoreImage` boots
 * from, made just before boot as the seed's runner makes it (erofs-image.ts), with mkfs.erofs from
 * the flake's own `virtualisation.host.pkgs.erofs-utils` realised through nix, the closure plus its
 * registration info (closure-info.ts).
 *
 * Unlike the seed's runner, which remakes store.img in $TMPDIR at every start, images are cached
 * per closure in `<stateDir>/images/<closure>.img` (a record beside each says what it holds): an
 * unchanged VM starts on the image it had, and two VMs on one closure share one. Images no VM has
 * built or booted any more are deleted (they are caches; the writable store is what is kept).
 * One preparation per closure at a time; its progress ("building the store image", bytes written)
 * is what the VM's snapshot shows.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { DiskImage, StoreImageProgress } from '../api/types.ts';
import { errorMessage } from '../api/errors.ts';
import { makeErofsImage, mkfsCapabilities, removeTree, type MkfsCapabilities } from './erofs-image.ts';
import { addClosureInfo, closurePaths, realiseAttr, registration } from './nix/closure-info.ts';
import type { Nix } from './nix/nix.ts';
import { fileSizes } from './vm/disks.ts';

/** What the image record beside each image says. */
export interface StoreImageRecord {
  /** The closure (toplevel out path) it holds. */
  closure: string;
  /** How many store paths, the closure-info path included. */
  paths: number;
  /** The closure's NAR size. */
  narBytes: number;
  /** The closure-info store path in it (registration, store-paths). */
  closureInfo: string;
  mkfs: string;
  mode: 'tar' | 'staging';
  createdAt: number;
  /** How long making it took. */
  durationMs: number;
}

export interface StoreImagesOptions {
  /** Images live in <stateDir>/images. */
  stateDir: string;
  /** Every closure some VM was built to or boots: the images to keep. */
  inUse(): Set<string>;
  log(line: string): void;
}

export interface StoreImagesEvents {
  /** A preparation's phase or progress changed, or one ended. */
  changed: [];
}

export interface StoreImageTarget {
  name: string;
  flake: string;
}

interface Job {
  promise: Promise<string>;
  progress: StoreImageProgress;
  vms: Set<string>;
}

/** The attribute whose `bin/mkfs.erofs` makes the image: the flake's own host packages. */
export function erofsUtilsAttr(vm: string): string[] {
  return ['nixosConfigurations', vm, 'config', 'virtualisation', 'host', 'pkgs', 'erofs-utils'];
}

/** Minimum time between two progress events of one preparation. */
const PROGRESS_MS = 100;

export class StoreImages extends EventEmitter<StoreImagesEvents> {
  readonly dir: string;
  readonly #o: StoreImagesOptions;
  readonly #jobs = new Map<string, Job>();
  readonly #errors = new Map<string, string>();
  readonly #caps = new Map<string, Promise<MkfsCapabilities>>();

  constructor(o: StoreImagesOptions) {
    super();
    this.#o = o;
    this.dir = path.join(o.stateDir, 'images');
  }

  /** Where the image of `closure` lives (whether or not it was made). */
  pathFor(closure: string): string {
    return path.join(this.dir, `${path.basename(closure)}.img`);
  }

  /** The image of `closure`, when it exists. */
  image(closure: string): DiskImage | null {
    const file = this.pathFor(closure);
    const sizes = fileSizes(file);
    return sizes && fs.existsSync(`${file}.json`) ? { role: 'nix-store', path: file, readOnly: true, ...sizes } : null;
  }

  record(closure: string): StoreImageRecord | null {
    try {
      return JSON.parse(fs.readFileSync(`${this.pathFor(closure)}.json`, 'utf8')) as StoreImageRecord;
    } catch {
      return null;
    }
  }

  /** The preparation this VM waits on, if any. */
  progress(vm: string): StoreImageProgress | null {
    for (const j of this.#jobs.values()) if (j.vms.has(vm)) return { ...j.progress };
    return null;
  }

  /** Why the last preparation for this VM failed (cleared by the next one). */
  error(vm: string): string | null {
    return this.#errors.get(vm) ?? null;
  }

  /**
   * The image of `closure` for VM `t`: the cached one, else made now (one preparation per closure;
   * a second VM asking meanwhile waits on the same). Throws one sentence naming the VM.
   */
  async ensure(nix: Nix | null, t: StoreImageTarget, closure: string): Promise<string> {
    this.#errors.delete(t.name);
    if (this.image(closure)) return this.pathFor(closure);
    let job = this.#jobs.get(closure);
    if (!job) {
      if (!nix)
        throw new Error(`The Nix store image of VM ${JSON.stringify(t.name)} cannot be made: nix was not found.`);
      const progress: StoreImageProgress = {
        phase: 'realising erofs-utils',
        bytesWritten: 0,
        bytesExpected: null,
        startedAt: Date.now(),
      };
      const created: Job = { promise: Promise.resolve(''), progress, vms: new Set([t.name]) };
      created.promise = this.#make(nix, t, closure, created).finally(() => {
        this.#jobs.delete(closure);
        this.emit('changed');
      });
      job = created;
      this.#jobs.set(closure, job);
      this.emit('changed');
    } else {
      job.vms.add(t.name);
    }
    try {
      return await job.promise;
    } catch (err) {
      const msg = `Could not make the Nix store image of ${JSON.stringify(t.name)}: ${lowerFirst(errorMessage(err))}`;
      this.#errors.set(t.name, msg);
      throw new Error(msg);
    }
  }

  async #make(nix: Nix, t: StoreImageTarget, closure: string, job: Job): Promise<string> {
    const t0 = Date.now();
    let last = 0;
    const set = (p: Partial<StoreImageProgress>, force = true) => {
      Object.assign(job.progress, p);
      const now = Date.now();
      if (force || now - last >= PROGRESS_MS) {
        last = now;
        this.emit('changed');
      }
    };
    const utils = await realiseAttr(nix, t.flake, erofsUtilsAttr(t.name));
    const mkfs = path.join(utils, 'bin', 'mkfs.erofs');
    if (!fs.existsSync(mkfs)) {
      throw new Error(`virtualisation.host.pkgs.erofs-utils (${utils}) has no bin/mkfs.erofs.`);
    }
    set({ phase: 'listing the closure' });
    const paths = await closurePaths(nix, [closure]);
    const reg = await registration(nix, paths);
    const info = await addClosureInfo(nix, paths, reg);
    const all = [...new Set([...paths, info])].sort();
    set({ phase: 'building the store image', bytesExpected: reg.narBytes });
    const caps = await this.#capabilities(mkfs);
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.pathFor(closure);
    const tmp = `${file}.tmp`;
    let mode: 'tar' | 'staging';
    try {
      mode = await makeErofsImage({
        mkfs,
        caps,
        paths: all,
        out: tmp,
        workDir: this.dir,
        onProgress: (p) => set({ bytesWritten: p.bytes }, false),
      });
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    fs.renameSync(tmp, file);
    const rec: StoreImageRecord = {
      closure,
      paths: all.length,
      narBytes: reg.narBytes,
      closureInfo: info,
      mkfs,
      mode,
      createdAt: Date.now(),
      durationMs: Date.now() - t0,
    };
    fs.writeFileSync(`${file}.json`, JSON.stringify(rec, null, 2));
    this.#o.log(
      `made the Nix store image of ${closure} for ${JSON.stringify(t.name)}: ${all.length} paths, ${fileSizes(file)?.apparentBytes ?? 0} bytes, ${rec.durationMs} ms (${mode})`,
    );
    this.prune([closure]);
    return file;
  }

  #capabilities(mkfs: string): Promise<MkfsCapabilities> {
    let c = this.#caps.get(mkfs);
    if (!c) {
      c = mkfsCapabilities(mkfs);
      c.catch(() => this.#caps.delete(mkfs));
      this.#caps.set(mkfs, c);
    }
    return c;
  }

  /** Every image in the directory, with its record (null for a file without one). */
  all(): Array<DiskImage & { record: StoreImageRecord | null }> {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return [];
    }
    return names
      .filter((n) => n.endsWith('.img'))
      .sort()
      .flatMap((n) => {
        const file = path.join(this.dir, n);
        const sizes = fileSizes(file);
        if (!sizes) return [];
        let record: StoreImageRecord | null = null;
        try {
          record = JSON.parse(fs.readFileSync(`${file}.json`, 'utf8')) as StoreImageRecord;
        } catch {
          record = null;
        }
        return [{ role: 'nix-store' as const, path: file, readOnly: true, ...sizes, record }];
      });
  }

  /**
   * Delete the images (and leftovers of interrupted preparations) of closures no VM has built or
   * booted, besides `keep`. Returns the deleted files.
   */
  prune(keep: readonly string[] = []): string[] {
    const inUse = new Set([...this.#o.inUse(), ...keep, ...this.#jobs.keys()]);
    const wanted = new Set([...inUse].map((c) => path.basename(this.pathFor(c))));
    const busy = new Set([...this.#jobs.keys()].map((c) => path.basename(this.pathFor(c))));
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return [];
    }
    const dropped: string[] = [];
    for (const n of names) {
      const base = n.replace(/\.(json|tmp)$/, '').replace(/^staging-/, '');
      if (wanted.has(base) && !n.endsWith('.tmp') && !n.startsWith('staging-')) continue;
      if (busy.has(base)) continue;
      const file = path.join(this.dir, n);
      try {
        if (n.startsWith('staging-')) removeTree(file);
        else fs.rmSync(file, { recursive: true, force: true });
        if (n.endsWith('.img')) dropped.push(file);
      } catch (err) {
        this.#o.log(`could not delete ${file}: ${errorMessage(err)}`);
      }
    }
    if (dropped.length) this.#o.log(`deleted store images no VM uses: ${dropped.join(', ')}`);
    return dropped;
  }
}

function lowerFirst(s: string): string {
  return `${s.charAt(0).toLowerCase()}${s.slice(1)}`;
}
