/**
 * The VM supervisor: spawns one vfkit per VM (detached, in its own session, so VMs outlive the
 * agent), follows each through stopped → starting → running → stopping → stopped (or crashed),
 * stops them with an escalation (REST Stop → REST HardStop → SIGTERM → SIGKILL), and after an
 * agent restart adopts the vfkits still running and keeps learning how they end.
 *
 * Idle cost is the point: a running VM costs nothing but an idle socket. Our own children report
 * their exit through the child handle; adopted ones through their REST socket's keep-alive
 * connection closing, with a cheap `kill(pid, 0)` every few seconds as a fallback. The REST API is
 * polled only while a VM boots or stops.
 */
import { EventEmitter } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { VmExit, VmRunState } from '../../api/types.ts';
import { run, spawnDetached } from '../../host/runner.ts';
import { RestError, VfkitRest } from './rest.ts';
import { checkVfkitVersion } from './vfkit.ts';
import { DEFAULT_CONSOLE_KEEP, rotateConsoleLog, tail } from './console.ts';
import { prepareRuntimeDirs, runtimePaths, type VmRuntimePaths } from './runtime-paths.ts';

/** The per-VM files the supervisor uses (runtime-paths.ts). `restSocket` may also be a full unix:// or tcp:// URI. */
export type SupervisedPaths = VmRuntimePaths;

export interface SupervisedVm {
  name: string;
  /** The exact vfkit argv, program first (vfkit-args.ts). */
  argv: string[];
  paths: SupervisedPaths;
  drvPath: string;
  outPath: string;
}

export interface VmStatus {
  state: VmRunState;
  pid: number | null;
  startedAt: number | null;
  exit: VmExit | null;
  /** The closure the current run booted; null when no vfkit runs. */
  booted: { drvPath: string; outPath: string } | null;
  error: string | null;
}

/** What the supervisor writes next to the pidfile: enough to adopt and explain a run later. */
export interface BootRecord {
  name: string;
  argv: string[];
  drvPath: string;
  outPath: string;
  startedAt: number;
  pid: number | null;
  paths: SupervisedPaths;
  endedAt?: number;
  exit?: VmExit;
}

export interface SupervisorOptions {
  /** vfkit binary; used for the version check when a VM's argv names no program. */
  vfkit: string;
  stateDir: string;
  logsDir: string;
  /** Time the guest gets to shut down after REST Stop (default 30 s; the stopTimeoutSec setting). */
  stopTimeoutMs?: number;
  /** After REST HardStop (default 5 s). */
  hardStopTimeoutMs?: number;
  /** After SIGTERM; vfkit itself forces the VM off 5 s after SIGTERM (default 8 s). */
  termTimeoutMs?: number;
  /** How long a VM may stay "starting" before it is given up on (default 120 s). */
  bootTimeoutMs?: number;
  /** Extra environment for vfkit (tests pass the simulator's fault switches). */
  env?: Record<string, string | undefined>;
  /** Earlier console logs kept per VM (console.ts's default). */
  consoleKeep?: number;
  /** Fallback liveness check for adopted VMs (default 5000 ms). */
  livenessIntervalMs?: number;
  /** Check `vfkit --version` before the first start (default true). */
  checkVersion?: boolean;
}

/** A start that failed: vfkit refused the configuration, exited during boot, or never came up. */
export class VmStartError extends Error {
  readonly vm: string;
  constructor(vm: string, message: string) {
    super(message);
    this.name = 'VmStartError';
    this.vm = vm;
  }
}

interface EndInfo {
  code: number | null;
  signal: string | null;
}

/** One vfkit process: ours (child set) or adopted. */
interface Run {
  pid: number;
  child: ChildProcess | null;
  paths: SupervisedPaths;
  rest: VfkitRest;
  record: BootRecord;
  adopted: boolean;
  booting: boolean;
  /** vfkit's REST API has answered at least once: it accepted the configuration. */
  restSeen: boolean;
  stopRequested: boolean;
  /** Settled once the process is known to be gone. */
  ended: Promise<EndInfo>;
  settle: (e: EndInfo) => void;
  isEnded: boolean;
  /** Settled once the end has been recorded (state, exit, cleanup). */
  done: Promise<void>;
  markDone: () => void;
  unwatch: (() => void) | null;
  lastArm: number;
  rearmDelay: number;
  /** Back-off while an adopted vfkit is alive but its REST API silent. */
  silentDelay: number;
  fastPoll: NodeJS.Timeout | null;
}

