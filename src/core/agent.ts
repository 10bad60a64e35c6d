/**
 * The Agent: the one façade every face talks to. It owns the flakes (watchers + inventory),
 * builds, the VM supervisor, settings, addresses and the control socket, and turns all of it
 * into AgentSnapshots pushed to subscribers. Commands come in through `call`.
 *
 * Data flows one way: nix/vfkit → core → snapshot → faces; commands the other way.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  AgentError,
  isAgentMethod,
  type AgentEvent,
  type AgentInfo,
  type AgentMethod,
  type AgentMethods,
  type AgentPort,
  type AgentSnapshot,
  type BuildInfo,
  type FlakeSnapshot,
  type LogKind,
  type Notice,
  type ParamsOf,
  type ResultOf,
  type Settings,
  type SshConfigInfo,
  type SubscribeOptions,
  type VmSnapshot,
  type VmSpec,
} from '../api/types.ts';
import { BuildError, BuildManager, idleInfo, type BuildResult } from './nix/build.ts';
import { FlakeError } from './nix/errors.ts';
import { drvOutPath } from './nix/drv.ts';
import { GcRoots } from './nix/gcroots.ts';
import { inventory, type InventoryResult } from './nix/inventory.ts';
import { Nix } from './nix/nix.ts';
import { FlakeWatcher, type InventoryUpdate } from './nix/watcher.ts';
import { resolvePaths, type Paths } from '../host/paths.ts';
import { AgentLog } from '../host/agent-log.ts';
import { SettingsStore } from './settings.ts';
import { acquireInstanceLock, type InstanceLock } from '../host/lock.ts';
import { controlSocketPath } from '../host/socket-path.ts';
import { startControlServer, type ControlServer } from '../control/server.ts';
import { Supervisor, type VmStatus } from './vm/supervisor.ts';
import { checkVfkitVersion, locateVfkit } from './vm/vfkit.ts';
import { vfkitArgv, validateSpec } from './vm/vfkit-args.ts';
import { prepareRuntimeDirs, runtimePaths, type VmRuntimePaths } from './vm/runtime-paths.ts';
import { follow, tail, type Follower } from './vm/console.ts';
import { generateMac } from './net/mac.ts';
import { linkLocalFromMac } from './net/linklocal.ts';
import { readLeases, findLeaseForMac, type DhcpLease } from './net/leases.ts';
import { BridgeDetector, DEFAULT_BRIDGE } from './net/bridge.ts';
import {
  includeLine,
  sshArgv,
  sshCommandLine,
  sshConfigIncludes,
  sshConfigPath,
  userSshConfigPath,
  writeSshConfig,
  type SshConfigEntry,
} from './net/ssh.ts';

const VERSION = '0.1.0';

export interface AgentOptions {
  /** Flake directories for this run, in addition to the settings' (not persisted). */
  flakes?: string[];
  /** Environment for path resolution (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Extra environment for vfkit (tests pass the simulator's fault switches). */
  vmEnv?: Record<string, string | undefined>;
  /** Take the per-user instance lock (default true). */
  lock?: boolean;
  /** Start VMs marked autostart once adopted and evaluated (default true). */
  autostart?: boolean;
  /** Serve the control socket (default true). */
  control?: boolean;
  /** Minimum time between two snapshot events (default 100 ms: ≤ 10 updates a second). */
  emitIntervalMs?: number;
  /** Flake watcher debounce (default 300 ms). */
  debounceMs?: number;
  /** Supervisor timeouts after REST HardStop and SIGTERM (tests shorten them). */
  hardStopTimeoutMs?: number;
  termTimeoutMs?: number;
  /** Called with lines worth the agent's log (defaults to stderr when NIXVM_DEBUG is set). */
  log?: (line: string) => void;
}

interface FlakeState {
  dir: string;
  watcher: FlakeWatcher | null;
  result: InventoryResult | null;
  error: string | null;
  warnings: string[];
  lastEvalAt: number | null;
  /** Resolves after the first evaluation, successful or not. */
  ready: Promise<void>;
}

interface VmEntry {
  name: string;
  flake: string;
  spec: VmSpec | null;
  error: string | null;
}

/** What was last built for a VM; persisted so staleness survives agent restarts. */
interface BuiltRecord {
  drvPath: string;
  outPath: string;
  at: number;
}

type Subscriber = { fn: (ev: AgentEvent) => void; logs: Set<string> };

const logKey = (vm: string, kind: LogKind) => `${kind}\0${vm}`;

