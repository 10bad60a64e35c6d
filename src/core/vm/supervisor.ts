/**
 * The VM supervisor, the one owner of run state: spawns one vfkit per VM (detached, in its own
 * session, so VMs outlive the agent), follows each through stopped → starting → running →
 * stopping → stopped (or crashed), stops them with an escalation (REST Stop → REST HardStop →
 * SIGTERM → SIGKILL), and after an agent restart adopts the vfkits still running and keeps
 * learning how they end. It reports what each run booted (argv, closure, device facts, MAC) from
 * memory; the boot record on disk is read only here, at adoption.
 *
 * Idle cost is the point: a running VM costs nothing but an idle socket. Our own children report
 * their exit through the child handle; adopted ones through exit-watch.ts. The REST API is polled
 * only while a VM boots or stops. Whether a run can be adopted is adoption.ts's question, how to
 * stop one stop-escalation.ts's, and the words for how it ended ending.ts's.
 */
import { EventEmitter } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import type { VmExit, VmRunState } from '../../api/types.ts';
import { MAX_LOG_LINE_BYTES } from '../../api/validate.ts';
import { runStartLine, runStartOf } from '../../api/log-lines.ts';
import { errnoCode, fsReason, fsSentence } from '../../host/fs-errors.ts';
import { spawnDetached } from '../../host/runner.ts';
import { checkAdoptable } from './adoption.ts';
import { allRecords, vfkitLogPath, writeRecord, type BootRecord } from './boot-record.ts';
import { DEFAULT_CONSOLE_KEEP, rotateConsoleLog, tail, tailBytes } from './console.ts';
import { CONSOLE_HISTORY_BYTES, ConsoleRelay } from './console-relay.ts';
import { crashSentence, endedAwaySentence, endedCleanly, how, startFailure, type EndInfo } from './ending.ts';
import { ExitWatch } from './exit-watch.ts';
import { RestError, VfkitRest } from './rest.ts';
import { escalateStop } from './stop-escalation.ts';
import { prepareScratch, removeScratch, scratchDir, type ScratchPlan } from './run-dirs.ts';
import { prepareRuntimeDirs, type VmRuntimePaths } from './runtime-paths.ts';
import type { DeviceFacts } from './vfkit-args.ts';

/** The per-VM files the supervisor uses (runtime-paths.ts). `restSocket` may also be a full unix:// or tcp:// URI. */
export type SupervisedPaths = VmRuntimePaths;

export interface SupervisedVm {
  name: string;
  /** The exact vfkit argv, program first (vfkit-args.ts). */
  argv: string[];
  paths: SupervisedPaths;
  drvPath: string;
  outPath: string;
  /** What the argv's devices were made from (vfkit-args.ts deviceFacts); kept to tell staleness. */
  facts: DeviceFacts | null;
  /** The run's scratch directory ($TMPDIR), made afresh just before vfkit starts; none when omitted. */
  scratch?: ScratchPlan;
}

/** What the current run booted. */
export interface BootedRun {
  drvPath: string;
  outPath: string;
  argv: string[];
  facts: DeviceFacts | null;
  /** The MAC its network device has; null when unknown (a record from before device facts). */
  mac: string | null;
  /** The closure an `apply` switched the running guest to (its kernel and devices are still the booted ones). */
  switchedTo?: { drvPath: string; outPath: string; at: number } | null;
}

export interface VmStatus {
  state: VmRunState;
  pid: number | null;
  startedAt: number | null;
  exit: VmExit | null;
  /** What the current run booted; null when no vfkit runs. */
  booted: BootedRun | null;
  error: string | null;
}

export interface SupervisorOptions {
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
}

export interface SupervisorEvents {
  /** Something about this VM's run changed (state, pid, error). */
  change: [vm: string];
  /** A line worth the agent's log. */
  log: [line: string];
  /** A run ended (after `change` moved it to stopped or crashed). */
  exit: [vm: string, exit: VmExit];
}

/** A start that failed: vfkit refused the configuration, exited during boot, or never came up. */
export class VmStartError extends Error {
  readonly vm: string;
  /** A stop came first: the start was cancelled, nothing failed. */
  readonly cancelled: boolean;
  constructor(vm: string, message: string, cancelled = false) {
    super(message);
    this.name = 'VmStartError';
    this.vm = vm;
    this.cancelled = cancelled;
  }
}