interface Entry {
  name: string;
  state: VmRunState;
  exit: VmExit | null;
  error: string | null;
  run: Run | null;
  starting: Promise<void> | null;
  stopping: Promise<void> | null;
  cancelStart: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Console lines a clean guest power-off or reboot leaves: systemd's final targets, systemd-shutdown,
 * the kernel's last words. (Virtualization.framework ends the VM on a guest reboot too.)
 */
const CLEAN_END =
  /Reached target (System )?(Power-?Off|Reboot|Halt)|systemd-shutdown.*(Powering off|Rebooting)|reboot: (Power down|Restarting system)|System halted/i;

export class Supervisor extends EventEmitter {
  readonly opts: Required<Omit<SupervisorOptions, 'env'>> & { env: Record<string, string | undefined> };
  private readonly vms = new Map<string, Entry>();
  private liveness: NodeJS.Timeout | null = null;
  /** close() was called: no watch, timer or re-arm may start after it. */
  private closed = false;

  constructor(opts: SupervisorOptions) {
    super();
    this.opts = {
      stopTimeoutMs: 30_000,
      hardStopTimeoutMs: 5_000,
      termTimeoutMs: 8_000,
      bootTimeoutMs: 120_000,
      consoleKeep: DEFAULT_CONSOLE_KEEP,
      livenessIntervalMs: 5_000,
      checkVersion: true,
      ...opts,
      env: opts.env ?? {},
    };
  }

  // ---------------------------------------------------------------- queries

  status(name: string): VmStatus {
    const e = this.vms.get(name);
    if (!e) return { state: 'stopped', pid: null, startedAt: null, exit: null, booted: null, error: null };
    const r = e.run;
    return {
      state: e.state,
      pid: r?.pid ?? null,
      startedAt: r?.record.startedAt ?? null,
      exit: e.exit,
      booted: r ? { drvPath: r.record.drvPath, outPath: r.record.outPath } : null,
      error: e.error,
    };
  }

  list(): Array<VmStatus & { name: string }> {
    return [...this.vms.keys()].sort().map((name) => ({ name, ...this.status(name) }));
  }

  // ---------------------------------------------------------------- start

  /**
   * Start a VM and resolve once vfkit reports it running. Starting a VM that is starting or
   * running is a no-op (concurrent calls share one start and one vfkit); a VM that is stopping is
   * started once it has stopped. Rejects with VmStartError when vfkit refuses or the VM never comes up.
   */
  start(vm: SupervisedVm): Promise<void> {
    const e = this.entry(vm.name);
    // A stop in progress (even one that interrupted a boot) finishes first; then this starts afresh.
    if (e.stopping) return e.stopping.catch(() => {}).then(() => this.start(vm));
    if (e.state === 'starting' && e.starting) return e.starting;
    if (e.state === 'running') return Promise.resolve();
    e.cancelStart = false;
    e.error = null;
    this.setState(e, 'starting');
    const p = this.doStart(e, vm).finally(() => {
      if (e.starting === p) e.starting = null;
    });
    e.starting = p;
    return p;
  }

