/**
 * Closures: what was built for each VM (the one record of it, persisted as built.json so
 * staleness survives agent restarts), which builds failed, the builds themselves (through the
 * BuildManager, which keeps no results of its own) and the GC roots that keep built and booted
 * systems alive under `nix-collect-garbage`.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { AgentError, errorMessage } from '../api/errors.ts';
import type { BuildInfo } from '../api/types.ts';
import { BuildError, BuildManager, idleInfo, type BuildResult } from './nix/build.ts';
import { GcRoots } from './nix/gcroots.ts';
import type { Nix } from './nix/nix.ts';
import { processCommand } from '../host/process.ts';

/** What was last built for a VM. */
export interface BuiltRecord {
  drvPath: string;
  outPath: string;
  at: number;
}

interface FailedBuild {
  drvPath: string | null;
  kind: string;
  at: number;
}

export interface ClosureStoreOptions {
  /** GC roots live in <stateDir>/gcroots. */
  stateDir: string;
  /** Build logs live in <logsDir>/builds/<vm>/. */
  logsDir: string;
  /** A VM's state folder (built.json lives there). */
  vmDir(name: string): string;
  /** A VM's folder name, shared by its state, console and build log folders. */
  dirName?(name: string): string;
  /** Every closure some VM was built to or boots: the roots to keep. */
  inUse(): Set<string>;
  log(line: string): void;
  /** Arguments every build adds now (the builder VM's `--option builders`). */
  buildArgs?(): readonly string[];
  /** A remote builder in words (nixvm's builder VM), for a lost-builder sentence. */
  describeRemote?(uri: string): { words: string; fix: string } | null;
}

export interface ClosureStoreEvents {
  /** A build's state or progress changed. */
  changed: [];
  /** A build log line. */
  log: [vm: string, line: string];
  built: [vm: string, result: BuildResult];
  failed: [vm: string, error: BuildError];
}

export class ClosureStore extends EventEmitter<ClosureStoreEvents> {
  readonly #o: ClosureStoreOptions;
  readonly #built = new Map<string, BuiltRecord | null>();
  readonly #failed = new Map<string, FailedBuild>();
  /** The drvPath each VM's build was last asked for (what a failure is about). */
  readonly #asked = new Map<string, string>();
  #builder: BuildManager | null = null;
  #roots: GcRoots | null = null;
  /** The nix build processes running now, by VM (mirrored in builds-running.json). */
  readonly #procs = new Map<string, { pid: number; marker: string }>();
  #reaped = false;

  constructor(o: ClosureStoreOptions) {
    super();
    this.#o = o;
  }

  /** Build with this nix from now on (null: nix is missing). */
  async useNix(nix: Nix | null): Promise<void> {
    if (!this.#reaped) {
      this.#reaped = true;
      await this.reapOrphans();
    }
    const old = this.#builder;
    this.#builder = nix ? this.#makeBuilder(nix) : null;
    this.#roots = nix ? new GcRoots(nix, path.join(this.#o.stateDir, 'gcroots')) : null;
    await old?.dispose();
  }