function startStopped(vm: string): VmStartError {
  return new VmStartError(
    vm,
    `The start of VM ${JSON.stringify(vm)} was cancelled: it was stopped before it finished starting.`,
    true,
  );
}

/** One vfkit process: ours (child set) or adopted. */
interface Run {
  pid: number;
  child: ChildProcess | null;
  paths: SupervisedPaths;
  rest: VfkitRest;
  record: BootRecord;
  booted: BootedRun;
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
  /** The pty console's reader, once vfkit has named the pty. */
  console: ConsoleRelay | null;
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

/** The MAC of the `virtio-net` device in an argv (records from before device facts). */
function macInArgv(argv: readonly string[]): string | null {
  return argv.find((a) => a.startsWith('virtio-net,'))?.match(/mac=([0-9a-fA-F:]+)/)?.[1] ?? null;
}

function bootedOf(rec: BootRecord): BootedRun {
  return {
    drvPath: rec.drvPath,
    outPath: rec.outPath,
    argv: rec.argv,
    facts: rec.facts,
    mac: rec.facts?.mac ?? macInArgv(rec.argv),
    switchedTo: rec.switchedTo ?? null,
  };
}

export class Supervisor extends EventEmitter<SupervisorEvents> {
  readonly opts: Required<Omit<SupervisorOptions, 'env'>> & { env: Record<string, string | undefined> };
  private readonly vms = new Map<string, Entry>();
  private readonly watch: ExitWatch;
  /** File-system trouble met in the background (a run's end, a cleanup), one sentence per VM. */
  private readonly fsProblems = new Map<string, string>();

  constructor(opts: SupervisorOptions) {
    super();
    this.opts = {
      stopTimeoutMs: 30_000,
      hardStopTimeoutMs: 5_000,
      termTimeoutMs: 8_000,
      bootTimeoutMs: 120_000,
      consoleKeep: DEFAULT_CONSOLE_KEEP,
      livenessIntervalMs: 5_000,
      ...opts,
      env: opts.env ?? {},
    };
    this.watch = new ExitWatch(this.opts.livenessIntervalMs);
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
      booted: r?.booted ?? null,
      error: e.error,
    };
  }

  /**
   * The guest now runs `closure` (switched in place): kept in the run and its boot record, so an
   * agent that restarts knows it too. The next boot starts from a new record.
   */
  markSwitched(name: string, closure: { drvPath: string; outPath: string }): void {
    const r = this.vms.get(name)?.run;
    if (!r) return;
    const switchedTo = { ...closure, at: Date.now() };
    r.booted = { ...r.booted, switchedTo };
    r.record = { ...r.record, switchedTo };
    this.bestEffort(name, 'write the boot record', () => writeRecord(r.record));
    this.emit('change', name);
  }

  list(): Array<VmStatus & { name: string }> {
    return [...this.vms.keys()].sort().map((name) => ({ name, ...this.status(name) }));
  }

  /** What went wrong with VMs' files in the background (the agent carried on), one sentence each. */
  get problems(): string[] {
    return [...this.fsProblems.values()];
  }