  private async doStart(e: Entry, vm: SupervisedVm): Promise<void> {
    const { paths, argv } = vm;
    let existing: Run | null = null;
    try {
      const program = argv[0] ?? this.opts.vfkit;
      if (this.opts.checkVersion) await checkVfkitVersion(program, { env: this.opts.env });
      prepareRuntimeDirs(paths);
      // A vfkit for this VM may already run (an agent that did not adopt yet): take it over
      // rather than start a second one on the same files.
      existing = await this.tryAdopt(vm.name, paths, false);
      if (!existing) {
        if (e.cancelStart) {
          this.setState(e, 'stopped');
          return;
        }
        await rotateConsoleLog(paths.consoleLog, this.opts.consoleKeep);
        rmSync(paths.pidfile, { force: true });
        this.removeSocket(paths);
        const vfkitLog = vfkitLogPath(paths);
        if (existsSync(vfkitLog)) renameSync(vfkitLog, `${vfkitLog}.1`);
      }
    } catch (err) {
      e.error = err instanceof Error ? err.message : String(err);
      this.setState(e, 'stopped');
      throw err;
    }
    if (existing) {
      await this.waitBooted(e, existing);
      return;
    }
    if (e.cancelStart) {
      this.setState(e, 'stopped');
      return;
    }

    const record: BootRecord = {
      name: vm.name,
      argv,
      drvPath: vm.drvPath,
      outPath: vm.outPath,
      startedAt: Date.now(),
      pid: null,
      paths,
    };
    // Written before the spawn too, so an agent killed in between still finds the run's files.
    writeRecord(record);
    let spawned: ReturnType<typeof spawnDetached>;
    try {
      spawned = spawnDetached(argv, { env: this.opts.env, outputFile: vfkitLogPath(paths) });
    } catch (err) {
      record.endedAt = Date.now();
      writeRecord(record);
      e.error = `Could not start vfkit for VM "${vm.name}": ${err instanceof Error ? err.message : String(err)}`;
      this.setState(e, 'stopped');
      throw new VmStartError(vm.name, e.error);
    }
    record.pid = spawned.pid;
    writeRecord(record);
    const r = this.newRun(spawned.pid, spawned.child, paths, record, false);
    spawned.child.on('error', () => {
      // Only kill() failures land here once spawned; the exit event still tells the end.
    });
    spawned.child.once('exit', (code, signal) => r.settle({ code, signal }));
    e.run = r;
    this.emit('change', vm.name);
    await this.waitBooted(e, r);
  }

  /** Poll the REST API (with backoff, during boot only) until vfkit says running. */
  private async waitBooted(e: Entry, r: Run): Promise<void> {
    const deadline = Date.now() + this.opts.bootTimeoutMs;
    let delay = 20;
    r.booting = true;
    try {
      while (!r.isEnded && !r.stopRequested) {
        try {
          const s = await r.rest.getState({ timeoutMs: 2000 });
          r.restSeen = true;
          if (s.state === 'running') {
            if (r.isEnded || r.stopRequested) break;
            this.setState(e, 'running');
            if (r.adopted) this.watchAdopted(e, r);
            return;
          }
        } catch (err) {
          if (!(err instanceof RestError)) throw err;
          // Not listening yet, or a slow answer: keep waiting while vfkit lives.
        }
        if (Date.now() > deadline) {
          await this.giveUpBoot(e, r);
          throw new VmStartError(e.name, e.error ?? `VM "${e.name}" did not come up.`);
        }
        await Promise.race([r.ended, sleep(delay)]);
        delay = Math.min(Math.round(delay * 1.5), 250);
      }
    } finally {
      r.booting = false;
    }
    if (r.stopRequested) return; // stop() took over; it owns the state from here.
    await r.done;
    throw new VmStartError(e.name, e.error ?? `VM "${e.name}" exited while starting.`);
  }

  private async giveUpBoot(e: Entry, r: Run): Promise<void> {
    const ms = this.opts.bootTimeoutMs;
    const secs = ms < 10_000 ? String(+(ms / 1000).toFixed(1)) : String(Math.round(ms / 1000));
    await this.escalate(e, r, { quiet: true });
    e.error =
      `VM "${e.name}" did not come up within ${secs} s (vfkit's REST API at ${r.rest.uri} never reported it running), ` +
      `so it was stopped; see ${vfkitLogPath(r.paths)} for vfkit's output.`;
    if (e.state !== 'crashed') this.setState(e, 'crashed');
    else this.emit('change', e.name);
  }

  // ---------------------------------------------------------------- stop

  /**
   * Stop a VM: REST Stop (the guest's ACPI shutdown) → after stopTimeoutMs REST HardStop → after
   * hardStopTimeoutMs SIGTERM → after termTimeoutMs SIGKILL. Resolves once vfkit has exited.
   * Stopping a stopped VM is a no-op; concurrent stops share one escalation.
   */
  stop(name: string): Promise<void> {
    const e = this.vms.get(name);
    if (!e) return Promise.resolve();
    if (e.stopping) return e.stopping;
    if (e.state === 'stopped' || e.state === 'crashed') {
      if (!e.run && !e.starting) return Promise.resolve();
    }
    const p = (async () => {
      if (!e.run && e.starting) {
        // Still checking the version or preparing files: nothing spawned yet, cancel before it is.
        e.cancelStart = true;
        await e.starting.catch(() => {});
      }
      const r = e.run;
      if (r && !r.isEnded) await this.escalate(e, r, { quiet: false });
      else if (r) await r.done;
    })().finally(() => {
      if (e.stopping === p) e.stopping = null;
    });
    e.stopping = p;
    return p;
  }

