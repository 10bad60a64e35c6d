/**
 * The Agent: the one façade every face talks to. It wires the owners of each noun together and
 * runs the orchestrations that span them; everything else lives with its owner:
 *
 *   FlakeSet      the flakes and the only copy of the inventory
 *   ClosureStore  what was built, failed builds, builds, GC roots
 *   Supervisor    what runs (state machine, adoption, exits)
 *   Launcher      vfkit, argv, preflight checks, starting
 *   Reach         addresses, ssh, nixvm's ssh config file
 *   EventHub      subscribers, snapshot throttling, live logs
 *   VmList        the VMs by name, each one's snapshot (vm-view.ts), the read-only queries
 *   StoreImages   the erofs store images of closures (useNixStoreImage), made just before boot
 *   VmDiskList    each VM's disks in view, `disk ls`, `disk reset`, `disk grow`
 *   Applier       switching a running VM in place (`apply`), and what each VM's last apply did
 *
 * Data flows one way: nix/vfkit → owners → snapshot → faces; commands the other way. The faces
 * (the daemon, the app) serve it on the control socket; the engine knows no face.
 */
import fs from 'node:fs';
import os from 'node:os';
import { AgentError, errorMessage } from '../api/errors.ts';
import { ownValue } from '../api/records.ts';
import { stampedLine } from '../api/log-lines.ts';
import type {
  AgentEvent,
  AgentInfo,
  DoctorReport,
  AgentMethod,
  AgentPort,
  AgentSnapshot,
  ConsoleAttachment,
  ConsoleAttachOptions,
  ConsoleEvent,
  FlakeSnapshot,
  ParamsOf,
  ResultOf,
  Settings,
  SubscribeOptions,
  VmSnapshot,
} from '../api/types.ts';
import { agentMethod, validateParams, vmName } from '../api/validate.ts';
import { AgentLog } from '../host/agent-log.ts';
import { acquireInstanceLock, type InstanceLock } from '../host/lock.ts';
import { resolvePaths, type Paths } from '../host/paths.ts';
import type { HostLimits } from '../host/resources.ts';
import { shellWord } from '../host/shell.ts';
import { Builders } from './builders/builders.ts';
import type { HostMachine } from './builders/capability.ts';
import { ClosureStore, type BuiltRecord } from './closure-store.ts';
import { EventHub } from './event-hub.ts';
import { UsageSampler, type VfkitProcess } from './usage.ts';
import { vmProcessUsage } from '../host/process-usage.ts';
import { FlakeSet, resolveDirs, type FlakeSpec } from './flake-set.ts';
import { Reach } from './net/reach.ts';
import { Nix } from './nix/nix.ts';
import type { InventoryUpdate } from './nix/watcher.ts';
import { SettingsStore } from './settings.ts';
import { StoreImages } from './store-image.ts';
import { VmDiskList } from './vm-disks.ts';
import { VmList, type Loaded } from './vm-list.ts';
import { Applier } from './vm-apply.ts';
import { run as runProgram } from '../host/runner.ts';
import { isLive } from './vm-view.ts';
import { Launcher } from './vm/launcher.ts';
import { attachWhenOpen } from './vm/console-relay.ts';
import { Supervisor } from './vm/supervisor.ts';

const VERSION = '0.1.0';

function startCancelled(name: string): AgentError {
  return new AgentError(
    'failed',
    `The start of VM ${JSON.stringify(name)} was cancelled: it was stopped before it finished starting (its build is kept).`,
  );
}

export interface AgentOptions {
  /** How ssh's ProxyCommand runs nixvm (`nixvm proxy`); default `nixvm` on PATH. */
  nixvmCommand?: string[];
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
  /** Minimum time between two snapshot events (default 100 ms: ≤ 10 updates a second). */
  emitIntervalMs?: number;
  /** How often the VMs' CPU and memory are sampled while a face asks (default 2 s). */
  usageIntervalMs?: number;
  /** Flake watcher debounce (default 300 ms). */
  debounceMs?: number;
  /** Supervisor timeouts after REST HardStop and SIGTERM (tests shorten them). */
  hardStopTimeoutMs?: number;
  termTimeoutMs?: number;
  /** Called with lines worth the agent's log (defaults to stderr when NIXVM_DEBUG is set). */
  log?: (line: string) => void;
  /** CPUs and memory a VM may ask for (default: this Mac's, host/resources.ts). */
  hostLimits?: HostLimits;
  /** The machine VMs run on (default this one): which guest systems Virtualization.framework boots. */
  hostMachine?: HostMachine;
  /** /etc/nix/nix.conf (tests point it elsewhere). */
  systemNixConf?: string;
}