  #makeBuilder(nix: Nix): BuildManager {
    const b = new BuildManager({
      nix,
      logsDir: path.join(this.#o.logsDir, 'builds'),
      ...(this.#o.dirName ? { dirName: this.#o.dirName } : {}),
      onProcess: (vm, proc) => this.#track(vm, proc),
      ...(this.#o.buildArgs ? { extraArgs: this.#o.buildArgs } : {}),
      ...(this.#o.describeRemote ? { describeRemote: this.#o.describeRemote } : {}),
    });
    b.on('state', () => this.emit('changed'));
    b.on('progress', () => this.emit('changed'));
    b.on('log', (vm, line) => this.emit('log', vm, line));
    b.on('done', (vm, outcome) => {
      if (outcome instanceof BuildError) {
        this.#failed.set(vm, { drvPath: this.#asked.get(vm) ?? null, kind: outcome.kind, at: Date.now() });
        this.emit('failed', vm, outcome);
      } else {
        this.#save(vm, outcome);
        this.emit('built', vm, outcome);
      }
      this.emit('changed');
    });
    return b;
  }

  /** What was last built for `name` (from memory, else built.json). */
  built(name: string): BuiltRecord | null {
    if (!this.#built.has(name)) {
      let rec: BuiltRecord | null = null;
      try {
        rec = JSON.parse(fs.readFileSync(this.#builtFile(name), 'utf8')) as BuiltRecord;
      } catch {
        rec = null;
      }
      this.#built.set(name, rec);
    }
    return this.#built.get(name) ?? null;
  }

  /**
   * The VM's build state. A failed build stops being news once the flake moved on: its drvPath
   * changed, or (for a failure to evaluate) the flake evaluated fine since.
   */
  buildInfo(name: string, current: { drvPath: string; lastEvalAt: number | null; flakeOk: boolean } | null): BuildInfo {
    const info = this.#builder?.state(name) ?? idleInfo(null);
    const failed = this.#failed.get(name);
    if (info.status !== 'failed' || !failed || !current) return info;
    const evalFailure =
      failed.kind !== 'build-failed' && failed.kind !== 'required-system' && failed.kind !== 'builder-lost';
    const outdated =
      failed.drvPath !== current.drvPath || (evalFailure && (current.lastEvalAt ?? 0) > failed.at && current.flakeOk);
    return outdated ? { ...info, status: 'idle', error: null, detail: null, progress: null } : info;
  }

  /**
   * The closure to boot: the last build when it matches `drvPath` and still exists, else a build
   * (always, with `force`). `unavailable` says why nothing can be built when nix is missing.
   */
  async ensure(
    t: { name: string; flake: string; drvPath: string },
    opts: { force: boolean; unavailable: string },
  ): Promise<BuiltRecord> {
    const built = this.built(t.name);
    if (!opts.force && built && built.drvPath === t.drvPath && fs.existsSync(built.outPath)) return built;
    const b = this.#builder;
    if (!b)
      throw new AgentError('failed', `${JSON.stringify(t.name)} cannot be built: ${lowerFirst(opts.unavailable)}`);
    this.#asked.set(t.name, t.drvPath);
    const previous = built
      ? { vm: t.name, flake: t.flake, ...built, logPath: b.logPathOf(t.name), finishedAt: built.at }
      : null;
    try {
      const r = await b.build({ vm: t.name, flake: t.flake, drvPath: t.drvPath, previous });
      this.#save(t.name, r);
      await this.root(r.outPath);
      return this.built(t.name)!;
    } catch (err) {
      if (err instanceof BuildError) throw new AgentError('failed', err.message);
      throw err;
    }
  }

  cancel(name: string): void {
    this.#builder?.cancel(name);
  }

  /** The VM's last build log, or null when nix is missing. */
  logPath(name: string): string | null {
    return this.#builder?.logPathOf(name) ?? null;
  }

  /**
   * Root `outPath` (just built) and drop the roots of closures no VM has built or booted any more,
   * so `nix-collect-garbage` never deletes a system under a running VM.
   */
  async root(outPath?: string): Promise<void> {
    const roots = this.#roots;
    if (!roots) return;
    try {
      if (outPath) await roots.add(outPath);
      const dropped = roots.prune(this.#o.inUse());
      if (dropped.length) this.#o.log(`dropped GC roots no VM uses: ${dropped.join(', ')}`);
    } catch (err) {
      this.#o.log(`could not update GC roots: ${errorMessage(err)}`);
    }
  }

  /** At start-up: root what earlier runs built or booted but left unrooted (state from before roots). */
  async ensureRoots(stillOpen: () => boolean): Promise<void> {
    const roots = this.#roots;
    if (!roots) return;
    for (const out of this.#o.inUse()) {
      if (!stillOpen()) return;
      if (fs.existsSync(out) && !fs.existsSync(roots.linkFor(out))) {
        await roots.add(out).catch((err) => this.#o.log(`could not root ${out}: ${errorMessage(err)}`));
      }
    }
    await this.root();
  }

  async dispose(): Promise<void> {
    await this.#builder?.dispose();
  }

  /**
   * Builds an agent left running when it was killed (SIGKILL, a crash: no chance to cancel them)
   * are still `nix build` processes working for nobody. At start-up, stop the ones the journal
   * names that are still those processes (their command line still builds that VM).
   */
  async reapOrphans(): Promise<string[]> {
    const file = this.#journalFile();
    let list: Array<{ vm: string; pid: number; marker: string }>;
    try {
      list = Object.values(
        JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, { vm: string; pid: number; marker: string }>,
      );
    } catch {
      return [];
    }
    const reaped: string[] = [];
    for (const o of list) {
      if (!Number.isInteger(o?.pid) || o.pid <= 1 || typeof o.marker !== 'string' || o.marker === '') continue;
      // ps may not answer on a loaded machine: ask again before leaving a build running.
      let ps = await processCommand(o.pid);
      for (let i = 0; ps === null && i < 2; i++) ps = await processCommand(o.pid);
      if (ps?.kind !== 'live' || !ps.args.includes(o.marker) || !/\bbuild\b/.test(ps.args)) {
        const why = ps === null ? 'ps did not answer' : ps.kind === 'gone' ? 'it is gone' : 'it is another program now';
        this.#o.log(`left pid ${o.pid} alone (the nix build of ${o.vm} an earlier agent ran): ${why}`);
        continue;
      }
      try {
        process.kill(o.pid, 'SIGTERM');
        reaped.push(String(o.vm));
        this.#o.log(`stopped the nix build of ${o.vm} (pid ${o.pid}) that an earlier agent left running`);
      } catch {
        // Gone meanwhile, or not ours to signal.
      }
    }
    try {
      fs.rmSync(file, { force: true });
    } catch {
      // The next start tries again.
    }
    return reaped;
  }

  #journalFile(): string {
    return path.join(this.#o.stateDir, 'builds-running.json');
  }

  #track(vm: string, proc: { pid: number; argv: string[] } | null): void {
    if (proc) {
      // The installable names the flake and the VM: what ps must still show for it to be this build.
      this.#procs.set(vm, { pid: proc.pid, marker: proc.argv.at(-1) ?? '' });
    } else this.#procs.delete(vm);
    const data: Record<string, { vm: string; pid: number; marker: string }> = Object.create(null);
    for (const [name, p] of this.#procs) data[name] = { vm: name, ...p };
    try {
      const file = this.#journalFile();
      if (this.#procs.size === 0) fs.rmSync(file, { force: true });
      else {
        fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        fs.writeFileSync(`${file}.tmp`, JSON.stringify(data), { mode: 0o600 });
        fs.renameSync(`${file}.tmp`, file);
      }
    } catch (err) {
      this.#o.log(`could not record the running builds: ${errorMessage(err)}`);
    }
  }

  #builtFile(name: string): string {
    return path.join(this.#o.vmDir(name), 'built.json');
  }

  #save(name: string, r: BuildResult): void {
    const rec: BuiltRecord = { drvPath: r.drvPath, outPath: r.outPath, at: r.finishedAt };
    this.#built.set(name, rec);
    try {
      const file = this.#builtFile(name);
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(rec));
      fs.renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.#o.log(`could not record the build of ${JSON.stringify(name)}: ${errorMessage(err)}`);
    }
  }
}

function lowerFirst(s: string): string {
  return `${s.charAt(0).toLowerCase()}${s.slice(1)}`;
}