  /** Stop (if running) and start again with the given closure. */
  async restart(vm: SupervisedVm): Promise<void> {
    await this.stop(vm.name);
    await this.start(vm);
  }

  private async escalate(e: Entry, r: Run, o: { quiet: boolean }): Promise<void> {
    r.stopRequested = true;
    if (!o.quiet) this.setState(e, 'stopping');
    if (r.adopted) this.startFastPoll(r);
    try {
      const steps: Array<{ what: string; act: () => Promise<boolean>; waitMs: number }> = [
        { what: 'REST Stop', act: () => this.restChange(r, 'Stop'), waitMs: this.opts.stopTimeoutMs },
        { what: 'REST HardStop', act: () => this.restChange(r, 'HardStop'), waitMs: this.opts.hardStopTimeoutMs },
        { what: 'SIGTERM', act: async () => this.signal(r, 'SIGTERM'), waitMs: this.opts.termTimeoutMs },
        { what: 'SIGKILL', act: async () => this.signal(r, 'SIGKILL'), waitMs: 5_000 },
      ];
      for (const step of steps) {
        if (r.isEnded) break;
        const sent = await step.act();
        if (!sent) continue;
        this.log(`VM "${e.name}": sent ${step.what}, waiting up to ${step.waitMs} ms for vfkit (pid ${r.pid}) to exit`);
        if (await this.waitEnded(r, step.waitMs)) break;
      }
      if (!r.isEnded) {
        e.error = `VM "${e.name}" (vfkit pid ${r.pid}) did not exit even after SIGKILL; check the process in Activity Monitor.`;
        this.emit('change', e.name);
        throw new Error(e.error);
      }
      await r.done;
    } finally {
      this.stopFastPoll(r);
    }
  }

  private async restChange(r: Run, change: 'Stop' | 'HardStop'): Promise<boolean> {
    try {
      await r.rest.setState(change, { timeoutMs: 3000 });
      return true;
    } catch (err) {
      // vfkit refusing (e.g. "Stop" before the guest can take ACPI) or gone: go to the next step now.
      this.log(`VM "${r.record.name}": ${change} failed: ${(err as Error).message}`);
      return false;
    }
  }