function errorSentence(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export class Agent implements AgentPort {
  readonly paths: Paths;
  readonly settings: SettingsStore;
  readonly startedAt = Date.now();
  private readonly opts: AgentOptions;
  private readonly flakes = new Map<string, FlakeState>();
  private builder: BuildManager | null = null;
  private gcRoots: GcRoots | null = null;
  private readonly supervisor: Supervisor;
  private readonly subscribers = new Set<Subscriber>();
  private readonly followers = new Map<string, { count: number; follower: Follower | null }>();
  private readonly starting = new Map<string, Promise<VmSnapshot>>();
  private readonly built = new Map<string, BuiltRecord | null>();
  private readonly failedBuilds = new Map<string, { drvPath: string | null; kind: string; at: number }>();
  private readonly bootArgv = new Map<string, { startedAt: number | null; argv: string[] | null }>();
  private readonly bridge = new BridgeDetector();
  private readonly problems: string[] = [];
  private nix: Nix | null = null;
  private vfkit: { path: string; version: string } | null = null;
  private vfkitProblem: string | null = null;
  private lock: InstanceLock | null = null;
  private control: ControlServer | null = null;
  private leases: { mtimeMs: number; list: DhcpLease[] } = { mtimeMs: -1, list: [] };
  private bridgeName: string = DEFAULT_BRIDGE;
  /** The leased IPv4 the bridge was last detected for. */
  private bridgeProbe: string | null = null;
  /** Since when some running VM waits for its lease (for backing off). */
  private leaseWaitSince: number | null = null;
  private leaseTimer: NodeJS.Timeout | null = null;
  private emitTimer: NodeJS.Timeout | null = null;
  private lastEmit = 0;
  private lastSshConfig = '';
  /** The ssh config write in flight, awaited on close so nothing is written after. */
  private sshWrite: Promise<void> | null = null;
  private closed = false;
  private settingsOff: (() => void) | null = null;
  private sshConfigInfo: SshConfigInfo;
  private readonly agentLog: AgentLog;

  private constructor(opts: AgentOptions, paths: Paths, settings: SettingsStore) {
    this.opts = opts;
    this.paths = paths;
    this.settings = settings;
    this.agentLog = new AgentLog(paths.logsDir);
    this.agentLog.write(`nixvm agent ${VERSION} starting (pid ${process.pid})`);
    const sshPath = sshConfigPath(paths.stateDir);
    this.sshConfigInfo = { path: sshPath, includeLine: includeLine(sshPath), status: 'missing' };
    const s = settings.get();
    try {
      this.nix = Nix.locate(s.nixPath);
    } catch (err) {
      this.problems.push(errorSentence(err));
    }
    this.supervisor = new Supervisor({
      vfkit: s.vfkitPath ?? 'vfkit',
      stateDir: paths.stateDir,
      logsDir: paths.logsDir,
      stopTimeoutMs: s.stopTimeoutSec * 1000,
      ...(opts.hardStopTimeoutMs !== undefined ? { hardStopTimeoutMs: opts.hardStopTimeoutMs } : {}),
      ...(opts.termTimeoutMs !== undefined ? { termTimeoutMs: opts.termTimeoutMs } : {}),
      env: opts.vmEnv ?? {},
      // The agent checks the version itself, once, and reports it in the snapshot.
      checkVersion: false,
    });
  }

  /** Create and start an agent: lock, settings, adoption, flakes, control socket, autostart. */
  static async create(opts: AgentOptions = {}): Promise<Agent> {
    const paths = resolvePaths(opts.env ?? process.env);
    for (const d of [paths.stateDir, paths.logsDir, paths.configDir]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    const lock = opts.lock === false ? null : await acquireInstanceLock({ stateDir: paths.stateDir });
    let agent: Agent;
    try {
      const settings = new SettingsStore({ dir: paths.configDir });
      agent = new Agent(opts, paths, settings);
      agent.lock = lock;
    } catch (err) {
      lock?.release();
      throw err;
    }
    try {
      await agent.init();
    } catch (err) {
      await agent.close({ stopVms: false });
      throw err;
    }
    return agent;
  }

  private async init(): Promise<void> {
    this.builder = this.nix ? this.makeBuilder(this.nix) : null;
    this.gcRoots = this.nix ? new GcRoots(this.nix, this.gcRootsDir()) : null;
    this.wireSupervisor();
    this.settingsOff = this.settings.onChange((next, prev) => this.onSettings(next, prev));
    this.settings.onWarning(() => this.changed());
    await this.locateVfkit();
    const adopted = await this.supervisor.adoptAll();
    if (adopted.length) this.log(`adopted running VMs: ${adopted.join(', ')}`);
    this.bridgeName = await this.detectBridge();
    for (const dir of this.flakeDirs()) this.addFlake(dir);
    if (this.opts.control !== false) {
      this.control = await startControlServer(this, controlSocketPath(this.paths.stateDir), {
        onProblem: (m) => this.log(m),
      });
    }
    this.scheduleLeaseRefresh();
    await this.checkSshInclude();
    this.changed();
    if (this.opts.autostart !== false) void this.autostart();
    void this.ensureRoots();
  }

  // ------------------------------------------------------------------ AgentPort

  async call<M extends AgentMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    if (!isAgentMethod(method)) throw new AgentError('bad-request', `Unknown command ${JSON.stringify(method)}.`);
    const handler = this.handlers[method] as (p: ParamsOf<M>) => Promise<ResultOf<M>> | ResultOf<M>;
    return await handler((params ?? {}) as ParamsOf<M>);
  }

  subscribe(fn: (ev: AgentEvent) => void, opts: SubscribeOptions = {}): () => void {
    const sub: Subscriber = { fn, logs: new Set() };
    for (const l of opts.logs ?? []) {
      const key = logKey(l.vm, l.kind);
      sub.logs.add(key);
      this.retainLog(l.vm, l.kind);
    }
    this.subscribers.add(sub);
    return () => {
      if (!this.subscribers.delete(sub)) return;
      for (const key of sub.logs) {
        const [kind, vm] = key.split('\0') as [LogKind, string];
        this.releaseLog(vm, kind);
      }
    };
  }

  /** Every command, by name; the `satisfies` makes the compiler demand one handler per method. */
  private readonly handlers = {
    snapshot: () => this.snapshot(),
    start: (p: { vm: string }) => this.start(this.vmName(p)),
    stop: (p: { vm: string }) => this.stop(this.vmName(p)),
    restart: (p: { vm: string }) => this.restart(this.vmName(p)),
    build: (p: { vm: string }) => this.buildCommand(this.vmName(p)),
    cancelBuild: (p: { vm: string }) => this.cancelBuild(this.vmName(p)),
    apply: (p: { vm: string }) => this.apply(this.vmName(p)),
    rebuildStale: () => this.rebuildStale(),
    reevaluate: () => this.reevaluate(),
    sshCommand: (p: { vm: string }) => this.sshCommand(this.vmName(p)),
    ips: (p: { vm: string }) => this.ips(this.vmName(p)),
    logs: (p: ParamsOf<'logs'>) => this.logs(this.vmName(p), p.kind, p.lines),
    inspect: (p: { vm: string }) => this.inspect(this.vmName(p)),
    getSettings: () => this.settings.get(),
    setSettings: (p: Partial<Settings>) => this.settings.update(p),
  } satisfies { [M in AgentMethod]: (p: ParamsOf<M>) => ResultOf<M> | Promise<ResultOf<M>> };

  // ------------------------------------------------------------------ snapshot

  snapshot(): AgentSnapshot {
    const info: AgentInfo = {
      pid: process.pid,
      startedAt: this.startedAt,
      version: VERSION,
      nix: this.nix?.bin ?? null,
      vfkit: this.vfkit,
      problems: [...this.problems, ...(this.vfkitProblem ? [this.vfkitProblem] : []), ...this.settings.warnings],
      sshConfig: this.sshConfigInfo,
    };
    const owner = new Map<string, string>();
    const flakes: FlakeSnapshot[] = [...this.flakes.values()].map((f) => {
      const clashes: string[] = [];
      for (const name of [
        ...(f.result?.vms ?? []).map((v) => v.name),
        ...(f.result?.failures ?? []).map((x) => x.name),
      ]) {
        const first = owner.get(name);
        if (first === undefined) owner.set(name, f.dir);
        else clashes.push(`${name} is also defined by ${first}, which nixvm uses; rename one of them to run both.`);
      }
      return {
        dir: f.dir,
        evaluating: f.watcher?.evaluating ?? false,
        error: f.error,
        warnings: [...f.warnings, ...(f.result?.warnings ?? []), ...clashes],
        lastEvalAt: f.lastEvalAt,
      };
    });
    // One copy of the settings per snapshot, not one per VM.
    const settings = this.settings.get();
    const vms = this.entries().map((e) => this.vmSnapshot(e, settings));
    return { agent: info, flakes, vms, settings };
  }

  /** All VMs the flakes define (loaded or failed), plus VMs still running from a flake that lost them. */
  private entries(): VmEntry[] {
    const out = new Map<string, VmEntry>();
    const broken = [...this.flakes.values()].some((f) => f.error !== null);
    for (const f of this.flakes.values()) {
      for (const spec of f.result?.vms ?? []) {
        if (!out.has(spec.name)) out.set(spec.name, { name: spec.name, flake: f.dir, spec, error: null });
      }
      for (const fail of f.result?.failures ?? []) {
        if (!out.has(fail.name)) out.set(fail.name, { name: fail.name, flake: f.dir, spec: null, error: fail.error });
      }
    }
    for (const s of this.supervisor.list()) {
      if (!out.has(s.name) && s.state !== 'stopped') {
        out.set(s.name, {
          name: s.name,
          flake: '',
          spec: null,
          error: broken
            ? `${s.name} is running, but its flake does not evaluate right now (see the flake's error); it keeps running.`
            : `${s.name} is running but no configured flake defines it any more; stop it when you are done with it.`,
        });
      }
    }
    return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  private entry(name: string): VmEntry {
    const e = this.entries().find((x) => x.name === name);
    if (!e) {
      const known = this.entries().map((x) => x.name);
      throw new AgentError(
        'no-such-vm',
        `There is no VM named ${JSON.stringify(name)}${known.length ? ` (known: ${known.join(', ')})` : ' (no flake defines any VM yet)'}.`,
      );
    }
    return e;
  }

  private vmName(p: { vm?: unknown } | undefined): string {
    const vm = p?.vm;
    if (typeof vm !== 'string' || vm === '')
      throw new AgentError('bad-request', 'This command needs a VM name ("vm").');
    return vm;
  }

  private vmPaths(name: string): VmRuntimePaths {
    return runtimePaths(this.paths.stateDir, this.paths.logsDir, name);
  }

  private effectiveMac(e: VmEntry): string | null {
    if (!e.spec) return null;
    return e.spec.macAddress ?? generateMac(e.flake, e.name);
  }

  private specOf(name: string): VmSpec | null {
    for (const f of this.flakes.values()) {
      const spec = f.result?.vms.find((v) => v.name === name);
      if (spec) return spec;
    }
    return null;
  }

  /**
   * A failed build stops being news once the flake moved on: its drvPath changed, or (for a
   * failure to evaluate) the flake evaluated fine since.
   */
  private buildOutdated(name: string, info: BuildInfo, e: VmEntry): boolean {
    const failed = this.failedBuilds.get(name);
    if (info.status !== 'failed' || !failed || !e.spec) return false;
    if (failed.drvPath !== e.spec.drvPath) return true;
    const evalFailure = failed.kind !== 'build-failed' && failed.kind !== 'required-system';
    const lastEval = this.flakes.get(e.flake)?.lastEvalAt ?? 0;
    return evalFailure && lastEval > failed.at && this.flakes.get(e.flake)?.error === null;
  }

  private buildInfo(name: string, e?: VmEntry): BuildInfo {
    const info = this.builder?.state(name);
    if (info && e && this.buildOutdated(name, info, e))
      return { ...info, status: 'idle', error: null, detail: null, progress: null };
    return info ?? idleInfo(null);
  }

  private vmSnapshot(e: VmEntry, settings: Settings = this.settings.get()): VmSnapshot {
    const st: VmStatus = this.supervisor.status(e.name);
    const built = this.builtRecord(e.name);
    const live = st.state === 'running' || st.state === 'starting' || st.state === 'stopping';
    const mac = this.effectiveMac(e) ?? this.bootedMac(e.name);
    const ipv6 = mac ? this.linkLocal(mac) : null;
    const ipv4 = mac && live ? this.leaseFor(mac) : null;
    const stale = this.isStale(e, st, built);
    const ssh = this.sshFor(e, ipv4, ipv6, settings);
    const errors = [e.error, st.error].filter((x): x is string => Boolean(x));
    if (e.spec && !st.error) {
      const bad = validateSpec(e.spec);
      if (bad) errors.push(bad.message);
    }
    return {
      name: e.name,
      flake: e.flake,
      spec: e.spec,
      state: st.state,
      stale,
      drvPath: e.spec?.drvPath ?? null,
      builtDrvPath: built?.drvPath ?? null,
      builtOutPath: built?.outPath ?? null,
      bootedDrvPath: st.booted?.drvPath ?? null,
      bootedOutPath: st.booted?.outPath ?? null,
      cpus: e.spec?.cpus ?? null,
      memoryMiB: e.spec?.memoryMiB ?? null,
      mac,
      ipv6,
      ipv4,
      shares: e.spec?.shares ?? [],
      error: errors[0] ?? null,
      build: this.buildInfo(e.name, e),
      pid: st.pid,
      startedAt: st.startedAt,
      exit: st.exit,
      sshCommand: ssh ? sshCommandLine(ssh) : null,
      autostart: Boolean(settings.autostart[e.name]),
      consoleLog: this.vmPaths(e.name).consoleLog,
      stateDir: this.vmPaths(e.name).dir,
    };
  }

  /** Stale: the current drvPath differs from what runs (or was last built), or the run settings changed. */
  private isStale(e: VmEntry, st: VmStatus, built: BuiltRecord | null): boolean {
    if (!e.spec) return false;
    const loaded = e as VmEntry & { spec: VmSpec };
    if (st.booted) {
      if (st.booted.drvPath !== e.spec.drvPath) return true;
      const argv = this.bootedArgv(e.name);
      if (argv && st.booted.outPath) {
        try {
          const want = this.composeArgv(loaded, st.booted.outPath, argv[0] ?? 'vfkit');
          return want.join('\0') !== argv.join('\0');
        } catch {
          return true;
        }
      }
      return false;
    }
    return built ? built.drvPath !== e.spec.drvPath : false;
  }

  /** The argv a VM's current run was started with, from its boot record (read once per run). */
  private bootedArgv(name: string): string[] | null {
    const st = this.supervisor.status(name);
    const cached = this.bootArgv.get(name);
    if (cached && cached.startedAt === st.startedAt) return cached.argv;
    let argv: string[] | null = null;
    try {
      argv = (JSON.parse(fs.readFileSync(this.vmPaths(name).bootRecord, 'utf8')) as { argv?: string[] }).argv ?? null;
    } catch {
      argv = null;
    }
    this.bootArgv.set(name, { startedAt: st.startedAt, argv });
    return argv;
  }

  private bootedMac(name: string): string | null {
    const argv = this.bootedArgv(name);
    const net = argv?.find((a) => a.startsWith('virtio-net,'));
    const m = net?.match(/mac=([0-9a-fA-F:]+)/);
    return m?.[1] ?? null;
  }

  private sshFor(
    e: VmEntry,
    ipv4: string | null,
    ipv6: string | null,
    settings: Settings = this.settings.get(),
  ): string[] | null {
    if (!e.spec?.ssh.enabled) return null;
    const st = this.supervisor.status(e.name).state;
    // An address only answers while the VM runs.
    if (st !== 'running' && st !== 'starting') return null;
    const host = ipv4 ?? ipv6;
    if (!host) return null;
    const user = settings.sshUser[e.name] ?? e.spec.ssh.user;
    try {
      return sshArgv({ host, user, port: e.spec.ssh.port });
    } catch {
      return null;
    }
  }

  // ------------------------------------------------------------------ events

  /** Something changed: emit a snapshot soon, at most one per emitIntervalMs. */
  private changed(): void {
    if (this.closed || this.emitTimer) return;
    const interval = this.opts.emitIntervalMs ?? 100;
    const wait = Math.max(0, this.lastEmit + interval - Date.now());
    this.emitTimer = setTimeout(() => {
      this.emitTimer = null;
      this.lastEmit = Date.now();
      const snapshot = this.snapshot();
      this.broadcast({ type: 'snapshot', snapshot });
      this.sshWrite = this.writeSshConfig(snapshot);
      void this.redetectBridge(snapshot);
      this.scheduleLeaseRefresh(snapshot);
    }, wait);
  }

  private broadcast(ev: AgentEvent): void {
    for (const s of this.subscribers) {
      if (ev.type === 'log' && !s.logs.has(logKey(ev.vm, ev.kind))) continue;
      try {
        s.fn(ev);
      } catch (err) {
        this.log(`a subscriber failed: ${errorSentence(err)}`);
      }
    }
  }

  private notify(notice: Notice): void {
    this.log(`${notice.level}: ${notice.title}${notice.body ? ` — ${notice.body}` : ''}`);
    this.broadcast({ type: 'notice', notice });
  }

  private log(line: string): void {
    this.agentLog.write(line);
    if (this.opts.log) this.opts.log(line);
    else if (process.env.NIXVM_DEBUG) process.stderr.write(`[agent] ${line}\n`);
  }

  private makeBuilder(nix: Nix): BuildManager {
    const b = new BuildManager({ nix, logsDir: path.join(this.paths.logsDir, 'builds') });
    b.on('state', () => this.changed());
    b.on('progress', () => this.changed());
    b.on('log', (vm, line) => this.broadcast({ type: 'log', vm, kind: 'build', lines: [line] }));
    b.on('done', (vm, outcome) => {
      if (outcome instanceof BuildError) {
        this.failedBuilds.set(vm, { drvPath: this.specOf(vm)?.drvPath ?? null, kind: outcome.kind, at: Date.now() });
        if (outcome.kind !== 'cancelled') {
          this.notify({ level: 'error', title: `Build of ${vm} failed`, body: outcome.message, vm, log: 'build' });
        }
      } else {
        this.saveBuilt(vm, outcome);
        this.notify({ level: 'info', title: `${vm} built`, body: outcome.outPath, vm, log: 'build' });
      }
      this.changed();
    });
    return b;
  }

  /** nix was found again (or elsewhere) after a settings change: new builder, every flake re-evaluated. */
  private async useNix(nixPath: string | null): Promise<void> {
    this.problems.length = 0;
    try {
      this.nix = Nix.locate(nixPath);
    } catch (err) {
      this.nix = null;
      this.problems.push(errorSentence(err));
    }
    const oldBuilder = this.builder;
    this.builder = this.nix ? this.makeBuilder(this.nix) : null;
    this.gcRoots = this.nix ? new GcRoots(this.nix, this.gcRootsDir()) : null;
    await oldBuilder?.dispose();
    // Swap in fresh watchers first, so no snapshot ever shows the flakes gone.
    const old = [...this.flakes.values()];
    this.flakes.clear();
    for (const f of old) {
      this.addFlake(f.dir);
      // Keep listing the VMs we knew (with the new error, if any) rather than none at all.
      const fresh = this.flakes.get(f.dir);
      if (fresh && !fresh.result) fresh.result = f.result;
    }
    this.changed();
    await Promise.all(old.map((f) => f.watcher?.close()));
  }

  private wireSupervisor(): void {
    this.supervisor.on('change', () => this.changed());
    this.supervisor.on('log', (line: string) => this.log(line));
    this.supervisor.on(
      'exit',
      (vm: string, exit: { code: number | null; signal: string | null; lastLines: string[] }) => {
        if (this.supervisor.status(vm).state === 'crashed') {
          const how = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code ?? 'unknown'}`;
          this.notify({
            level: 'error',
            title: `${vm} crashed`,
            body: `${how}${exit.lastLines.length ? `: ${exit.lastLines.at(-1)}` : ''}`,
            vm,
            log: 'console',
          });
        }
        void this.rootClosures();
        this.changed();
      },
    );
  }

  // ------------------------------------------------------------------ logs

  private retainLog(vm: string, kind: LogKind): void {
    const key = logKey(vm, kind);
    const f = this.followers.get(key);
    if (f) {
      f.count++;
      return;
    }
    // Build lines arrive from the build manager; only the console needs a file follower.
    const follower =
      kind === 'console'
        ? follow(this.vmPaths(vm).consoleLog, (lines) => this.broadcast({ type: 'log', vm, kind, lines }))
        : null;
    this.followers.set(key, { count: 1, follower });
  }

  private releaseLog(vm: string, kind: LogKind): void {
    const key = logKey(vm, kind);
    const f = this.followers.get(key);
    if (!f) return;
    if (--f.count > 0) return;
    f.follower?.close();
    this.followers.delete(key);
  }

  private async logs(name: string, kind: LogKind, lines: number): Promise<{ path: string | null; lines: string[] }> {
    this.entry(name);
    if (kind !== 'console' && kind !== 'build')
      throw new AgentError('bad-request', 'Log kind must be "console" or "build".');
    const n = Number.isInteger(lines) && lines >= 0 ? Math.min(lines, 100_000) : 50;
    const file = kind === 'console' ? this.vmPaths(name).consoleLog : (this.builder?.logPathOf(name) ?? null);
    if (!file || !fs.existsSync(file)) return { path: file, lines: [] };
    return { path: file, lines: await tail(file, n) };
  }

  // ------------------------------------------------------------------ flakes

  private flakeDirs(): string[] {
    const dirs = [...this.settings.get().flakes, ...(this.opts.flakes ?? [])].map((d) => path.resolve(d));
    return [...new Set(dirs)];
  }

  private addFlake(dir: string): void {
    if (this.flakes.has(dir)) return;
    let resolveReady!: () => void;
    const state: FlakeState = {
      dir,
      watcher: null,
      result: null,
      error: null,
      warnings: [],
      lastEvalAt: null,
      ready: new Promise<void>((r) => (resolveReady = r)),
    };
    this.flakes.set(dir, state);
    const nix = this.nix;
    if (!nix) {
      const why = this.problems[0] ?? 'Nix was not found.';
      state.error = `${dir} cannot be evaluated: ${why.charAt(0).toLowerCase()}${why.slice(1)}`;
      resolveReady();
      return;
    }
    if (!fs.existsSync(dir)) {
      state.error = `The flake folder ${dir} does not exist; fix the path in Settings.`;
      resolveReady();
      return;
    }
    const watcher = new FlakeWatcher({
      flakeDir: dir,
      evaluate: (signal) => inventory(nix, dir, { signal }),
      ...(this.opts.debounceMs !== undefined ? { debounceMs: this.opts.debounceMs } : {}),
    });
    state.watcher = watcher;
    watcher.on('evaluating', () => this.changed());
    watcher.on('warning', (w) => {
      state.warnings = w;
      this.changed();
    });
    watcher.on('inventory', (u) => {
      state.result = u.result;
      state.error = null;
      state.lastEvalAt = Date.now();
      resolveReady();
      this.onInventory(u);
      this.changed();
    });
    watcher.on('failed', (err) => {
      // The VMs keep running and keep their last known spec: only the error is new.
      state.error =
        err instanceof FlakeError ? `${err.message}${err.detail ? `\n${err.detail}` : ''}` : errorSentence(err);
      this.log(`evaluating ${dir} failed: ${errorSentence(err)}`);
      state.lastEvalAt = Date.now();
      resolveReady();
      this.changed();
    });
    watcher.on('watchError', (err) => this.log(`watching ${dir}: ${errorSentence(err)}`));
    void watcher.start().catch((err) => {
      state.error = errorSentence(err);
      resolveReady();
      this.changed();
    });
  }

  private async removeFlake(dir: string): Promise<void> {
    const f = this.flakes.get(dir);
    if (!f) return;
    this.flakes.delete(dir);
    await f.watcher?.close();
  }

  private onInventory(u: InventoryUpdate): void {
    if (u.first) return;
    const mode = this.settings.get().autoRebuild;
    if (mode === 'off') return;
    const targets = u.result.vms.filter((v) => {
      if (!u.changed.includes(v.name) && !u.respecced.includes(v.name)) return false;
      const st = this.supervisor.status(v.name).state;
      // Rebuild what the user uses: running VMs and ones built before.
      return st === 'running' || st === 'starting' || this.builtRecord(v.name) !== null;
    });
    for (const v of targets) {
      const running = ['running', 'starting'].includes(this.supervisor.status(v.name).state);
      const job = mode === 'restart' && running ? this.apply(v.name) : this.buildCommand(v.name);
      job.catch((err) => this.log(`auto-rebuild of ${v.name}: ${errorSentence(err)}`));
    }
  }

  private async reevaluate(): Promise<FlakeSnapshot[]> {
    await Promise.all([...this.flakes.values()].map((f) => f.watcher?.refresh()));
    return this.snapshot().flakes;
  }

  /** Resolves once every flake has been evaluated at least once. */
  async ready(): Promise<void> {
    await Promise.all([...this.flakes.values()].map((f) => f.ready));
  }

  private onSettings(next: Settings, prev: Settings): void {
    this.supervisor.opts.stopTimeoutMs = next.stopTimeoutSec * 1000;
    if (next.nixPath !== prev.nixPath) void this.useNix(next.nixPath);
    if (next.vfkitPath !== prev.vfkitPath) {
      this.supervisor.opts.vfkit = next.vfkitPath ?? 'vfkit';
      void this.locateVfkit().then(() => this.changed());
    }
    if (next.bridgeInterface !== prev.bridgeInterface) {
      void this.detectBridge().then((b) => {
        this.bridgeName = b;
        this.changed();
      });
    }
    const want = new Set(this.flakeDirs());
    for (const dir of [...this.flakes.keys()])
      if (!want.has(dir)) void this.removeFlake(dir).then(() => this.changed());
    for (const dir of want) this.addFlake(dir);
    this.changed();
  }

  // ------------------------------------------------------------------ builds

  private builtPath(name: string): string {
    return path.join(this.vmPaths(name).dir, 'built.json');
  }

  private builtRecord(name: string): BuiltRecord | null {
    if (!this.built.has(name)) {
      let rec: BuiltRecord | null = null;
      try {
        rec = JSON.parse(fs.readFileSync(this.builtPath(name), 'utf8')) as BuiltRecord;
      } catch {
        rec = null;
      }
      this.built.set(name, rec);
    }
    return this.built.get(name) ?? null;
  }

  private saveBuilt(name: string, r: BuildResult): void {
    const rec: BuiltRecord = { drvPath: r.drvPath, outPath: r.outPath, at: r.finishedAt };
    this.built.set(name, rec);
    try {
      const file = this.builtPath(name);
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(rec));
      fs.renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.log(`could not record the build of ${name}: ${errorSentence(err)}`);
    }
  }

  private gcRootsDir(): string {
    return path.join(this.paths.stateDir, 'gcroots');
  }

  /**
   * Root `outPath` (just built) and drop the roots of closures no VM has built or booted any more,
   * so `nix-collect-garbage` never deletes a system under a running VM.
   */
  private async rootClosures(outPath?: string): Promise<void> {
    const roots = this.gcRoots;
    if (!roots) return;
    try {
      if (outPath) await roots.add(outPath);
      const keep = this.closuresInUse();
      const dropped = roots.prune(keep);
      if (dropped.length) this.log(`dropped GC roots no VM uses: ${dropped.join(', ')}`);
    } catch (err) {
      this.log(`could not update GC roots: ${errorSentence(err)}`);
    }
  }

  /** Every closure some VM was last built to or currently boots. */
  private closuresInUse(): Set<string> {
    const keep = new Set<string>();
    for (const name of new Set([...this.entries().map((e) => e.name), ...this.supervisor.list().map((v) => v.name)])) {
      const built = this.builtRecord(name);
      if (built) keep.add(built.outPath);
      const booted = this.supervisor.status(name).booted;
      if (booted) keep.add(booted.outPath);
    }
    return keep;
  }

  /** At start-up: root what earlier runs built or booted but left unrooted (state from before roots). */
  private async ensureRoots(): Promise<void> {
    await this.ready();
    const roots = this.gcRoots;
    if (!roots) return;
    for (const out of this.closuresInUse()) {
      if (this.closed) return;
      if (fs.existsSync(out) && !fs.existsSync(roots.linkFor(out))) {
        await roots.add(out).catch((err) => this.log(`could not root ${out}: ${errorSentence(err)}`));
      }
    }
    await this.rootClosures();
  }

  /** The closure to boot: the last build when it matches the current drvPath and still exists, else a build. */
  private async ensureClosure(e: VmEntry & { spec: VmSpec }, force = false): Promise<BuiltRecord> {
    const built = this.builtRecord(e.name);
    if (!force && built && built.drvPath === e.spec.drvPath && fs.existsSync(built.outPath)) return built;
    const b = this.builder;
    if (!b) {
      const why = this.problems[0] ?? 'Nix was not found.';
      throw new AgentError('failed', `${e.name} cannot be built: ${why.charAt(0).toLowerCase()}${why.slice(1)}`);
    }
    try {
      const r = await b.build({ vm: e.name, flake: e.flake, drvPath: e.spec.drvPath });
      this.saveBuilt(e.name, r);
      await this.rootClosures(r.outPath);
      return this.builtRecord(e.name)!;
    } catch (err) {
      if (err instanceof BuildError) throw new AgentError('failed', err.message);
      throw err;
    }
  }

  private loaded(name: string): VmEntry & { spec: VmSpec } {
    const e = this.entry(name);
    if (!e.spec) throw new AgentError('failed', e.error ?? `${name} could not be evaluated.`);
    return e as VmEntry & { spec: VmSpec };
  }

  private async buildCommand(name: string): Promise<VmSnapshot> {
    const e = this.loaded(name);
    await this.ensureClosure(e, true);
    return this.vmSnapshot(this.entry(name));
  }

  private async cancelBuild(name: string): Promise<VmSnapshot> {
    const e = this.entry(name);
    this.builder?.cancel(name);
    return this.vmSnapshot(e);
  }

  private async rebuildStale(): Promise<string[]> {
    const stale = this.snapshot().vms.filter((v) => v.stale && v.spec);
    const names = stale.map((v) => v.name);
    await Promise.allSettled(names.map((n) => this.apply(n)));
    return names;
  }

  // ------------------------------------------------------------------ running

  private async locateVfkit(): Promise<void> {
    const s = this.settings.get();
    this.vfkit = null;
    this.vfkitProblem = null;
    try {
      const bin = locateVfkit(s.vfkitPath);
      const v = await checkVfkitVersion(bin, { env: this.opts.vmEnv ?? {} });
      this.vfkit = { path: bin, version: v.version ?? 'unknown' };
      this.supervisor.opts.vfkit = bin;
    } catch (err) {
      this.vfkitProblem = errorSentence(err);
    }
  }

  private composeArgv(e: VmEntry & { spec: VmSpec }, closure: string, vfkit: string): string[] {
    const mac = this.effectiveMac(e)!;
    return vfkitArgv({ vfkit, spec: e.spec, closure, mac, paths: this.vmPaths(e.name) });
  }

  /** A VfkitConfigError (or anything else) as the one-sentence command failure faces show. */
  private configError(err: unknown): never {
    if (err instanceof AgentError) throw err;
    throw new AgentError('failed', errorSentence(err));
  }

  private start(name: string): Promise<VmSnapshot> {
    const pending = this.starting.get(name);
    if (pending) return pending;
    const p = this.doStart(name).finally(() => this.starting.delete(name));
    this.starting.set(name, p);
    return p;
  }

  private async doStart(name: string, opts: { restart?: boolean; forceBuild?: boolean } = {}): Promise<VmSnapshot> {
    const e = this.loaded(name);
    const st = this.supervisor.status(name).state;
    if (!opts.restart && (st === 'running' || st === 'starting')) return this.vmSnapshot(e);
    const bad = validateSpec(e.spec);
    if (bad) throw new AgentError('failed', bad.message);
    for (const share of e.spec.shares) {
      if (!fs.existsSync(share.source)) {
        throw new AgentError(
          'failed',
          `${name}'s shared directory "${share.tag}" (${share.source}) does not exist; create it or change virtualisation.sharedDirectories.`,
        );
      }
    }
    if (!this.vfkit) await this.locateVfkit();
    if (!this.vfkit) throw new AgentError('failed', this.vfkitProblem ?? 'vfkit was not found.');
    const closure = await this.ensureClosure(e, opts.forceBuild ?? false);
    // The argv comes from the same evaluation as the closure; a flake edited meanwhile shows as stale.
    let argv: string[];
    try {
      argv = this.composeArgv(e, closure.outPath, this.vfkit.path);
    } catch (err) {
      this.configError(err);
    }
    const paths = this.vmPaths(name);
    prepareRuntimeDirs(paths);
    const vm = { name, argv, paths, drvPath: closure.drvPath, outPath: closure.outPath };
    this.log(`${opts.restart ? 'restarting' : 'starting'} ${name} on ${closure.outPath}`);
    try {
      if (opts.restart) await this.supervisor.restart(vm);
      else await this.supervisor.start(vm);
    } catch (err) {
      throw new AgentError('failed', errorSentence(err));
    }
    this.changed();
    return this.vmSnapshot(this.entry(name));
  }

  private async stop(name: string): Promise<VmSnapshot> {
    const e = this.entry(name);
    this.log(`stopping ${name}`);
    try {
      await this.supervisor.stop(name);
    } catch (err) {
      throw new AgentError('failed', errorSentence(err));
    }
    return this.vmSnapshot(e);
  }

  private async restart(name: string): Promise<VmSnapshot> {
    const st = this.supervisor.status(name).state;
    if (st !== 'running' && st !== 'starting') return this.start(name);
    return this.doStart(name, { restart: true });
  }

  /** Rebuild, then restart when it runs on an older closure (or other settings). */
  private async apply(name: string): Promise<VmSnapshot> {
    const e = this.loaded(name);
    await this.ensureClosure(e);
    const st = this.supervisor.status(name);
    if ((st.state === 'running' || st.state === 'starting') && this.isStale(e, st, this.builtRecord(name))) {
      return this.doStart(name, { restart: true });
    }
    return this.vmSnapshot(this.entry(name));
  }

  private async autostart(): Promise<void> {
    await this.ready();
    const auto = this.settings.get().autostart;
    for (const e of this.entries()) {
      if (!auto[e.name] || !e.spec) continue;
      const st = this.supervisor.status(e.name).state;
      if (st !== 'stopped' && st !== 'crashed') continue;
      this.start(e.name).catch((err) => {
        this.notify({ level: 'error', title: `Could not autostart ${e.name}`, body: errorSentence(err), vm: e.name });
      });
    }
  }

  // ------------------------------------------------------------------ reach

  private async detectBridge(): Promise<string> {
    const s = this.settings.get();
    if (s.bridgeInterface) return s.bridgeInterface;
    try {
      return (await this.bridge.bridgeFor({})).name;
    } catch {
      return DEFAULT_BRIDGE;
    }
  }

  /**
   * vmnet creates its bridge when the first VM starts (bridge100, or bridge101… when that name is
   * taken): once a VM has a lease, ask ifconfig which bridge holds its subnet.
   */
  private async redetectBridge(snapshot: AgentSnapshot): Promise<void> {
    if (snapshot.settings.bridgeInterface) return;
    const ipv4 = snapshot.vms.find((v) => v.state === 'running' && v.ipv4)?.ipv4 ?? null;
    if (!ipv4 || ipv4 === this.bridgeProbe) return;
    this.bridgeProbe = ipv4;
    try {
      const name = (await this.bridge.bridgeFor({ ipv4 })).name;
      if (name !== this.bridgeName) {
        this.bridgeName = name;
        this.changed();
      }
    } catch {
      // Keep the bridge we have.
    }
  }

  private leaseFor(mac: string): string | null {
    try {
      return findLeaseForMac(this.leases.list, mac)?.ipAddress ?? null;
    } catch {
      return null; // a malformed configured MAC: validateSpec reports it
    }
  }

  private linkLocal(mac: string): string | null {
    try {
      return linkLocalFromMac(mac, this.bridgeName);
    } catch {
      return null; // a malformed configured MAC: validateSpec reports it
    }
  }

  /** Re-read the leases file when it changed (a stat is the whole cost otherwise). */
  private async refreshLeases(): Promise<boolean> {
    let mtimeMs = 0;
    try {
      mtimeMs = fs.statSync(this.paths.leasesFile).mtimeMs;
    } catch {
      mtimeMs = 0;
    }
    if (mtimeMs === this.leases.mtimeMs) return false;
    const list = mtimeMs ? await readLeases(this.paths.leasesFile).catch(() => []) : [];
    this.leases = { mtimeMs, list };
    return true;
  }

  /**
   * While some running VM has no IPv4 yet, look at the leases file every second or so (bootpd
   * writes it shortly after boot); once every running VM has one, stop looking.
   */
  private scheduleLeaseRefresh(snapshot?: AgentSnapshot): void {
    if (this.closed || this.leaseTimer) return;
    const vms = snapshot?.vms ?? [];
    const waiting = snapshot ? vms.some((v) => v.state === 'running' && !v.ipv4) : true;
    if (!waiting) {
      this.leaseWaitSince = null;
      return;
    }
    this.leaseWaitSince ??= Date.now();
    // Every second while a VM boots; a guest that never asks for a lease gets a look every 10 s.
    const delay = Date.now() - this.leaseWaitSince < 120_000 ? 1000 : 10_000;
    this.leaseTimer = setTimeout(() => {
      this.leaseTimer = null;
      void this.refreshLeases().then((changed) => {
        if (changed) this.changed();
        else this.scheduleLeaseRefresh(this.snapshot());
      });
    }, delay);
    this.leaseTimer.unref();
  }

  private async ips(name: string): Promise<{ ipv6: string | null; ipv4: string | null }> {
    await this.refreshLeases();
    const v = this.vmSnapshot(this.entry(name));
    return { ipv6: v.ipv6, ipv4: v.ipv4 };
  }

  private async sshCommand(name: string): Promise<{ argv: string[]; command: string }> {
    await this.refreshLeases();
    const e = this.entry(name);
    if (!e.spec) throw new AgentError('failed', e.error ?? `${name} could not be evaluated.`);
    if (!e.spec.ssh.enabled) {
      throw new AgentError(
        'failed',
        `${name} does not run an ssh server; set services.openssh.enable = true in its configuration and apply it.`,
      );
    }
    const st = this.supervisor.status(name).state;
    if (st !== 'running' && st !== 'starting')
      throw new AgentError('failed', `${name} is not running; start it first.`);
    const v = this.vmSnapshot(e);
    const argv = this.sshFor(e, v.ipv4, v.ipv6);
    if (!argv) throw new AgentError('failed', `${name} has no address yet; wait for it to finish booting.`);
    return { argv, command: sshCommandLine(argv) };
  }

  /** Only reads ~/.ssh/config (a read-only or unreadable one is fine): is our file included? */
  private async checkSshInclude(): Promise<void> {
    try {
      this.sshConfigInfo.status = await sshConfigIncludes(userSshConfigPath(), this.sshConfigInfo.path);
    } catch {
      this.sshConfigInfo.status = 'unreadable';
    }
  }

  /** One `Host nixvm-<name>` per VM, in our own file; users Include it (we never edit ~/.ssh/config). */
  private async writeSshConfig(snapshot: AgentSnapshot): Promise<void> {
    const entries: SshConfigEntry[] = [];
    for (const v of snapshot.vms) {
      const host = v.ipv4 ?? v.ipv6;
      if (!v.spec?.ssh.enabled || !host) continue;
      entries.push({
        vm: v.name,
        host,
        user: snapshot.settings.sshUser[v.name] ?? v.spec.ssh.user,
        port: v.spec.ssh.port,
      });
    }
    const key = JSON.stringify(entries);
    if (key === this.lastSshConfig) return;
    this.lastSshConfig = key;
    try {
      await writeSshConfig(this.sshConfigInfo.path, entries);
      await this.checkSshInclude();
    } catch (err) {
      this.log(`could not write the ssh config: ${errorSentence(err)}`);
    }
  }

  private inspect(name: string): { spec: VmSpec | null; argv: string[] } {
    const e = this.entry(name);
    if (!e.spec) throw new AgentError('failed', e.error ?? `${name} could not be evaluated.`);
    const booted = this.supervisor.status(name).booted;
    const built = this.builtRecord(name);
    // The closure it would boot: the built one when current, else the path the .drv declares.
    const closure =
      built && built.drvPath === e.spec.drvPath
        ? built.outPath
        : booted?.drvPath === e.spec.drvPath
          ? booted.outPath
          : drvOutPath(e.spec.drvPath);
    const vfkit = this.vfkit?.path ?? this.settings.get().vfkitPath ?? 'vfkit';
    try {
      return {
        spec: e.spec,
        argv: this.composeArgv(
          e as VmEntry & { spec: VmSpec },
          closure ?? `/nix/store/${path.basename(e.spec.drvPath, '.drv')}`,
          vfkit,
        ),
      };
    } catch (err) {
      this.configError(err);
    }
  }

  // ------------------------------------------------------------------ shutdown

  /** Stop watching and serving. VMs keep running unless stopVms (default: the onQuit setting). */
  async close(opts: { stopVms?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    const stopVms = opts.stopVms ?? this.settings.get().onQuit === 'stop';
    if (stopVms) {
      const running = this.supervisor.list().filter((s) => s.state !== 'stopped' && s.state !== 'crashed');
      await Promise.allSettled(running.map((s) => this.supervisor.stop(s.name)));
    }
    this.closed = true;
    if (this.emitTimer) clearTimeout(this.emitTimer);
    await this.sshWrite;
    if (this.leaseTimer) clearTimeout(this.leaseTimer);
    this.settingsOff?.();
    for (const f of this.followers.values()) f.follower?.close();
    this.followers.clear();
    await this.control?.close();
    await Promise.all([...this.flakes.values()].map((f) => f.watcher?.close()));
    await this.builder?.dispose();
    this.supervisor.close();
    this.settings.close();
    this.subscribers.clear();
    this.log('agent stopped');
    this.agentLog.close();
    this.lock?.release();
  }
}

export type { AgentMethods };