export class Agent implements AgentPort {
  readonly paths: Paths;
  readonly settings: SettingsStore;
  readonly startedAt = Date.now();
  private readonly opts: AgentOptions;
  private readonly agentLog: AgentLog;
  private readonly supervisor: Supervisor;
  private readonly launcher: Launcher;
  private readonly flakes: FlakeSet;
  private readonly closures: ClosureStore;
  private readonly reach: Reach;
  private readonly hub: EventHub;
  private readonly vms: VmList;
  private readonly images: StoreImages;
  private readonly disks: VmDiskList;
  private readonly applier: Applier;
  private readonly usage: UsageSampler;
  private readonly builders: Builders;
  /** The first look at nix's configuration and builders (ready() waits for it). */
  private buildersRead: Promise<void> = Promise.resolve();
  private readonly starting = new Map<string, Promise<VmSnapshot>>();
  /** Starts (and restarts) under way, by VM: a stop cancels them before they launch anything. */
  private readonly boots = new Map<string, Set<{ cancelled: boolean }>>();
  private nix: Nix | null = null;
  /** Why nix could not be found, when it could not. */
  private nixProblem: string | null = null;
  private lock: InstanceLock | null = null;
  private closed = false;
  /** Problems the faces met serving this agent (where its control socket had to go…). */
  private readonly faceProblems = new Set<string>();
  private settingsOff: (() => void) | null = null;

