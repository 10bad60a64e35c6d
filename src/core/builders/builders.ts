/**
 * The builders: what this machine builds itself, the remote builders nix knows (and whether each
 * answers), and nixvm's builder VM — its machine line in nixvm's own machines file while it is
 * ready, the arguments nixvm's builds add for it, and telling nix about it (registration.ts).
 *
 * The facts come from the nix in use (its configuration, read again on `refresh`); the builder VM
 * is followed through the snapshots the agent emits (`afterSnapshot`): once it runs and its sshd
 * answers on its IPv4 address, nix is asked to reach it exactly as its builds will (`nix store
 * ping` with the machine's key and host key), and only then is it listed. When it stops the file
 * is emptied, so nothing half-registered stays behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import type {
  AgentSnapshot,
  BootstrapPlan,
  BuilderMachineInfo,
  BuildersInfo,
  RegistrationPlan,
  Settings,
  VmPlatform,
  VmSpec,
} from '../../api/types.ts';
import { AgentError, errorMessage } from '../../api/errors.ts';
import { shellWord } from '../../host/shell.ts';
import { hostKeyOf } from '../net/known-hosts.ts';
import { sshBanner } from '../net/ssh-probe.ts';
import { type ConfigRunner, NIX_COMMAND_ARGS, nixConfig, settingWords, storeInfo } from '../nix/config.ts';
import { builderMachine, builderRefusal, type BuilderEndpoint } from './builder-vm.ts';
import { buildabilityOf, cannotRun, type BuildCapacity, type HostMachine } from './capability.ts';
import { machineEndpoint, parseBuilders, renderMachine, type Machine } from './machines.ts';
import { Bootstrap, BOOTSTRAP_VM, DEFAULT_NIXPKGS, planSentence } from './bootstrap.ts';
import {
  DEFAULT_BUILDERS,
  hasEntry,
  type NixInstallFacts,
  registrationPlan,
  unregistrationPlan,
} from './registration.ts';

export interface BuildersOptions {
  stateDir: string;
  /** The user's home (where the machines file goes when the state folder's path has a space). */
  home?: string | null;
  run: ConfigRunner;
  /** The nix binary in use, or null when there is none. */
  nix(): string | null;
  user: string;
  uid: number;
  host: HostMachine;
  settings(): Settings;
  log(line: string): void;
  changed(): void;
  /** The builder VM's spec, IPv4, key and pinned host key, as the agent knows them now. */
  vm(name: string): { spec: VmSpec; rootKey: boolean; ipv4: string | null; identityFile: string | null } | null;
  /** Start the VM (building it first if needed); resolves once it runs. */
  start(name: string): Promise<unknown>;
  /** Record the builder VM in the settings (null: none). */
  setBuilderVm(name: string | null): Promise<void>;
  /**
   * Add a flake to the user's flakes (if it is not there) and wait for its evaluation; the flake
   * that defines VM `name` now, or null.
   */
  addFlake(dir: string, name: string): Promise<{ flake: string | null; error: string | null }>;
  /** The flake that defines VM `name` now, or null. */
  flakeOf(name: string): string | null;
  /** /etc/nix/nix.conf (a parameter for tests). */
  systemConf?: string;
  /** How long one probe of a builder's ssh may take. */
  probeTimeoutMs?: number;
}

interface NixFacts {
  /** nix's own system (`system`), and where it substitutes from (for the first builder). */
  system: string | null;
  substituters: string[];
  localSystems: string[];
  builders: string;
  trustedUsers: string[];
  daemon: boolean;
  groups: string[];
}

function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * Where nixvm keeps its machines file: in the state folder, unless that path has white space
 * ("Application Support"): Nix 2.18 to 2.2x split `builders` on it before they read an `@file`
 * (2.26 read `@/tmp/a b/machines` as a machine `@/tmp/a`; 2.34 reads it right), so then
 * ~/.config/nixvm/machines.
 */
export function machinesFilePath(stateDir: string, home: string | null): string {
  const inState = path.join(stateDir, 'builders', 'machines');
  if (!/\s/.test(inState) || !home) return inState;
  const inHome = path.join(home, '.config', 'nixvm', 'machines');
  return /\s/.test(inHome) ? inState : inHome;
}

/**
 * Why nix could not reach the builder's store, in words: ssh's own reason first, then nix's last
 * line. Recorded on each Nix: test/helpers/nix-messages.ts's ping-* cases.
 */