  /** Run a file-system step that must not stop what it is part of; a failure is logged and kept. */
  private bestEffort(vm: string, what: string, fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const sentence = /^Could not /.test(why)
        ? why
        : `Could not ${what} of VM ${JSON.stringify(vm)}: ${fsReason(err)}.`;
      this.fsProblems.set(vm, sentence);
      this.log(`VM ${JSON.stringify(vm)}: ${sentence}`);
      this.emit('change', vm);
      return false;
    }
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
      prepareRuntimeDirs(paths);
      // A vfkit for this VM may already run (an agent that did not adopt yet): take it over
      // rather than start a second one on the same files.
      existing = await this.tryAdopt(vm.name, paths, false);
      if (!existing) {
        if (e.cancelStart) {
          this.setState(e, 'stopped');
          throw startStopped(vm.name);
        }
        await rotateConsoleLog(paths.consoleLog, this.opts.consoleKeep);
        rmSync(paths.pidfile, { force: true });
        this.removeSocket(paths);
        const vfkitLog = vfkitLogPath(paths);
        if (existsSync(vfkitLog)) renameSync(vfkitLog, `${vfkitLog}.1`);
      }
    } catch (err) {
      if (err instanceof VmStartError && err.cancelled) throw err;
      e.error = errnoCode(err)
        ? fsSentence(`prepare the files of VM ${JSON.stringify(vm.name)} in`, paths.dir, err)
        : err instanceof Error
          ? err.message
          : String(err);
      this.setState(e, 'stopped');
      throw new VmStartError(vm.name, e.error);
    }
    if (existing) {
      await this.waitBooted(e, existing);
      return;
    }
    if (e.cancelStart) {
      this.setState(e, 'stopped');
      throw startStopped(vm.name);
    }
    if (vm.scratch) {
      try {
        prepareScratch(scratchDir(paths), vm.scratch);
      } catch (err) {
        e.error = `Could not prepare the scratch directory ($TMPDIR) of VM ${JSON.stringify(vm.name)} at ${scratchDir(paths)}: ${err instanceof Error ? err.message : String(err)}`;
        this.setState(e, 'stopped');
        throw new VmStartError(vm.name, e.error);
      }
    }

    const record: BootRecord = {
      name: vm.name,
      argv,
      drvPath: vm.drvPath,
      outPath: vm.outPath,
      facts: vm.facts,
      startedAt: Date.now(),
      pid: null,
      paths,
    };
    // Written before the spawn too, so an agent killed in between still finds the run's files.
    // A disk that refuses it refuses the start: a VM without its record could not be adopted.
    try {
      writeRecord(record);
    } catch (err) {
      e.error = err instanceof Error ? err.message : String(err);
      this.setState(e, 'stopped');
      throw new VmStartError(vm.name, e.error);
    }
    this.fsProblems.delete(vm.name);
    // The run's console log starts with when it started: a log window following the file across a
    // restart (and `logs`, which reads the runs before it too) shows where each run begins. Only
    // for the pty console, whose log the agent writes; vfkit owns a logFilePath console's file.
    if (argv.includes('virtio-serial,pty'))
      this.bestEffort(vm.name, 'write the console log', () =>
        writeFileSync(paths.consoleLog, `${runStartLine(record.startedAt)}\n`, { flag: 'a', mode: 0o644 }),
      );
    let spawned: ReturnType<typeof spawnDetached>;
    try {
      spawned = spawnDetached(argv, { env: this.opts.env, outputFile: vfkitLogPath(paths) });
    } catch (err) {
      record.endedAt = Date.now();
      this.bestEffort(vm.name, 'write the boot record', () => writeRecord(record));
      e.error = `Could not start vfkit for VM ${JSON.stringify(vm.name)}: ${err instanceof Error ? err.message : String(err)}`;
      this.setState(e, 'stopped');
      throw new VmStartError(vm.name, e.error);
    }
    record.pid = spawned.pid;
    // vfkit runs now: a record we cannot update costs adoption later, not this run.
    this.bestEffort(vm.name, 'write the boot record', () => writeRecord(record));
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
          if (!r.restSeen) {
            r.restSeen = true;
            // vfkit made the pty before its REST API came up: read it from now on.
            await this.openConsole(e.name, r);
          }
          if (s.state === 'running') {
            if (r.isEnded || r.stopRequested) break;
            this.setState(e, 'running');
            if (r.adopted) this.watch.arm(r);
            return;
          }
        } catch (err) {
          if (!(err instanceof RestError)) throw err;
          // Not listening yet, or a slow answer: keep waiting while vfkit lives.
        }
        if (Date.now() > deadline) {
          await this.giveUpBoot(e, r);
          throw new VmStartError(e.name, e.error ?? `VM ${JSON.stringify(e.name)} did not come up.`);
        }
        await Promise.race([r.ended, sleep(delay)]);
        delay = Math.min(Math.round(delay * 1.5), 250);
      }
    } finally {
      r.booting = false;
    }
    // stop() took over; it owns the state from here, and this start did not happen.
    if (r.stopRequested) throw startStopped(e.name);
    await r.done;
    throw new VmStartError(
      e.name,
      e.error ??
        `VM ${JSON.stringify(e.name)} ended while starting (${e.exit ? how({ code: e.exit.code, signal: e.exit.signal }) : 'exit unknown'}); see ${vfkitLogPath(r.paths)}.`,
    );
  }

  private async giveUpBoot(e: Entry, r: Run): Promise<void> {
    const ms = this.opts.bootTimeoutMs;
    const secs = ms < 10_000 ? String(+(ms / 1000).toFixed(1)) : String(Math.round(ms / 1000));
    await this.escalate(e, r, { quiet: true });
    e.error =
      `VM ${JSON.stringify(e.name)} did not come up within ${secs} s (vfkit's REST API at ${r.rest.uri} never reported it running), ` +
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
        // Still preparing files: nothing spawned yet, cancel before it is.
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
    if (r.adopted) this.watch.startFastPoll(r);
    try {
      const target = {
        name: e.name,
        pid: r.pid,
        rest: r.rest,
        ended: r.ended,
        get isEnded() {
          return r.isEnded;
        },
      };
      if (!(await escalateStop(target, this.opts, (line) => this.log(line)))) {
        e.error = `VM ${JSON.stringify(e.name)} (vfkit pid ${r.pid}) did not exit even after SIGKILL; check the process in Activity Monitor.`;
        this.emit('change', e.name);
        throw new Error(e.error);
      }
      await r.done;
    } finally {
      this.watch.stopFastPoll(r);
    }
  }

  // ---------------------------------------------------------------- adoption

  /**
   * On agent start: adopt every VM whose vfkit still runs (pid alive, its command line names our
   * pidfile, REST answers) and clean up what is left of the others. Returns the adopted names.
   */
  async adoptAll(): Promise<string[]> {
    const found = await Promise.all(
      allRecords(this.opts.stateDir).map(async (rec) => {
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
   * its stale pidfile and socket. Returns the adopted run.
   */
  private async tryAdopt(name: string, paths: SupervisedPaths, fromScan: boolean): Promise<Run | null> {
    const rest = restFor(paths);
    const check = await checkAdoptable(name, paths, rest);
    if (check.kind === 'none') return null;
    if (check.kind === 'stale') {
      if (!check.noPid || fromScan) this.cleanStale(name, paths, check.record, check.why);
      if (fromScan && check.unfinished && check.record) await this.endedWhileAway(name, check.record);
      return null;
    }
    const { pid, record, restOk } = check;
    const e = this.entry(name);
    const r = this.newRun(pid, null, paths, record, true);
    e.run = r;
    e.exit = null;
    // A live vfkit whose REST API is silent is still ours: keep its pidfile and watch it by pid
    // rather than orphan a running VM.
    e.error = restOk
      ? null
      : `vfkit for VM ${JSON.stringify(name)} (pid ${pid}) runs but its REST API at ${rest.uri} does not answer; stopping it will use signals.`;
    this.log(`VM ${JSON.stringify(name)}: adopted vfkit pid ${pid}${restOk ? '' : ' (REST API not answering)'}`);
    this.watch.track(r, {
      current: () => e.run === r,
      answered: () => {
        if (e.error?.includes('does not answer')) {
          e.error = null;
          this.emit('change', e.name);
        }
      },
    });
    this.setState(e, restOk ? 'starting' : 'running');
    if (record.ptyName) await this.openConsole(name, r, record.ptyName);
    // Without a REST answer there is no connection to watch: keep checking, backing off.
    if (!restOk) this.watch.confirmLater(r, 1000);
    return r;
  }

  /**
   * A run that ended while no agent watched it: say how, as far as can be known. A host restart
   * since it booted ends every VM and is no crash; otherwise the console tells a clean power-off
   * from a crash. The exit code went nowhere, so it stays null.
   */
  private async endedWhileAway(name: string, rec: BootRecord): Promise<void> {
    const hostBoot = Date.now() - os.uptime() * 1000;
    const lastLines = guestLines(
      await tail(rec.paths.consoleLog, 20, { maxLineBytes: MAX_LOG_LINE_BYTES }).catch(() => [] as string[]),
    );
    const at = Date.now();
    const exit: VmExit = { code: null, signal: null, lastLines, at };
    this.bestEffort(name, 'write the boot record', () => writeRecord({ ...rec, endedAt: at, exit }));
    const e = this.entry(name);
    if (e.run || e.starting) return;
    e.exit = exit;
    // A pty console's last lines were read by nobody: its end cannot be told from the log.
    const clean = rec.startedAt < hostBoot || endedCleanly(lastLines) || rec.ptyName !== undefined;
    e.error = clean ? null : endedAwaySentence(name, lastLines);
    this.log(`VM ${JSON.stringify(name)}: ended while nixvm was not running → ${clean ? 'stopped' : 'crashed'}`);
    this.setState(e, clean ? 'stopped' : 'crashed');
    this.emit('exit', name, exit);
  }

  private cleanStale(name: string, paths: SupervisedPaths, rec: BootRecord | null, why: string): void {
    const had = existsSync(paths.pidfile);
    this.bestEffort(name, 'remove the old pidfile', () => rmSync(paths.pidfile, { force: true }));
    this.bestEffort(name, 'remove the old REST socket', () => this.removeSocket(paths));
    this.removeScratchOf(paths);
    if (rec && rec.endedAt === undefined) {
      this.bestEffort(name, 'write the boot record', () => writeRecord({ ...rec, endedAt: Date.now() }));
    }
    if (had || rec)
      this.log(`VM ${JSON.stringify(name)}: cleaned up a stale pidfile and socket from an earlier run (${why})`);
  }

  // ---------------------------------------------------------------- exit

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
      booted: bootedOf(record),
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
        void this.onEnded(record.name, r, info, wasBooting)
          .catch((err: unknown) =>
            this.log(`VM ${JSON.stringify(record.name)}: recording its end failed: ${String(err)}`),
          )
          .finally(markDone);
      },
      isEnded: false,
      done,
      console: null,
    };
    return r;
  }

  /** Record how a run ended: state, exit, error, files. */
  private async onEnded(name: string, r: Run, info: EndInfo, booting: boolean): Promise<void> {
    const e = this.entry(name);
    this.watch.forget(r);
    await this.drainConsole(r);
    const lastLines = guestLines(
      await Promise.resolve(tail(r.paths.consoleLog, 20, { maxLineBytes: MAX_LOG_LINE_BYTES })).catch(
        () => [] as string[],
      ),
    );
    const exit: VmExit = { code: info.code, signal: info.signal, lastLines, at: Date.now() };
    if (e.run !== r) return;
    // The run is over whatever the disk says: files that cannot be cleaned up are told, not thrown.
    this.bestEffort(name, 'remove the pidfile', () => rmSync(r.paths.pidfile, { force: true }));
    this.bestEffort(name, 'remove the REST socket', () => this.removeSocket(r.paths));
    this.removeScratchOf(r.paths);
    this.bestEffort(name, 'write the boot record', () => writeRecord({ ...r.record, endedAt: exit.at, exit }));
    e.run = null;
    e.exit = exit;
    let state: VmRunState;
    if (booting && !r.stopRequested) {
      state = 'crashed';
      e.error = startFailure(name, r.paths, info, r.restSeen, lastLines);
    } else if (r.stopRequested) {
      state = 'stopped';
    } else if (info.signal === null && info.code === 0) {
      state = 'stopped'; // the guest powered off (or someone sent vfkit SIGTERM, which is a clean stop)
    } else if (info.signal === null && info.code === null) {
      // Adopted: the exit status went to the old agent. A clean power-off leaves its mark on the console.
      state = endedCleanly(lastLines) ? 'stopped' : 'crashed';
    } else {
      state = 'crashed';
    }
    if (state === 'crashed' && !e.error) e.error = crashSentence(name, info, lastLines);
    if (state === 'stopped') e.error = null;
    this.log(`VM ${JSON.stringify(name)}: vfkit pid ${r.pid} ended (${how(info)}) → ${state}`);
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

  /** The REST socket and the ssh vsock socket: vfkit listens on both and removes neither; a stale one makes its listen fail. */
  private removeSocket(paths: SupervisedPaths): void {
    const ep = restFor(paths).endpoint;
    if (ep.kind === 'unix') rmSync(ep.path, { force: true });
    if (paths.sshSocket) rmSync(paths.sshSocket, { force: true });
  }

  /** A run's scratch directory goes with the run. */
  private removeScratchOf(paths: SupervisedPaths): void {
    try {
      removeScratch(scratchDir(paths));
    } catch (err) {
      this.log(`could not remove ${scratchDir(paths)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private log(line: string): void {
    this.emit('log', line);
  }

  /**
   * The state dir was deleted under us: put back what the next agent needs to adopt the VMs that
   * still run (their folders, pidfiles and boot records). Returns the VMs restored.
   */
  restoreRecords(): string[] {
    const out: string[] = [];
    for (const e of this.vms.values()) {
      const r = e.run;
      if (!r || r.isEnded) continue;
      const ok = this.bestEffort(e.name, 'restore the records', () => {
        mkdirSync(r.paths.dir, { recursive: true, mode: 0o700 });
        if (!existsSync(r.paths.pidfile)) writeFileSync(r.paths.pidfile, String(r.pid), { mode: 0o600 });
        writeRecord(r.record);
      });
      if (ok) out.push(e.name);
    }
    return out;
  }

  /** Drop watches and timers and stop reading consoles (VMs keep running); for tests and agent shutdown. */
  close(): Promise<void> {
    this.watch.close();
    const closing: Promise<void>[] = [];
    for (const e of this.vms.values()) if (e.run?.console) closing.push(e.run.console.close());
    return Promise.all(closing).then(() => {});
  }

  // ---------------------------------------------------------------- console

  /** The interactive console of a running VM; null when it has none (not running, or a log-file console). */
  console(name: string): ConsoleRelay | null {
    const c = this.vms.get(name)?.run?.console ?? null;
    return c && !c.ended ? c : null;
  }

  /** Whether the run's console is a log file written by vfkit (VMs started by nixvm before 0.2). */
  consoleIsLogFile(name: string): boolean {
    const r = this.vms.get(name)?.run;
    return !!r && r.record.argv.some((a) => a.startsWith('virtio-serial,logFilePath='));
  }

  /**
   * Find the pty vfkit made for the console (from `/vm/inspect`, or the boot record after an agent
   * restart) and start relaying it. A failure is one sentence in the VM's error; the VM runs on.
   */
  private async openConsole(name: string, r: Run, known?: string): Promise<void> {
    if (r.console || r.isEnded || !r.record.argv.includes('virtio-serial,pty')) return;
    let pty = known;
    try {
      if (!pty) {
        const insp = await r.rest.inspect({ timeoutMs: 2000 });
        const dev = insp.devices?.find((d) => d.kind === 'virtioserial' && typeof d.ptyName === 'string');
        pty = dev?.ptyName as string | undefined;
        if (!pty) throw new Error(`vfkit's /vm/inspect names no pty for the console`);
        r.record.ptyName = pty;
        this.bestEffort(name, 'write the boot record', () => writeRecord(r.record));
      }
      // What the last agent saw, so an attachment after a restart starts with the screen it had.
      const history = known
        ? await tailBytes(r.paths.consoleLog, CONSOLE_HISTORY_BYTES).catch(() => Buffer.alloc(0))
        : undefined;
      const relay = new ConsoleRelay(name, pty, r.paths.consoleLog, (line) => this.log(line));
      await relay.open(history && Buffer.from(history.toString('utf8').replace(/\r?\n/g, '\r\n')));
      if (r.isEnded) {
        await relay.close();
        return;
      }
      r.console = relay;
      this.log(`VM ${JSON.stringify(name)}: console on ${pty}`);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.log(`VM ${JSON.stringify(name)}: no interactive console: ${why}`);
    }
  }

  /** The guest's last words reach the log before its end is read from there. */
  private async drainConsole(r: Run): Promise<void> {
    const c = r.console;
    if (!c) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([c.closed, new Promise<void>((res) => (timer = setTimeout(res, 1000)))]);
    clearTimeout(timer);
    await c.close(`The console of VM ${JSON.stringify(r.record.name)} closed: the VM ended.`);
  }
}

// ------------------------------------------------------------------ module helpers

/** A crash is explained by what the guest wrote, not by the run-start line the agent put first. */
function guestLines(lines: string[]): string[] {
  return lines.filter((l) => runStartOf(l) === null);
}

function restFor(paths: SupervisedPaths): VfkitRest {
  const s = paths.restSocket;
  return new VfkitRest(/^[a-z]+:\/\//.test(s) ? s : `unix://${s}`);
}