  private constructor(opts: AgentOptions, paths: Paths, settings: SettingsStore) {
    this.opts = opts;
    this.paths = paths;
    this.settings = settings;
    this.agentLog = new AgentLog(paths.logsDir);
    this.agentLog.write(`nixvm agent ${VERSION} starting (pid ${process.pid})`);
    const log = (line: string) => this.log(line);
    const s = settings.get();
    this.supervisor = new Supervisor({
      stateDir: paths.stateDir,
      logsDir: paths.logsDir,
      stopTimeoutMs: s.stopTimeoutSec * 1000,
      ...(opts.hardStopTimeoutMs !== undefined ? { hardStopTimeoutMs: opts.hardStopTimeoutMs } : {}),
      ...(opts.termTimeoutMs !== undefined ? { termTimeoutMs: opts.termTimeoutMs } : {}),
      env: opts.vmEnv ?? {},
    });
    this.launcher = new Launcher({
      supervisor: this.supervisor,
      stateDir: paths.stateDir,
      logsDir: paths.logsDir,
      vmEnv: opts.vmEnv ?? {},
      env: opts.env ?? process.env,
      sharedDirSetting: (name) => {
        const m = this.settings.get().sharedDir;
        return Object.hasOwn(m, name) ? (m[name] ?? null) : null;
      },
      sshUserSetting: (name) => ownValue(this.settings.get().sshUser, name) ?? null,
      keyCredentialSetting: (name) => ownValue(this.settings.get().sshKeyCredential, name) ?? null,
      log,
      names: () => [...this.flakes.defined().keys(), ...this.supervisor.list().map((v) => v.name)],
      ...(opts.hostLimits ? { limits: opts.hostLimits } : {}),
    });
    this.flakes = new FlakeSet({ ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}), log });
    this.closures = new ClosureStore({
      stateDir: paths.stateDir,
      logsDir: paths.logsDir,
      vmDir: (name) => this.launcher.paths(name).dir,
      dirName: (name) => this.launcher.dirName(name),
      inUse: () => this.vms.closuresInUse(),
      log,
      buildArgs: () => this.builders.buildArgs(),
      describeRemote: (uri) => this.builders.describe(uri),
    });
    this.reach = new Reach({
      leasesFile: paths.leasesFile,
      stateDir: paths.stateDir,
      changed: () => this.changed(),
      log,
    });
    this.images = new StoreImages({ stateDir: paths.stateDir, inUse: () => this.vms.closuresInUse(), log });
    this.disks = new VmDiskList({
      flakes: this.flakes,
      supervisor: this.supervisor,
      launcher: this.launcher,
      closures: this.closures,
      images: this.images,
      stateDir: paths.stateDir,
      booting: (name) => this.boots.has(name),
      log,
    });
    this.vms = new VmList({
      flakes: this.flakes,
      supervisor: this.supervisor,
      launcher: this.launcher,
      closures: this.closures,
      reach: this.reach,
      settings: () => this.settings.get(),
      disks: this.disks,
      images: this.images,
      ...(opts.nixvmCommand ? { nixvm: opts.nixvmCommand } : {}),
      applied: (name) => this.applier.outcome(name),
      usage: (name) => this.usage.usage(name),
      platform: (spec, rootKey) => this.builders.platform(spec, rootKey),
    });
    this.usage = new UsageSampler({
      vfkits: () => {
        const out = new Map<string, VfkitProcess>();
        for (const s of this.supervisor.list())
          if (s.state === 'running' && s.pid !== null) out.set(s.name, { pid: s.pid, startedAt: s.startedAt });
        return out;
      },
      sample: (vfkits) => vmProcessUsage(vfkits),
      changed: () => this.changed(),
      intervalMs: opts.usageIntervalMs ?? 2000,
      log,
    });
    const me = os.userInfo();
    this.builders = new Builders({
      stateDir: paths.stateDir,
      home: (opts.env ?? process.env).HOME || os.homedir(),
      run: runProgram,
      nix: () => this.nix?.bin ?? null,
      user: me.username,
      uid: me.uid,
      host: opts.hostMachine ?? { platform: process.platform, arch: process.arch },
      settings: () => this.settings.get(),
      log,
      changed: () => this.changed(),
      vm: (name) => {
        const e = this.flakes.defined().get(name);
        if (!e?.spec) return null;
        const t = e as Loaded;
        const v = this.vms.view(t);
        const d = this.vms.sshDestination(t, v.ipv4, v.ipv6);
        return { spec: t.spec, rootKey: this.launcher.rootKey(t), ipv4: v.ipv4, identityFile: d.identityFile };
      },
      start: (name) => this.start(name),
      setBuilderVm: async (name) => {
        await this.settings.update({ builderVm: name });
      },
      addFlake: async (dir, name) => {
        const s = this.settings.get();
        if (!resolveDirs(s.flakes).includes(dir)) await this.settings.update({ flakes: [...s.flakes, dir] });
        await this.flakes.ready();
        const e = this.flakes.defined().get(name);
        return {
          flake: e?.flake ?? null,
          error: e?.error ?? this.flakes.snapshots().find((f) => f.dir === dir)?.error ?? null,
        };
      },
      flakeOf: (name) => this.flakes.defined().get(name)?.flake ?? null,
      ...(opts.systemNixConf ? { systemConf: opts.systemNixConf } : {}),
    });
    this.hub = new EventHub({
      emitIntervalMs: opts.emitIntervalMs ?? 100,
      snapshot: () => this.snapshot(),
      afterEmit: (snap) => {
        this.reach.afterSnapshot(snap, this.vms.sshConfigEntries(snap));
        this.builders.afterSnapshot(snap);
      },
      consoleLogPath: (vm) => this.launcher.paths(vm).consoleLog,
      // Only the logs of VMs that exist: each followed log costs a file watcher and a buffer.
      knows: (vm) => this.vms.entries().some((e) => e.name === vm),
      usageWanted: (on) => this.usage.want(on),
      log,
    });
    this.applier = new Applier({
      vms: this.vms,
      launcher: this.launcher,
      supervisor: this.supervisor,
      hub: this.hub,
      nix: () => this.nix,
      changed: () => this.changed(),
      log,
    });
    this.locateNix(s.nixPath);
  }

  /** Create and start an agent: lock, settings, adoption, flakes, autostart. */
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
    this.wire();
    const s = this.settings.get();
    await this.closures.useNix(this.nix);
    await this.flakes.setNix(this.nix, this.nixProblem);
    await this.launcher.locate(s.vfkitPath);
    const adopted = await this.supervisor.adoptAll();
    if (adopted.length) this.log(`adopted running VMs: ${adopted.map((v) => JSON.stringify(v)).join(', ')}`);
    await this.reach.init(s.bridgeInterface);
    this.builders.reset();
    this.buildersRead = this.builders
      .refresh()
      .catch((err) => this.log(`reading nix's builders: ${errorMessage(err)}`));
    this.flakes.sync(this.flakeDirs());
    this.changed();
    if (this.opts.autostart !== false) void this.autostart();
    void this.ready()
      .then(() => this.closures.ensureRoots(() => !this.closed))
      .then(() => {
        if (!this.closed) this.images.prune();
      });
  }

  private wire(): void {
    this.settingsOff = this.settings.onChange((next, prev) => this.onSettings(next, prev));
    this.settings.onWarning((w) => {
      this.log(w);
      this.changed();
    });
    this.flakes.on('changed', () => this.changed());
    this.flakes.on('inventory', (u) => this.autoRebuild(u));
    this.closures.on('changed', () => this.changed());
    this.images.on('changed', () => this.changed());
    // The same stamped line the build log file has, so a window's tail and live lines match.
    this.closures.on('log', (vm, line, at) =>
      this.hub.broadcast({ type: 'log', vm, kind: 'build', lines: [stampedLine(at, line)] }),
    );
    this.closures.on('built', (vm, r) =>
      this.hub.notify({ level: 'info', title: `${JSON.stringify(vm)} built`, body: r.outPath, vm, log: 'build' }),
    );
    this.closures.on('failed', (vm, err) => {
      if (err.kind === 'cancelled') return;
      this.hub.notify({
        level: 'error',
        title: `Build of ${JSON.stringify(vm)} failed`,
        body: err.message,
        vm,
        log: 'build',
      });
    });
    this.supervisor.on('change', () => this.changed());
    this.supervisor.on('log', (line) => this.log(line));
    this.supervisor.on('exit', (vm, exit) => {
      if (this.supervisor.status(vm).state === 'crashed') {
        const how = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code ?? 'unknown'}`;
        this.hub.notify({
          level: 'error',
          title: `${JSON.stringify(vm)} crashed`,
          body: `${how}${exit.lastLines.length ? `: ${exit.lastLines.at(-1)}` : ''}`,
          vm,
          log: 'console',
        });
      }
      void this.closures.root().then(() => this.images.prune());
      this.changed();
    });
  }

  // ------------------------------------------------------------------ AgentPort

  async call<M extends AgentMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    const m = agentMethod(method) as M;
    const handler = this.handlers[m] as (p: ParamsOf<M>) => Promise<ResultOf<M>> | ResultOf<M>;
    return await handler(validateParams(m, params));
  }

  subscribe(fn: (ev: AgentEvent) => void, opts: SubscribeOptions = {}): () => void {
    return this.hub.subscribe(fn, opts);
  }

  async attachConsole(
    vm: string,
    opts: ConsoleAttachOptions,
    fn: (ev: ConsoleEvent) => void,
  ): Promise<ConsoleAttachment> {
    const name = vmName(vm, 'attachConsole');
    const attached = await attachWhenOpen(this.supervisor, name, fn, opts.input === true);
    if (attached) return attached;
    this.vms.entry(name); // no-such-vm, naming the known ones
    throw new AgentError(
      'failed',
      `VM ${JSON.stringify(name)} is not running, so it has no console; start it with \`nixvm start ${shellWord(name)}\` or attach with \`nixvm console --start ${shellWord(name)}\`.`,
    );
  }

  /** Every command, by name; the `satisfies` makes the compiler demand one handler per method. */
  private readonly handlers = {
    snapshot: () => this.snapshot(),
    start: (p: { vm: string }) => this.start(p.vm),
    stop: (p: { vm: string }) => this.stop(p.vm),
    restart: (p: { vm: string }) => this.restart(p.vm),
    build: (p: { vm: string }) => this.build(p.vm),
    cancelBuild: (p: { vm: string }) => this.cancelBuild(p.vm),
    apply: (p: { vm: string }) => this.apply(p.vm),
    rebuildStale: () => this.rebuildStale(),
    reevaluate: () => this.reevaluate(),
    sshCommand: (p: { vm: string }) => this.vms.sshCommand(p.vm),
    ips: (p: { vm: string }) => this.vms.ips(p.vm),
    logs: (p: ParamsOf<'logs'>) => this.vms.logs(p.vm, p.kind, p.lines),
    inspect: (p: { vm: string }) => this.vms.inspect(p.vm),
    getSettings: () => this.settings.get(),
    setSettings: (p: Partial<Settings>) => this.settings.update(p),
    disks: () => this.disks.list(),
    diskReset: (p: { vm: string }) => this.diskReset(p.vm),
    diskGrow: (p: { vm: string }) => this.diskCommand(p.vm, (spec) => this.disks.grow(p.vm, spec)),
    doctor: () => this.doctor(),
    builders: async () => {
      await this.builders.refresh();
      return this.builders.info();
    },
    builderUse: async (p: ParamsOf<'builderUse'>) => ({
      ...(await this.builders.use(p.vm, p.consent === true)),
      builders: this.builders.info(),
    }),
    builderOff: async (p: ParamsOf<'builderOff'>) => ({
      ...(await this.builders.off(p.consent === true)),
      builders: this.builders.info(),
    }),
    builderSetup: async (p: ParamsOf<'builderSetup'>) => ({
      ...(await this.builders.setup(p.nixpkgs, p.consent === true)),
      builders: this.builders.info(),
    }),
  } satisfies { [M in AgentMethod]: (p: ParamsOf<M>) => ResultOf<M> | Promise<ResultOf<M>> };

  /**
   * `nixvm doctor`'s checks, with what this agent knows: its settings, its VMs' systems, its ssh
   * config. Loaded when first asked: the checks (and the plist reader of the login-item check)
   * are no part of the agent at rest.
   */
  private async doctor(): Promise<DoctorReport> {
    const { doctorHere } = await import('./doctor.ts');
    const s = this.settings.get();
    const specs = [...this.flakes.defined().values()].flatMap((e) => (e.spec ? [e.spec] : []));
    return doctorHere({
      nixPath: s.nixPath,
      vfkitPath: s.vfkitPath,
      stateDir: this.paths.stateDir,
      systems: [
        ...new Set(
          specs.flatMap((v) => {
            const sys = v.buildSystem ?? v.system;
            return sys ? [sys] : [];
          }),
        ),
      ].sort(),
      rosettaVms: specs.filter((v) => v.rosetta).map((v) => v.name),
      sshConfig: async () => this.reach.sshConfig,
      builders: async () => {
        await this.builders.refresh();
        return this.builders.info();
      },
    });
  }

  // ------------------------------------------------------------------ snapshot

  snapshot(): AgentSnapshot {
    const info: AgentInfo = {
      pid: process.pid,
      startedAt: this.startedAt,
      version: VERSION,
      nix: this.nix?.bin ?? null,
      vfkit: this.launcher.vfkit,
      problems: [
        ...(this.nixProblem ? [this.nixProblem] : []),
        ...(this.launcher.problem ? [this.launcher.problem] : []),
        ...this.settings.warnings,
        ...this.faceProblems,
        ...this.launcher.socketNotes,
        ...this.supervisor.problems,
        ...this.reach.problems,
      ],
      sshConfig: this.reach.sshConfig,
      builders: this.builders.info(),
    };
    // One copy of the settings per snapshot, not one per VM.
    const settings = this.settings.get();
    const vms = this.vms.snapshots(settings);
    return { agent: info, flakes: this.flakes.snapshots(), vms, settings };
  }

  private changed(): void {
    this.hub.changed();
  }

  // ------------------------------------------------------------------ closures

  private ensureClosure(t: Loaded, force = false): Promise<BuiltRecord> {
    return this.closures.ensure(
      { name: t.name, flake: t.flake, drvPath: t.spec.drvPath },
      { force, unavailable: this.nixProblem ?? 'Nix was not found.' },
    );
  }

  private async build(name: string): Promise<VmSnapshot> {
    await this.ensureClosure(this.vms.loaded(name), true);
    return this.vms.view(this.vms.entry(name));
  }

  private async cancelBuild(name: string): Promise<VmSnapshot> {
    const e = this.vms.entry(name);
    this.closures.cancel(name);
    return this.vms.view(e);
  }

  private async rebuildStale(): Promise<string[]> {
    const names = this.snapshot()
      .vms.filter((v) => v.stale && v.spec)
      .map((v) => v.name);
    await Promise.allSettled(names.map((n) => this.apply(n)));
    return names;
  }

  // ------------------------------------------------------------------ running

  private start(name: string): Promise<VmSnapshot> {
    const pending = this.starting.get(name);
    if (pending) return pending;
    const p = this.boot(name, { restart: false }).finally(() => this.starting.delete(name));
    this.starting.set(name, p);
    return p;
  }

  /**
   * Build if needed, then start (or restart onto) the current closure. A stop while it builds
   * cancels it: nothing is launched, and it rejects saying so (a stop during boot does the same,
   * through the supervisor).
   */
  private async boot(name: string, opts: { restart: boolean }): Promise<VmSnapshot> {
    const t = this.vms.loaded(name);
    if (!opts.restart && isLive(this.supervisor.status(name))) return this.vms.view(t);
    const token = { cancelled: false };
    let set = this.boots.get(name);
    if (!set) this.boots.set(name, (set = new Set()));
    set.add(token);
    try {
      const noRun = this.builders.platform(t.spec)?.cannotRun;
      if (noRun) throw new AgentError('failed', `VM ${JSON.stringify(name)} cannot run on this Mac: ${noRun}.`);
      await this.launcher.preflight(t);
      this.refuseMacClash(name);
      const closure = await this.ensureClosure(t);
      if (token.cancelled) throw startCancelled(name);
      // The store image is made (or found cached) from the closure just built, right before boot.
      const storeImage = t.spec.storeImage ? await this.storeImage(t, closure.outPath) : null;
      if (token.cancelled) throw startCancelled(name);
      await this.launcher.launch(t, closure, { ...opts, storeImage });
    } finally {
      set.delete(token);
      if (set.size === 0 && this.boots.get(name) === set) this.boots.delete(name);
    }
    this.changed();
    return this.vms.view(this.vms.entry(name));
  }

  private async storeImage(t: Loaded, outPath: string): Promise<string> {
    try {
      return await this.images.ensure(this.nix, t, outPath);
    } catch (err) {
      throw new AgentError('failed', errorMessage(err));
    }
  }

  /** Two VMs with one MAC on the bridge would share one DHCP lease: the second may not start. */
  private refuseMacClash(name: string): void {
    const live = (other: string) =>
      isLive(this.supervisor.status(other)) ||
      this.starting.has(other) ||
      this.supervisor.status(other).state === 'stopping';
    const clash = this.vms.macClash(name, live);
    if (!clash) return;
    throw new AgentError(
      'failed',
      `Cannot start ${JSON.stringify(name)}: ${JSON.stringify(clash.other)} is running with the same MAC address ${clash.mac}, and two VMs with one MAC on the bridge get one DHCP lease between them; stop ${JSON.stringify(clash.other)} first, or give one of them another virtualisation.macAddress.`,
    );
  }

  /** `disk reset`: a VM's snapshot after it, or null for the image of a VM no flake defines any more. */
  private diskReset(name: string): VmSnapshot | null {
    try {
      return this.diskCommand(name, () => this.disks.reset(name));
    } catch (err) {
      if (!(err instanceof AgentError && err.code === 'no-such-vm') || !this.disks.resetOrphan(name)) throw err;
      this.changed();
      return null;
    }
  }

  /** A disk command on one VM, then its snapshot. */
  private diskCommand(name: string, fn: (spec: Loaded['spec'] | null) => void): VmSnapshot {
    const e = this.vms.entry(name);
    fn(e.spec);
    this.changed();
    return this.vms.view(this.vms.entry(name));
  }

  private async stop(name: string): Promise<VmSnapshot> {
    const e = this.vms.entry(name);
    for (const token of this.boots.get(name) ?? []) token.cancelled = true;
    this.log(`stopping ${JSON.stringify(name)}`);
    try {
      await this.supervisor.stop(name);
    } catch (err) {
      throw new AgentError('failed', errorMessage(err));
    }
    return this.vms.view(e);
  }

  private async restart(name: string): Promise<VmSnapshot> {
    if (!isLive(this.supervisor.status(name))) return this.start(name);
    return this.boot(name, { restart: true });
  }

  /**
   * Rebuild, then bring a running VM onto the new closure: by switching in place when only what
   * `switch-to-configuration` changes changed (switch.ts decides), else by a restart, saying why.
   * A failed switch leaves the VM running and is one sentence; it never restarts by itself.
   */
  private async apply(name: string): Promise<VmSnapshot> {
    const t = this.vms.loaded(name);
    await this.ensureClosure(t);
    const v = this.vms.view(this.vms.entry(name));
    if (!isLive(v) || !v.stale) return v;
    const built = this.closures.built(name);
    const plan = this.applier.plan(t, v.state === 'running', built);
    if (plan.kind === 'restart') {
      this.applier.restarting(name, built?.outPath ?? '', plan.reasons);
      return this.boot(name, { restart: true });
    }
    await this.applier.switchInPlace(name, built!, plan.copy);
    return this.vms.view(this.vms.entry(name));
  }

  private async autostart(): Promise<void> {
    await this.ready();
    const auto = this.settings.get().autostart;
    for (const e of this.vms.entries()) {
      if (!e.spec || ownValue(auto, e.name) !== true) continue;
      const st = this.supervisor.status(e.name).state;
      if (st !== 'stopped' && st !== 'crashed') continue;
      this.start(e.name).catch((err) => {
        this.hub.notify({
          level: 'error',
          title: `Could not autostart ${JSON.stringify(e.name)}`,
          body: errorMessage(err),
          vm: e.name,
        });
      });
    }
  }

  /** After a flake edit: rebuild what the user uses, and apply it to running VMs in "apply" mode. */
  private autoRebuild(u: InventoryUpdate): void {
    const mode = this.settings.get().autoRebuild;
    if (mode === 'off') return;
    for (const v of u.result.vms) {
      if (!u.changed.includes(v.name) && !u.respecced.includes(v.name)) continue;
      const running = isLive(this.supervisor.status(v.name));
      // Rebuild what the user uses: running VMs and ones built before.
      if (!running && this.closures.built(v.name) === null) continue;
      const job = (mode === 'apply' || mode === 'restart') && running ? this.apply(v.name) : this.build(v.name);
      job.catch((err) => this.log(`auto-rebuild of ${JSON.stringify(v.name)}: ${errorMessage(err)}`));
    }
  }

  // ------------------------------------------------------------------ flakes and settings

  /** The settings' flakes, then this run's own (`daemon --flake`), each with its configuration filter. */
  private flakeDirs(): FlakeSpec[] {
    const s = this.settings.get();
    const fromSettings = new Set(resolveDirs(s.flakes));
    return resolveDirs([...s.flakes, ...(this.opts.flakes ?? [])]).map((dir) => ({
      dir,
      source: fromSettings.has(dir) ? 'settings' : 'command-line',
      filter: {
        include: Object.hasOwn(s.includeConfigurations, dir) ? s.includeConfigurations[dir] : [],
        exclude: Object.hasOwn(s.excludeConfigurations, dir) ? s.excludeConfigurations[dir] : [],
      },
    }));
  }

  private async reevaluate(): Promise<FlakeSnapshot[]> {
    await this.flakes.reevaluate();
    return this.flakes.snapshots();
  }

  /** Resolves once every flake has been evaluated at least once. */
  async ready(): Promise<void> {
    await this.flakes.ready();
    await this.buildersRead;
  }

  private locateNix(nixPath: string | null): void {
    try {
      this.nix = Nix.locate(nixPath);
      this.nixProblem = null;
    } catch (err) {
      this.nix = null;
      this.nixProblem = errorMessage(err);
    }
  }

  private onSettings(next: Settings, prev: Settings): void {
    this.supervisor.opts.stopTimeoutMs = next.stopTimeoutSec * 1000;
    if (next.nixPath !== prev.nixPath) {
      // nix found again (or elsewhere): new builder, every flake re-evaluated.
      this.locateNix(next.nixPath);
      void this.closures.useNix(this.nix).then(() => this.flakes.setNix(this.nix, this.nixProblem));
      void this.builders.refresh();
    }
    if (next.builderVm !== prev.builderVm) this.builders.reset();
    if (next.vfkitPath !== prev.vfkitPath) void this.launcher.locate(next.vfkitPath).then(() => this.changed());
    if (next.bridgeInterface !== prev.bridgeInterface) void this.reach.setBridge(next.bridgeInterface);
    this.flakes.sync(this.flakeDirs());
    this.changed();
  }

  /** A face met a problem serving this agent (one sentence): shown with the agent's problems. */
  reportProblem(sentence: string): void {
    if (this.faceProblems.has(sentence)) return;
    this.faceProblems.add(sentence);
    this.log(sentence);
    this.changed();
  }

  /**
   * Is the state dir still there with our lock in it? Called now and then by the faces. Deleted
   * (the lock gone with it): the folders, the lock and the records of running VMs are made again,
   * 'restored'. Another agent took the lock meanwhile: 'taken'; the face should then close this
   * agent (VMs keep running) and leave the socket to the newer one.
   */
  async checkState(): Promise<'ok' | 'restored' | 'taken'> {
    if (this.closed) return 'ok';
    const lock = this.lock ? await this.lock.check() : 'ok';
    if (lock === 'taken') {
      this.log('another nixvm agent holds the lock now; this one steps down and leaves the VMs running');
      return 'taken';
    }
    if (lock === 'ok' && fs.existsSync(this.paths.stateDir)) return 'ok';
    for (const d of [this.paths.stateDir, this.paths.logsDir, this.paths.configDir]) {
      try {
        fs.mkdirSync(d, { recursive: true, mode: 0o700 });
      } catch (err) {
        this.log(`could not re-create ${d}: ${errorMessage(err)}`);
      }
    }
    const restored = this.supervisor.restoreRecords();
    this.settings.restoreFile();
    this.log(
      `the state folder ${this.paths.stateDir} was deleted while the agent ran; its lock${restored.length ? ` and the records of ${restored.map((v) => JSON.stringify(v)).join(', ')}` : ''} were made again`,
    );
    this.changed();
    return 'restored';
  }

  private log(line: string): void {
    this.agentLog.write(line);
    if (this.opts.log) this.opts.log(line);
    else if (process.env.NIXVM_DEBUG) process.stderr.write(`[agent] ${line}\n`);
  }

  // ------------------------------------------------------------------ shutdown

  /** Stop watching. VMs keep running unless stopVms (default: the onQuit setting). */
  async close(opts: { stopVms?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    const stopVms = opts.stopVms ?? this.settings.get().onQuit === 'stop';
    if (stopVms) {
      const running = this.supervisor.list().filter((s) => s.state !== 'stopped' && s.state !== 'crashed');
      await Promise.allSettled(running.map((s) => this.supervisor.stop(s.name)));
    }
    this.closed = true;
    this.hub.close();
    this.usage.close();
    this.builders.close();
    await this.reach.close();
    this.settingsOff?.();
    await this.flakes.close();
    await this.closures.dispose();
    await this.supervisor.close();
    this.settings.close();
    this.log('agent stopped');
    this.agentLog.close();
    this.lock?.release();
  }
}