export function pingFailure(stderr: string, exitCode: number | null): string {
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/.test(stderr))
    return 'its sshd shows a different host key than the one its configuration pins (environment.etc."ssh/ssh_host_ed25519_key.pub"), so nix refuses it; fix the key pair in the configuration and restart the VM';
  if (/Permission denied \(publickey/.test(stderr))
    return "its sshd refused nixvm's key for root; check services.openssh.authorizedKeysFiles and the $KEYS share";
  if (/Connection refused|Connection timed out|No route to host/.test(stderr))
    return 'nothing answers ssh on its address';
  // The remote shell's words (dash: "sh: 1: nix-daemon: not found", bash: "…: command not found").
  if (/\bnix-(?:daemon|store): (?:command )?not found/.test(stderr))
    return 'ssh logs in, but root finds no nix-daemon there (is nix installed on it, and on the PATH of ssh sessions?)';
  const last = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^warning:/.test(l))
    .at(-1);
  return `nix could not reach its store over ssh (${(last ?? `exit ${exitCode}`).replace(/^error:\s*/, '')})`;
}

/** Marks, in nixvm's machines file, the files whose machines it carries, and the builder VM's line. */
const CARRIES = '# nixvm: carries the machines of ';
const VM_MARK = '# nixvm: builder VM';

export class Builders {
  readonly #o: BuildersOptions;
  readonly machinesFile: string;
  #facts: NixFacts | null = null;
  /** The machines nix knows besides the builder VM (also those nixvm's file carries for nix). */
  #machines: Machine[] = [];
  /** The machines files those come from, read again at each refresh. */
  #otherFiles: string[] = [];
  #problems: string[] = [];
  readonly #answers = new Map<string, boolean>();
  /** The builder VM's line while it is in nixvm's machines file. */
  #active: { vm: string; machine: Omit<Machine, 'source'>; ipv4: string } | null = null;
  #status: BuildersInfo['status'] = 'off';
  #note: string | null = null;
  #activating = false;
  /** Failed tries in a row (their retries back off). */
  #failures = 0;
  #nextTryAt = 0;
  #closed = false;
  /** The machines file has a line (this agent's, or one an earlier agent left). */
  #listed = false;
  #modeNow: BuildersInfo['mode'] = null;
  /** The builder VM's URI as last listed (kept after it stops, to name it when a build loses it). */
  #lastUri: string | null = null;

  readonly #bootstrap: Bootstrap;