  private signal(r: Run, sig: NodeJS.Signals): boolean {
    try {
      process.kill(r.pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  private waitEnded(r: Run, ms: number): Promise<boolean> {
    if (r.isEnded) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      void r.ended.then(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  // ---------------------------------------------------------------- adoption

  /**
   * On agent start: adopt every VM whose vfkit still runs (pid alive, its command line names our
   * pidfile, REST answers) and clean up what is left of the others. Returns the adopted names.
   */
  async adoptAll(): Promise<string[]> {
    const root = vmsRoot(this.opts.stateDir, this.opts.logsDir);
    let dirs: string[] = [];
    try {
      dirs = readdirSync(root, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => path.join(root, d.name));
    } catch {
      return [];
    }
    const recordName = path.basename(runtimePaths(this.opts.stateDir, this.opts.logsDir, 'probe').bootRecord);
    const found = await Promise.all(
      dirs.map(async (dir) => {
        const rec = readRecord(path.join(dir, recordName));
        if (!rec) return null;
        const e = this.vms.get(rec.name);
        if (e?.run || e?.starting) return null;
        const r = await this.tryAdopt(rec.name, rec.paths, true);
        if (!r) return null;
        const entry = this.entry(rec.name);
        if (entry.state === 'starting') {
          // vfkit may still be booting it: wait for running in the background like a start would;
          // in practice the first poll answers "running" and this settles at once.
          const p = this.waitBooted(entry, r).catch(() => {});
          const tracked: Promise<void> = p.finally(() => {
            if (entry.starting === tracked) entry.starting = null;
          });
          entry.starting = tracked;
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([p, new Promise<void>((res) => (timer = setTimeout(res, 3000)))]);
          clearTimeout(timer);
        }
        return rec.name;
      }),
    );
    return found.filter((n): n is string => n !== null);
  }

  /**
   * Adopt the vfkit named by this VM's pidfile if it is alive and really ours; otherwise remove
   * its stale pidfile and socket. Returns whether it adopted.
   */
  private async tryAdopt(name: string, paths: SupervisedPaths, fromScan: boolean): Promise<Run | null> {
    const rec = readRecord(paths.bootRecord);
    const pid = readPid(paths.pidfile) ?? rec?.pid ?? null;
    const finished = rec?.endedAt !== undefined;
    if (pid === null || (finished && !existsSync(paths.pidfile))) {
      if (fromScan && !finished) this.cleanStale(name, paths, rec, 'no pid was recorded');
      return null;
    }
    const why = await this.notOurVfkit(pid, paths);
    if (why) {
      this.cleanStale(name, paths, rec, why);
      if (fromScan && rec && !finished) await this.endedWhileAway(name, rec);
      return null;
    }
    const rest = restFor(paths);
    let restOk = false;
    for (let i = 0; i < 3 && !restOk; i++) {
      try {
        await rest.getState({ timeoutMs: 1500 });
        restOk = true;
      } catch {
        await sleep(200 * (i + 1));
      }
    }
    const record: BootRecord = rec
      ? { ...rec, pid }
      : { name, argv: [], drvPath: '', outPath: '', startedAt: startedAtOf(paths.pidfile), pid, paths };
    delete record.endedAt;
    delete record.exit;
    const e = this.entry(name);
    const r = this.newRun(pid, null, paths, record, true);
    e.run = r;
    e.exit = null;
    // A live vfkit whose REST API is silent is still ours: keep its pidfile and watch it by pid
    // rather than orphan a running VM.
    e.error = restOk
      ? null
      : `vfkit for VM "${name}" (pid ${pid}) runs but its REST API at ${rest.uri} does not answer; stopping it will use signals.`;
    this.log(`VM "${name}": adopted vfkit pid ${pid}${restOk ? '' : ' (REST API not answering)'}`);
    this.ensureLiveness();
    this.setState(e, restOk ? 'starting' : 'running');
    // Without a REST answer there is no connection to watch: keep checking, backing off.
    if (!restOk) setTimeout(() => void this.confirmEnd(e, r), 1000).unref();
    return r;
  }

  /** Null when `pid` is a live vfkit started for these paths; otherwise why not. */
  private async notOurVfkit(pid: number, paths: SupervisedPaths): Promise<string | null> {
    if (!pidAlive(pid)) return `pid ${pid} is not running`;
    // -ww: BSD ps cuts lines at 79 columns when stdout is not a terminal.
    const r = await run(['ps', '-ww', '-o', 'stat=,args=', '-p', String(pid)], {
      allowFailure: true,
      searchPath: ['/bin', '/usr/bin'],
      timeoutMs: 5000,
    }).catch(() => null);
    if (!r) return null; // ps failed to run at all: trust the pid and the REST check
    const line = r.stdout.trim();
    if (!line) return `pid ${pid} is not running`;
    if (/^Z/.test(line)) return `pid ${pid} has exited`;
    // Exactly our pidfile as --pidfile's value (ps joins argv with spaces), not just a path that ends like it.
    const args = ` ${line.replace(/^\S+\s+/, '')} `;
    if (!args.includes(` --pidfile ${paths.pidfile} `) && !args.includes(` --pidfile=${paths.pidfile} `)) {
      return `pid ${pid} is another program now (${truncate(args.trim(), 80)})`;
    }
    return null;
  }

  /**
   * A run that ended while no agent watched it: say how, as far as can be known. A host restart
   * since it booted ends every VM and is no crash; otherwise the console tells a clean power-off
   * from a crash. The exit code went nowhere, so it stays null.
   */
  private async endedWhileAway(name: string, rec: BootRecord): Promise<void> {
    const hostBoot = Date.now() - os.uptime() * 1000;
    const lastLines = await tail(rec.paths.consoleLog, 20).catch(() => [] as string[]);
    const at = Date.now();
    const exit: VmExit = { code: null, signal: null, lastLines, at };
    writeRecord({ ...rec, endedAt: at, exit });
    const e = this.entry(name);
    if (e.run || e.starting) return;
    e.exit = exit;
    const clean = rec.startedAt < hostBoot || lastLines.some((l) => CLEAN_END.test(l));
    e.error = clean
      ? null
      : `VM "${name}" ended while nixvm was not running, without a clean shutdown${lastLines.length ? ` (last console line: ${truncate(lastLines.at(-1)!, 120)})` : ''}; start it again, and see its console log for why.`;
    this.log(`VM "${name}": ended while nixvm was not running → ${clean ? 'stopped' : 'crashed'}`);
    this.setState(e, clean ? 'stopped' : 'crashed');
    this.emit('exit', name, exit);
  }

  private cleanStale(name: string, paths: SupervisedPaths, rec: BootRecord | null, why: string): void {
    const had = existsSync(paths.pidfile);
    rmSync(paths.pidfile, { force: true });
    this.removeSocket(paths);
    if (rec && rec.endedAt === undefined) writeRecord({ ...rec, endedAt: Date.now() });
    if (had || rec) this.log(`VM "${name}": cleaned up a stale pidfile and socket from an earlier run (${why})`);
  }

  // ---------------------------------------------------------------- exit detection

  private newRun(
    pid: number,
    child: ChildProcess | null,
    paths: SupervisedPaths,
    record: BootRecord,
    adopted: boolean,
  ): Run {
    let settle!: (e: EndInfo) => void;
    let markDone!: () => void;
    const ended = new Promise<EndInfo>((res) => (settle = res));
    const done = new Promise<void>((res) => (markDone = res));
    const r: Run = {
      pid,
      child,
      paths,
      rest: restFor(paths),
      record,
      adopted,
      booting: false,
      restSeen: false,
      stopRequested: false,
      ended,
      settle: (info) => {
        if (r.isEnded) return;
        r.isEnded = true;
        // Read now: the boot loop wakes on `ended` and clears the flag before onEnded looks.
        const wasBooting = r.booting;
        settle(info);
        void this.onEnded(record.name, r, info, wasBooting).finally(markDone);
      },
      isEnded: false,
      done,
      markDone,
      unwatch: null,
      lastArm: 0,
      rearmDelay: 0,
      silentDelay: 0,
      fastPoll: null,
    };
    return r;
  }

  /**
   * Adopted VMs: hold an idle connection to the REST socket. It closes when vfkit exits (or, with
   * a server that drops idle connections, now and then): either way confirmEnd decides.
   */
  private watchAdopted(e: Entry, r: Run): void {
    if (this.closed || r.isEnded || e.run !== r) return;
    r.unwatch?.();
    r.lastArm = Date.now();
    const w = r.rest.watch(() => {
      r.unwatch = null;
      void this.confirmEnd(e, r);
    });
    r.unwatch = w.cancel;
  }

  private async confirmEnd(e: Entry, r: Run): Promise<void> {
    if (this.closed || r.isEnded || e.run !== r) return;
    // REST first: answering is proof of life and costs no process spawn (an idle-closing server
    // sends us here every few seconds).
    let answers = false;
    if (pidAlive(r.pid)) {
      try {
        await r.rest.getState({ timeoutMs: 2000 });
        answers = true;
      } catch {
        // Gone or on its way out; decided below.
      }
    }
    if (r.isEnded || e.run !== r) return;
    if (!answers) {
      if (await pidGone(r.pid)) r.settle({ code: null, signal: null });
      // Alive but silent: exiting, or hung; look again shortly (the liveness timer also keeps checking).
      else {
        r.silentDelay = Math.min(Math.max(r.silentDelay, 500) * 2, 30_000);
        setTimeout(() => void this.confirmEnd(e, r), r.silentDelay).unref();
      }
      return;
    }
    r.silentDelay = 0;
    if (e.error?.includes('does not answer')) {
      e.error = null;
      this.emit('change', e.name);
    }
    if (r.unwatch) return; // already watched (we came here from the liveness timer)
    // Still there: the server closed an idle connection (vfkit does not; a Node server would only
    // if asked to). Re-arm, backing off if it keeps closing quickly so a misbehaving server cannot make us spin.
    const lived = Date.now() - r.lastArm;
    r.rearmDelay = lived < 1000 ? Math.min(Math.max(r.rearmDelay, 500) * 2, 30_000) : 0;
    if (r.rearmDelay) setTimeout(() => this.watchAdopted(e, r), r.rearmDelay).unref();
    else this.watchAdopted(e, r);
  }

  private ensureLiveness(): void {
    if (this.closed || this.liveness) return;
    this.liveness = setInterval(() => {
      let any = false;
      for (const e of this.vms.values()) {
        const r = e.run;
        if (!r?.adopted || r.isEnded) continue;
        any = true;
        if (!pidAlive(r.pid)) void this.confirmEnd(e, r);
      }
      if (!any && this.liveness) {
        clearInterval(this.liveness);
        this.liveness = null;
      }
    }, this.opts.livenessIntervalMs);
    this.liveness.unref();
  }

  /** While stopping an adopted VM: check often, it is about to go. */
  private startFastPoll(r: Run): void {
    if (r.fastPoll) return;
    let tick = 0;
    r.fastPoll = setInterval(() => {
      if (!pidAlive(r.pid)) r.settle({ code: null, signal: null });
      // Once a second also catch a zombie nobody reaps (kill(pid, 0) succeeds on those).
      else if (++tick % 10 === 0) void pidGone(r.pid).then((gone) => gone && r.settle({ code: null, signal: null }));
    }, 100);
    r.fastPoll.unref();
  }

  private stopFastPoll(r: Run): void {
    if (r.fastPoll) clearInterval(r.fastPoll);
    r.fastPoll = null;
  }

  /** Record how a run ended: state, exit, error, files. */
  private async onEnded(name: string, r: Run, info: EndInfo, booting: boolean): Promise<void> {
    const e = this.entry(name);
    r.unwatch?.();
    this.stopFastPoll(r);
    const lastLines = await Promise.resolve(tail(r.paths.consoleLog, 20)).catch(() => [] as string[]);
    const exit: VmExit = { code: info.code, signal: info.signal, lastLines, at: Date.now() };
    if (e.run !== r) return;
    rmSync(r.paths.pidfile, { force: true });
    this.removeSocket(r.paths);
    writeRecord({ ...r.record, endedAt: exit.at, exit });
    e.run = null;
    e.exit = exit;
    let state: VmRunState;
    if (booting && !r.stopRequested) {
      state = 'crashed';
      e.error = startFailure(name, r.paths, info, r.restSeen);
    } else if (r.stopRequested) {
      state = 'stopped';
    } else if (info.signal === null && info.code === 0) {
      state = 'stopped'; // the guest powered off (or someone sent vfkit SIGTERM, which is a clean stop)
    } else if (info.signal === null && info.code === null) {
      // Adopted: the exit status went to the old agent. A clean power-off leaves its mark on the console.
      state = lastLines.some((l) => CLEAN_END.test(l)) ? 'stopped' : 'crashed';
    } else {
      state = 'crashed';
    }
    if (state === 'crashed' && !e.error) e.error = crashSentence(name, info, lastLines);
    if (state === 'stopped') e.error = null;
    this.log(`VM "${name}": vfkit pid ${r.pid} ended (${how(info)}) → ${state}`);
    this.setState(e, state);
    this.emit('exit', name, exit);
  }

  // ---------------------------------------------------------------- helpers

  private entry(name: string): Entry {
    let e = this.vms.get(name);
    if (!e) {
      e = {
        name,
        state: 'stopped',
        exit: null,
        error: null,
        run: null,
        starting: null,
        stopping: null,
        cancelStart: false,
      };
      this.vms.set(name, e);
    }
    return e;
  }

  private setState(e: Entry, s: VmRunState): void {
    e.state = s;
    this.emit('change', e.name);
  }

  private removeSocket(paths: SupervisedPaths): void {
    const ep = restFor(paths).endpoint;
    if (ep.kind === 'unix') rmSync(ep.path, { force: true });
  }

  private log(line: string): void {
    this.emit('log', line);
  }

  /** Drop watches and timers (VMs keep running); for tests and agent shutdown. */
  close(): void {
    this.closed = true;
    if (this.liveness) clearInterval(this.liveness);
    this.liveness = null;
    for (const e of this.vms.values()) {
      e.run?.unwatch?.();
      if (e.run) this.stopFastPoll(e.run);
    }
  }
}

// ------------------------------------------------------------------ module helpers

function vfkitLogPath(paths: SupervisedPaths): string {
  return path.join(paths.dir, 'vfkit.log');
}

function restFor(paths: SupervisedPaths): VfkitRest {
  const s = paths.restSocket;
  return new VfkitRest(/^[a-z]+:\/\//.test(s) ? s : `unix://${s}`);
}

/** The directory holding one sub-directory per VM. */
function vmsRoot(stateDir: string, logsDir: string): string {
  return path.dirname(runtimePaths(stateDir, logsDir, 'probe').dir);
}

function writeRecord(rec: BootRecord): void {
  const tmp = `${rec.paths.bootRecord}.tmp`;
  mkdirSync(path.dirname(rec.paths.bootRecord), { recursive: true });
  writeFileSync(tmp, JSON.stringify(rec, null, 2));
  renameSync(tmp, rec.paths.bootRecord);
}

function readRecord(file: string): BootRecord | null {
  try {
    const j = JSON.parse(readFileSync(file, 'utf8')) as BootRecord;
    if (typeof j.name !== 'string' || !j.paths || typeof j.paths.pidfile !== 'string') return null;
    return j;
  } catch {
    return null;
  }
}

/** vfkit writes the bare pid, no newline (pkg/process). */
function readPid(file: string): number | null {
  try {
    const n = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

function startedAtOf(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return Date.now();
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Gone, or a zombie nobody has reaped yet (its parent, the old agent, died). */
async function pidGone(pid: number): Promise<boolean> {
  if (!pidAlive(pid)) return true;
  const r = await run(['ps', '-o', 'stat=', '-p', String(pid)], {
    allowFailure: true,
    searchPath: ['/bin', '/usr/bin'],
    timeoutMs: 5000,
  }).catch(() => null);
  if (!r) return false;
  const stat = r.stdout.trim();
  return stat === '' || stat.startsWith('Z');
}

function how(info: EndInfo): string {
  if (info.signal) return `killed by ${info.signal}`;
  if (info.code === null) return 'exit code unknown';
  return `exit code ${info.code}`;
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function crashSentence(name: string, info: EndInfo, lastLines: string[]): string {
  const last = [...lastLines].reverse().find((l) => l.trim());
  const cause = info.signal
    ? `vfkit was killed by ${info.signal}`
    : info.code === null
      ? 'its vfkit ended while the agent was not its parent, so the exit code is unknown'
      : `vfkit exited with code ${info.code}`;
  return `VM "${name}" crashed: ${cause}${last ? `; the console's last line was "${truncate(last.trim(), 160)}"` : ''}.`;
}

/**
 * vfkit's own reason for a failed start, from its output, as one sentence with what to do. Before
 * its REST API answered, vfkit was still checking the configuration: it refused it. After, the VM
 * had started and died while booting.
 */
function startFailure(name: string, paths: SupervisedPaths, info: EndInfo, restSeen: boolean): string {
  let text = '';
  try {
    text = readFileSync(vfkitLogPath(paths), 'utf8');
  } catch {
    // No output at all.
  }
  const msg = vfkitMessage(text)?.replace(/[.\s]+$/, '') ?? null;
  if (restSeen) {
    return `VM "${name}" crashed while booting (vfkit ${how(info)}${msg ? `: ${msg}` : ''}); see its console log and ${vfkitLogPath(paths)}.`;
  }
  if (!msg) {
    return `vfkit for VM "${name}" exited while starting (${how(info)}) without saying why; see ${vfkitLogPath(paths)}.`;
  }
  return `vfkit refused to start VM "${name}": ${msg}; ${hintFor(msg)}.`;
}

/**
 * The error line in vfkit's output. vfkit logs with logrus (`time=… level=… msg="…"`) and on
 * failure cobra prints `Error: <err>` (plus usage) and main prints `<err>` again last.
 */
export function vfkitMessage(text: string): string | null {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const cobra = lines.find((l) => l.startsWith('Error: '));
  if (cobra) return cobra.slice('Error: '.length).trim();
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = lines[i]!.match(/level=(?:fatal|error|panic)\s+msg="((?:[^"\\]|\\.)*)"/);
    if (m?.[1]) return m[1].replace(/\\"/g, '"');
  }
  const last = lines.at(-1);
  return last && !/level=(info|debug|warning)/.test(last) ? last : null;
}

function hintFor(msg: string): string {
  if (/rosetta is not installed/i.test(msg))
    return 'install Rosetta with `softwareupdate --install-rosetta --agree-to-license` or turn off virtualisation.rosetta.enable';
  if (/rosetta is (not supported|unsupported)/i.test(msg))
    return 'Rosetta needs an Apple silicon Mac, so turn off virtualisation.rosetta.enable for this VM';
  if (/kernel must be uncompressed|compressed file/i.test(msg))
    return 'on Apple silicon Virtualization.framework boots only an uncompressed kernel Image, so build the VM with one';
  return "fix the VM's configuration and start it again";
}