  constructor(o: BuildersOptions) {
    this.#o = o;
    this.machinesFile = machinesFilePath(o.stateDir, o.home ?? null);
    this.#bootstrap = new Bootstrap({
      stateDir: o.stateDir,
      home: o.home ?? null,
      run: o.run,
      nix: o.nix,
      log: o.log,
    });
    // An earlier agent's line stays while its VM runs on (VMs outlive the agent); the first
    // snapshot checks it again, and empties the file if that VM is gone.
    try {
      this.#listed = (readOrNull(this.machinesFile) ?? '').includes(VM_MARK);
    } catch {
      this.#listed = false;
    }
  }

  /** Ask nix again what it builds and which builders it has, and probe them. */
  async refresh(): Promise<void> {
    const nix = this.#o.nix();
    if (!nix) {
      this.#facts = null;
      this.#machines = [];
      this.#problems = [];
      this.#o.changed();
      return;
    }
    const [config, store, groups] = await Promise.all([
      nixConfig(this.#o.run, nix),
      storeInfo(this.#o.run, nix),
      this.#groups(),
    ]);
    if (!config) {
      this.#facts = null;
      this.#problems = ['nix did not show its configuration, so nixvm does not know which systems it builds.'];
      this.#o.changed();
      return;
    }
    const system = typeof config.system === 'string' ? config.system : null;
    const builders = typeof config.builders === 'string' ? config.builders : DEFAULT_BUILDERS;
    this.#facts = {
      system,
      substituters: settingWords(config.substituters),
      localSystems: [...new Set([...(system ? [system] : []), ...settingWords(config['extra-platforms'])])],
      builders,
      trustedUsers: settingWords(config['trusted-users']),
      daemon: 'url' in store ? store.url === 'daemon' || (store.url ?? '').startsWith('unix://') : true,
      groups,
    };
    const others = this.#otherMachines(builders);
    this.#machines = others.machines;
    this.#otherFiles = others.files;
    this.#problems = others.problems;
    // Kept current: nix may read the other machines from nixvm's file alone (see #fileText).
    this.#writeFile(this.#active ? renderMachine(this.#active.machine) : null, this.#active?.vm ?? null);
    const install = this.#install();
    this.#modeNow = install ? registrationPlan(install, this.machinesFile, '').mode : null;
    await Promise.all(this.#machines.map((m) => this.#probe(m.uri)));
    this.#o.changed();
  }

  async #groups(): Promise<string[]> {
    try {
      const r = await this.#o.run(['id', '-Gn'], { allowFailure: true, timeoutMs: 5000 });
      return r.exitCode === 0 ? r.stdout.trim().split(/\s+/).filter(Boolean) : [];
    } catch {
      return [];
    }
  }

  async #probe(uri: string): Promise<void> {
    const e = machineEndpoint(uri);
    if (!e) return;
    const banner = await sshBanner({ host: e.host, port: e.port }, this.#o.probeTimeoutMs ?? 3000);
    this.#answers.set(uri, banner !== null);
  }

  /** What builds here: nix's own systems, its builders, and the builder VM while it is ready. */
  capacity(): BuildCapacity {
    const machines: Machine[] = [...this.#machines];
    const answers = new Map(this.#answers);
    if (this.#active) {
      machines.push({ ...this.#active.machine, source: this.machinesFile });
      answers.set(this.#active.machine.uri, true);
    }
    return { localSystems: this.#facts?.localSystems ?? [], machines, answers };
  }

  /** Where a VM's system is built, whether it runs on this Mac and can be the builder; null before nix was asked. */
  platform(spec: VmSpec | null, rootKey = false): VmPlatform | null {
    if (!spec) return null;
    const noRun = cannotRun(spec.system, this.#o.host);
    const builder = {
      isBuilder: this.#o.settings().builderVm === spec.name,
      builderRefusal: builderRefusal(spec, rootKey),
    };
    if (!this.#facts)
      return noRun ? { buildsOn: 'local', builders: [], problem: null, cannotRun: noRun, ...builder } : null;
    const system = spec.buildSystem ?? spec.system;
    const b = buildabilityOf(system, this.capacity());
    if (b.how === 'local') return { buildsOn: 'local', builders: [], problem: null, cannotRun: noRun, ...builder };
    if (b.how === 'builder') {
      const one = b.machines.length === 1;
      return {
        buildsOn: 'builder',
        builders: b.machines,
        problem:
          b.answering === false
            ? `its ${system} builder${one ? ' does' : 's do'} not answer (${b.machines.join(', ')}); start ${one ? 'it' : 'one'} before you build.`
            : null,
        cannotRun: noRun,
        ...builder,
      };
    }
    // A builder VM on its way is said to be on its way.
    const vm = this.#o.settings().builderVm;
    const waiting = vm && this.#status === 'waiting' ? ` (the builder VM ${JSON.stringify(vm)} is not ready yet)` : '';
    return {
      buildsOn: 'none',
      builders: [],
      problem: `${b.reason}${waiting}; ${b.fix}.`,
      cannotRun: noRun,
      ...builder,
    };
  }

  /**
   * Arguments nixvm's builds add while the builder VM is ready and nix takes it from nixvm (agent
   * mode): every machine nix knows, then the builder VM's, inline — Nix 2.8 reads `@file` only as
   * the whole value, so `@a ; @b` would not do there.
   */
  buildArgs(): string[] {
    if (!this.#active || !this.#facts || this.#mode() !== 'agent') return [];
    const lines: string[] = [];
    for (const m of this.#machines) {
      try {
        lines.push(renderMachine(m));
      } catch {
        // A machine nix could not have read either.
      }
    }
    lines.push(renderMachine(this.#active.machine));
    return ['--option', 'builders', lines.join(' ; ')];
  }

  /** nix's name for a builder (its URI, maybe without parameters) in words, when it is the builder VM. */
  describe(uri: string): { words: string; fix: string } | null {
    const vm = this.#o.settings().builderVm;
    const ours = this.#lastUri;
    if (!vm || !ours) return null;
    const bare = (u: string) => u.replace(/\?.*$/, '');
    if (bare(uri) !== bare(ours)) return null;
    return {
      words: `the builder VM ${JSON.stringify(vm)}`,
      fix: `start it again (\`nixvm start ${shellWord(vm)}\`) and wait for \`nixvm builder\` to say it is ready`,
    };
  }

  #install(): NixInstallFacts | null {
    const f = this.#facts;
    if (!f) return null;
    const confPath = this.#o.systemConf ?? '/etc/nix/nix.conf';
    let nixDarwin = false;
    try {
      nixDarwin = fs.lstatSync(confPath).isSymbolicLink() && fs.readlinkSync(confPath).includes('/etc/static/');
    } catch {
      nixDarwin = false;
    }
    let systemConf: string | null = null;
    try {
      systemConf = readOrNull(confPath);
    } catch {
      systemConf = null;
    }
    return {
      user: this.#o.user,
      uid: this.#o.uid,
      groups: f.groups,
      trustedUsers: f.trustedUsers,
      daemon: f.daemon,
      nixDarwin,
      builders: f.builders,
      systemConf,
    };
  }

  /** How nix is told, as of the last refresh (not read from disk for every snapshot). */
  #mode(): BuildersInfo['mode'] {
    return this.#modeNow;
  }

  info(): BuildersInfo {
    const active = this.#active;
    const machines: BuilderMachineInfo[] = this.#machines.map((m) => ({
      uri: m.uri,
      systems: m.systems,
      maxJobs: m.maxJobs,
      supportedFeatures: m.supportedFeatures,
      source: m.source,
      answers: this.#answers.get(m.uri) ?? null,
      vm: null,
    }));
    if (active) {
      machines.push({
        uri: active.machine.uri,
        systems: active.machine.systems,
        maxJobs: active.machine.maxJobs,
        supportedFeatures: active.machine.supportedFeatures,
        source: this.machinesFile,
        answers: true,
        vm: active.vm,
      });
    }
    return {
      localSystems: this.#facts?.localSystems ?? [],
      machines,
      problems: [...this.#problems],
      vm: this.#o.settings().builderVm,
      status: this.#o.settings().builderVm ? this.#status : 'off',
      note: this.#o.settings().builderVm ? this.#note : null,
      mode: this.#mode(),
      machinesFile: this.machinesFile,
    };
  }

  /** Why `name` cannot be the builder, as a sentence; null when it can. */
  refusal(name: string): string | null {
    const v = this.#o.vm(name);
    if (!v)
      return `VM ${JSON.stringify(name)} has no evaluated configuration, so nixvm cannot tell whether it can build.`;
    const why = builderRefusal(v.spec, v.rootKey);
    return why ? `VM ${JSON.stringify(name)} cannot be this machine's builder: ${why}.` : null;
  }

  /** The plan to make nix read nixvm's file (`staged`: where a new nix.conf would be written first). */
  plan(): RegistrationPlan {
    const i = this.#install();
    if (!i) throw new Error('nix did not show its configuration');
    return registrationPlan(i, this.machinesFile, this.#staged());
  }

  unplan(): RegistrationPlan {
    const i = this.#install();
    if (!i) throw new Error('nix did not show its configuration');
    return unregistrationPlan(i, this.machinesFile, this.#staged());
  }

  #staged(): string {
    return path.join(this.#o.stateDir, 'builders', 'nix.conf.staged');
  }

  /** Write the staged nix.conf a system plan installs (the admin script copies it into place). */
  stage(plan: RegistrationPlan): void {
    if (!plan.system) return;
    fs.mkdirSync(path.dirname(plan.system.staged), { recursive: true, mode: 0o700 });
    fs.writeFileSync(plan.system.staged, plan.system.contents, { mode: 0o644 });
  }

  /**
   * `builder use`: check the VM can build, work out how nix is told and, when that needs an
   * administrator (system mode) and no consent was given, return the plan without changing
   * anything. Otherwise make the change, record the VM, start it; it is listed once it answers.
   */
  async use(name: string, consent: boolean): Promise<{ plan: RegistrationPlan; done: boolean }> {
    const refusal = this.refusal(name);
    if (refusal) throw new AgentError('failed', refusal);
    await this.refresh();
    if (!this.#facts) throw new AgentError('failed', `${this.#problems[0] ?? 'nix was not found.'}`);
    const plan = this.plan();
    if (plan.system && !consent) return { plan, done: false };
    if (plan.system) await this.#runAdmin(plan, 'make nix use the builder VM');
    await this.#o.setBuilderVm(name);
    this.reset();
    await this.refresh();
    void this.#o.start(name).catch((err) => {
      this.#status = 'failed';
      this.#note = `${JSON.stringify(name)} did not start: ${errorMessage(err)}`;
      this.#o.changed();
    });
    return { plan, done: true };
  }

  /** nixvm's flake for the first builder. */
  get bootstrapFlake(): string {
    return this.#bootstrap.dir;
  }

  /**
   * `builder setup`: no builder yet, so run nixpkgs' prebuilt darwin.linux-builder-vz as the
   * builder. Without consent: write and lock nixvm's flake for it, and say what it downloads and
   * how nix is told (nothing else changes). With consent: add the flake, then `use` its VM.
   */
  async setup(
    nixpkgs: string | undefined,
    consent: boolean,
  ): Promise<{ setup: BootstrapPlan; sentence: string; plan: RegistrationPlan; done: boolean }> {
    const current = this.#o.settings().builderVm;
    if (current)
      throw new AgentError(
        'failed',
        `${JSON.stringify(current)} is this machine's builder already; run \`nixvm builder off\` first to set up another.`,
      );
    const owner = this.#o.flakeOf(BOOTSTRAP_VM);
    if (owner && owner !== this.#bootstrap.dir)
      throw new AgentError(
        'failed',
        `Cannot set up a Linux builder: the flake at ${owner} has a VM named ${BOOTSTRAP_VM} already; make that one the builder (\`nixvm builder use ${BOOTSTRAP_VM}\`) or rename it.`,
      );
    await this.refresh();
    if (!this.#facts) throw new AgentError('failed', `${this.#problems[0] ?? 'nix was not found.'}`);
    const setup = await this.#bootstrap.plan(
      nixpkgs ?? this.#o.settings().builderNixpkgs ?? DEFAULT_NIXPKGS,
      this.#facts,
    );
    const plan = this.plan();
    const sentence = planSentence(setup);
    if (!consent) return { setup, sentence, plan, done: false };
    this.#o.log(`builder setup: ${sentence}`);
    const added = await this.#o.addFlake(this.#bootstrap.dir, BOOTSTRAP_VM);
    if (added.flake !== this.#bootstrap.dir)
      throw new AgentError(
        'failed',
        `Cannot set up a Linux builder: nixvm's flake at ${this.#bootstrap.dir} ${added.error ? `did not evaluate (${added.error})` : `defines no ${BOOTSTRAP_VM}`}; nothing else was changed.`,
      );
    const used = await this.use(BOOTSTRAP_VM, true);
    return { setup, sentence, ...used };
  }

  /** `builder off`: unlist the VM, forget it, and undo what nixvm changed in nix's configuration. */
  async off(consent: boolean): Promise<{ plan: RegistrationPlan; done: boolean }> {
    await this.refresh();
    const plan = this.#facts
      ? this.unplan()
      : { mode: 'agent' as const, changes: [], system: null, userConfLine: null, snippet: null, inPlace: true };
    if (plan.system && !consent) return { plan, done: false };
    if (plan.system) await this.#runAdmin(plan, 'undo the builder change');
    this.#deactivate('turned off');
    await this.#o.setBuilderVm(null);
    this.reset();
    await this.refresh();
    return { plan, done: true };
  }

  async #runAdmin(plan: RegistrationPlan, what: string): Promise<void> {
    this.stage(plan);
    const r = await this.#o.run(plan.system!.argv, { allowFailure: true, timeoutMs: 300_000 });
    if (r.exitCode !== 0) {
      const cancelled = /User canceled|-128/.test(r.stderr);
      throw new AgentError(
        'failed',
        cancelled
          ? `Nothing was changed: the administrator prompt to ${what} was cancelled.`
          : `Could not ${what} in ${plan.system!.file} (${r.stderr.trim().split('\n').at(-1) || `exit ${r.exitCode}`}); nothing else was changed.`,
      );
    }
    this.#o.log(`${plan.system!.file} changed to ${what} (backup: ${plan.system!.file}.before-nixvm)`);
  }

  /** The builder VM changed (set, unset): look at it again now. */
  reset(): void {
    this.#nextTryAt = 0;
    this.#failures = 0;
    const vm = this.#o.settings().builderVm;
    if (!vm || (this.#active && this.#active.vm !== vm)) this.#deactivate(null);
    this.#status = vm ? 'waiting' : 'off';
    this.#note = vm ? `waiting for ${JSON.stringify(vm)} to start` : null;
    this.#o.changed();
  }

  /** After each snapshot: list the builder VM once it answers, unlist it once it stops. */
  afterSnapshot(snap: AgentSnapshot): void {
    const vm = snap.settings.builderVm;
    if (!vm || this.#closed) return;
    const v = snap.vms.find((x) => x.name === vm);
    if (v?.state !== 'running') {
      if (this.#active || this.#listed)
        this.#deactivate(`${JSON.stringify(vm)} stopped, so nix no longer builds on it`);
      // Its next boot is looked at at once, whatever failed before.
      this.#nextTryAt = 0;
      this.#failures = 0;
      if (this.#status !== 'waiting' || !this.#note?.startsWith('waiting for')) {
        this.#status = 'waiting';
        this.#note = v
          ? `waiting for ${JSON.stringify(vm)} to start`
          : `no flake defines ${JSON.stringify(vm)} any more`;
        this.#o.changed();
      }
      return;
    }
    if (this.#active && this.#active.ipv4 === v.ipv4) return;
    if (this.#activating || Date.now() < this.#nextTryAt) return;
    this.#activating = true;
    void this.#activate(vm)
      .catch((err) => {
        const note = errorMessage(err);
        // Said once in the log, however often it is tried again.
        if (this.#status !== 'failed' || this.#note !== note) this.#o.log(`builder VM ${JSON.stringify(vm)}: ${note}`);
        this.#status = 'failed';
        this.#note = note;
        this.#failures++;
      })
      .finally(() => {
        this.#activating = false;
        if (this.#status !== 'failed') this.#failures = 0;
        if (this.#status === 'ready' || this.#closed) {
          this.#o.changed();
          return;
        }
        // Waiting for its sshd is a cheap probe, asked again soon; failures back off to a minute.
        const delay = this.#status === 'failed' ? Math.min(60_000, 5000 * 2 ** (this.#failures - 1)) : 250;
        this.#nextTryAt = Date.now() + delay;
        // Looked at again with the next snapshot; make sure one comes while it waits.
        const t = setTimeout(() => this.#o.changed(), delay);
        t.unref();
        this.#o.changed();
      });
  }

  async #activate(name: string): Promise<void> {
    const v = this.#o.vm(name);
    if (!v) throw new Error(`no flake defines ${JSON.stringify(name)} any more`);
    const refusal = builderRefusal(v.spec, v.rootKey);
    if (refusal) throw new Error(`it cannot build: ${refusal}`);
    if (!v.ipv4 || !v.identityFile) {
      this.#status = 'waiting';
      this.#note = `waiting for ${JSON.stringify(name)} to get an IPv4 address`;
      return;
    }
    // Generous: a booting guest's sshd (or the simulator's, on a loaded machine) greets slowly.
    if ((await sshBanner({ host: v.ipv4, port: 22 }, Math.max(6000, this.#o.probeTimeoutMs ?? 0))) === null) {
      this.#status = 'waiting';
      this.#note = `waiting for the sshd of ${JSON.stringify(name)} to answer on ${v.ipv4}`;
      return;
    }
    const hostKey = hostKeyOf(v.spec.ssh.hostKey) ?? (await this.#scanHostKey(v.ipv4));
    if (!hostKey) throw new Error(`its sshd on ${v.ipv4} showed no ed25519 host key`);
    const endpoint: BuilderEndpoint = { ipv4: v.ipv4, identityFile: v.identityFile, hostKey };
    const machine = builderMachine(v.spec, endpoint);
    await this.#ping(machine);
    if (this.#o.settings().builderVm !== name) return; // turned off meanwhile
    this.#active = { vm: name, machine, ipv4: v.ipv4 };
    this.#lastUri = machine.uri;
    this.#writeFile(renderMachine(machine), name);
    this.#status = 'ready';
    this.#note = `nix builds ${machine.systems.join(', ')} on ${JSON.stringify(name)} (${v.ipv4}, ${machine.maxJobs} jobs)`;
    this.#o.log(`builder VM ${JSON.stringify(name)} ready: ${renderMachine(machine)}`);
  }

  /** A guest without a pinned key: the key its sshd shows now (what ssh's accept-new would take). */
  async #scanHostKey(ip: string): Promise<string | null> {
    const r = await this.#o.run(['ssh-keyscan', '-T', '5', '-t', 'ed25519', ip], {
      allowFailure: true,
      timeoutMs: 10_000,
    });
    for (const line of r.stdout.split('\n')) {
      const key = hostKeyOf(line.replace(/^\S+\s+/, ''));
      if (key) return key;
    }
    return null;
  }

  /** nix reaches the builder's store the way its builds will: the machine's URI, key and host key. */
  async #ping(m: Omit<Machine, 'source'>): Promise<void> {
    const nix = this.#o.nix();
    if (!nix) throw new Error('nix was not found');
    const uri = `${m.uri}${m.uri.includes('?') ? '&' : '?'}base64-ssh-public-host-key=${m.publicHostKey}`;
    const r = await this.#o.run([nix, ...NIX_COMMAND_ARGS, 'store', 'ping', '--store', uri], {
      allowFailure: true,
      timeoutMs: 30_000,
    });
    if (r.exitCode !== 0) throw new Error(pingFailure(r.stderr, r.exitCode));
  }

  #deactivate(why: string | null): void {
    if (this.#active) this.#o.log(`builder VM ${JSON.stringify(this.#active.vm)} unlisted${why ? `: ${why}` : ''}`);
    this.#active = null;
    this.#writeFile(null);
  }

  /**
   * The machines of nix's `builders` other than the builder VM's. Once nix reads nixvm's file
   * (`builders = @<file>`), the files that file says it carries are read again instead, so that
   * an edit of /etc/nix/machines still counts.
   */
  #otherMachines(builders: string): { machines: Machine[]; files: string[]; problems: string[] } {
    const carried = (): string[] => {
      const m = new RegExp(`^${CARRIES}(.*)$`, 'm').exec(readOrNull(this.machinesFile) ?? '');
      try {
        const v = m ? (JSON.parse(m[1]!) as unknown) : [];
        return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
      } catch {
        return [];
      }
    };
    const files: string[] = [];
    const machines: Machine[] = [];
    const problems: string[] = [];
    const read = (f: string) => {
      try {
        return readOrNull(f);
      } catch (err) {
        problems.push(`${f} could not be read: ${errorMessage(err)}.`);
        return null;
      }
    };
    const value = builders
      .split(/[;\n]/)
      .map((e) => e.trim())
      .filter((e) => e && e !== `@${this.machinesFile}`)
      .concat(hasEntry(builders, this.machinesFile) ? carried().map((f) => `@${f}`) : [])
      .join(' ; ');
    const parsed = parseBuilders(value, (f) => (f === this.machinesFile ? '' : read(f)));
    for (const f of parsed.files) if (f !== this.machinesFile && !files.includes(f)) files.push(f);
    machines.push(...parsed.machines);
    problems.push(...parsed.problems);
    return { machines, files, problems };
  }

  /**
   * nixvm's machines file: the other machines nix knows, then the builder VM's line while it is
   * ready. It carries the others because Nix 2.18 to 2.2x read only the first `@file` of
   * `builders` (2.26 takes `@a ; @b` for a's machines and a machine named `@b`): with
   * `builders = @<this file>` nothing else is lost. No `;` in its comments: nix splits entries on
   * it before it strips comments.
   */
  #fileText(line: string | null, vm: string | null): string {
    const files = this.#otherFiles.filter((f) => !/[;\n]/.test(f));
    const out = [
      "# nixvm's machines file, rewritten by nixvm: the machines below, then its builder VM while it is ready.",
      `${CARRIES}${JSON.stringify(files)}`,
    ];
    for (const m of this.#machines) {
      try {
        out.push(renderMachine(m));
      } catch {
        // A machine nix could not have read either.
      }
    }
    if (line) out.push(`${VM_MARK} ${JSON.stringify(vm).replace(/[;\n]/g, '')}`, line);
    return `${out.join('\n')}\n`;
  }

  #writeFile(line: string | null, vm: string | null = null): void {
    this.#listed = line !== null;
    try {
      const text = this.#fileText(line, vm);
      if (readOrNull(this.machinesFile) === text) return;
      fs.mkdirSync(path.dirname(this.machinesFile), { recursive: true, mode: 0o700 });
      // Readable by the nix daemon (root); the directory above is the user's own.
      const tmp = `${this.machinesFile}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, text, { mode: 0o644 });
      fs.renameSync(tmp, this.machinesFile);
    } catch (err) {
      this.#o.log(`could not write ${this.machinesFile}: ${errorMessage(err)}`);
    }
  }

  close(): void {
    // The line stays: the VM runs on without the agent, and nix (the daemon) may go on using it.
    this.#closed = true;
  }
}
