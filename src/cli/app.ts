/**
 * The `nixvm` command line: commander wiring over an AgentPort. Every command talks to the agent
 * through the contract in src/api (nothing here knows how VMs run); what it prints comes from the
 * pure formatters in format.ts. `main()` returns the exit code instead of exiting, so tests drive
 * it with a scripted port and read what it wrote.
 *
 * Every command that prints a result takes --json: its result as JSON on stdout, and a failure as
 * `{"error": {"code", "message"}}` on stdout with the same exit code as in text mode. The
 * exceptions print no result (ssh, console, proxy, daemon, completion: terminal sessions, a byte
 * stream, a log, a script); test/unit/cli-commands.test.ts holds the list and the README says it.
 */
import path from 'node:path';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { flakeSentence } from '../api/describe.ts';
import { agentErrorCode } from '../api/errors.ts';
import type { AgentEvent, AgentSnapshot, DoctorReport, LogKind, VmSnapshot } from '../api/types.ts';
import { MAX_LOG_LINES } from '../api/validate.ts';
import pkg from '../../package.json' with { type: 'json' };
import { shellWord } from '../host/shell.ts';
import {
  checkRoute,
  checkSshDestination,
  sshArgv,
  sshCommandLine,
  sshTargetFor,
  type SshDestination,
} from '../core/net/ssh.ts';
import { formatBytes } from '../api/describe.ts';
import { colorFor, makePaint, type Paint } from './color.ts';
import { completionScript, completions, SHELLS, type Shell } from './completion.ts';
import { CliError, EXIT, EXIT_CODES_HELP, Interrupted, jsonError } from './errors.ts';
import {
  commandName,
  formatDiskList,
  formatDoctor,
  formatEvent,
  formatInspect,
  formatLoginItem,
  formatOutcome,
  formatStatus,
  formatVmTable,
  isReachable,
  visibleName,
  visibleText,
  snapshotChanges,
  timeOfDay,
} from './format.ts';
import { defaultIo } from './default-io.ts';
import type { CliIo, CliPort } from './io.ts';
import { createProgressView, type BuildProgressView } from './progress.ts';
import { registerBuilderCommands } from './builder-cmd.ts';
import { registerSettingsCommands, settingsAccess } from './settings-cmd.ts';

export { EXIT } from './errors.ts';
export type { CliIo, CliOutput, CliPort } from './io.ts';

/** One invocation: the io, the socket to use, and the agent connection (opened on first use). */
export class Session {
  readonly io: CliIo;
  socketOverride: string | undefined;
  /** --json somewhere on the command line: results and errors as JSON on stdout. */
  jsonMode = false;
  /** What commander would have printed for a usage error (JSON mode prints it as JSON instead). */
  usageText = '';
  #socket: string | undefined;
  #port: Promise<CliPort> | undefined;

  constructor(io: CliIo) {
    this.io = io;
  }

  async socketPath(): Promise<string> {
    this.#socket ??= this.socketOverride
      ? path.resolve(this.io.cwd, this.socketOverride)
      : await this.io.defaultSocketPath(this.io.env);
    return this.#socket;
  }

  /** The socket path if it is already known (for error messages), without computing it. */
  knownSocketPath(): string {
    return this.#socket ?? this.socketOverride ?? 'the control socket';
  }

  /**
   * The agent: on the given socket, else on the default one, else the dev agent `npm start` runs
   * (its socket only counts when no --socket and no NIXVM_STATE_DIR say where to look).
   */
  port(): Promise<CliPort> {
    this.#port ??= this.#connect();
    return this.#port;
  }

  async #connect(): Promise<CliPort> {
    const p = await this.socketPath();
    try {
      return await this.io.connect(p);
    } catch (err) {
      if (agentErrorCode(err) !== 'not-running' || this.socketOverride || this.io.env.NIXVM_STATE_DIR) throw err;
      const dev = await this.io.devSocketPath(this.io.env);
      if (!dev || dev === p) throw err;
      try {
        const port = await this.io.connect(dev);
        this.#socket = dev;
        return port;
      } catch {
        throw err;
      }
    }
  }

  /** The agent if it runs, else null (commands that can do without it). */
  async maybePort(): Promise<CliPort | null> {
    try {
      return await this.port();
    } catch (err) {
      if (agentErrorCode(err) === 'not-running') {
        this.#port = undefined;
        return null;
      }
      throw err;
    }
  }

  /** Drop the connection (the agent went away) so the next port() connects again. */
  async reconnect(): Promise<CliPort> {
    const old = this.#port;
    this.#port = undefined;
    const dead = await old?.catch(() => null);
    await dead?.close?.();
    return this.port();
  }

  async close(): Promise<void> {
    if (!this.#port) return;
    const port = await this.#port.catch(() => null);
    await port?.close?.();
  }

  get paint(): Paint {
    return makePaint(colorFor(this.io.stdout, this.io.env));
  }

  get errPaint(): Paint {
    return makePaint(colorFor(this.io.stderr, this.io.env));
  }

  /** stdout's width on a terminal; none (no wrapping) for pipes and files. */
  get width(): number | undefined {
    return this.io.stdout.isTTY ? (this.io.stdout.columns ?? 80) : undefined;
  }

  /** A line for the user: what came from the agent can never drive the terminal (visibleText). */
  out(s: string): void {
    const t = visibleText(s);
    this.io.stdout.write(t.endsWith('\n') ? t : `${t}\n`);
  }

  err(s: string): void {
    const t = visibleText(s);
    this.io.stderr.write(t.endsWith('\n') ? t : `${t}\n`);
  }

  json(v: unknown): void {
    this.io.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
  }

  /** One JSON value per line (streams: watch, logs -f). */
  jsonLine(v: unknown): void {
    this.io.stdout.write(`${JSON.stringify(v)}\n`);
  }
}

/** Resolves when `signal` aborts (Ctrl-C); never rejects. */
function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** `p`, unless Ctrl-C comes first: then Interrupted. */
async function interruptible<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw new Interrupted();
  let onAbort = (): void => {};
  const interrupted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new Interrupted());
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([p, interrupted]);
  } finally {
    // Many calls share one signal; do not leave a listener behind for each.
    signal.removeEventListener('abort', onAbort);
  }
}

/** `ms` of waiting, cut short by Ctrl-C (for retrying a connection, never in tests' place). */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

function goneError(what: string): CliError {
  return new CliError(
    EXIT.notRunning,
    `The nixvm agent went away while ${what}; start it again with \`nixvm daemon\` or open NixVM.app.`,
  );
}

/**
 * Rejects when the agent drops the connection (it quit or crashed): a command that waits on
 * events would otherwise wait forever. Never resolves.
 */
function agentGone(port: CliPort, what: string): { promise: Promise<never>; dispose: () => void } {
  let dispose = (): void => {};
  const promise = new Promise<never>((_, reject) => {
    dispose =
      port.onClose?.((err) => {
        if (err) reject(goneError(what));
      }) ?? dispose;
  });
  promise.catch(() => {});
  return { promise, dispose: () => dispose() };
}

/** Wait for Ctrl-C ('interrupted'), or for the agent to go away ('gone'). */
async function untilInterruptedOrGone(port: CliPort, signal: AbortSignal): Promise<'interrupted' | 'gone'> {
  const gone = agentGone(port, '');
  try {
    return await Promise.race([
      aborted(signal).then(() => 'interrupted' as const),
      gone.promise.catch(() => 'gone' as const),
    ]);
  } finally {
    gone.dispose();
  }
}

/** Wait for Ctrl-C, or fail if the agent goes away first. */
async function untilInterrupted(port: CliPort, signal: AbortSignal, what: string): Promise<void> {
  if ((await untilInterruptedOrGone(port, signal)) === 'gone') throw goneError(what);
}

/**
 * No VM by that name: one sentence that says why, from the state of each flake (still being
 * evaluated, nix missing, failed, a configuration that is not a VM), naming the known VMs.
 */
export function noSuchVm(name: string, snap: AgentSnapshot, now: number): CliError {
  const hiddenIn = snap.flakes.find((f) => f.hidden.includes(name));
  if (hiddenIn) {
    return new CliError(
      EXIT.noSuchVm,
      `"${visibleName(name)}" is a configuration of ${visibleName(hiddenIn.dir)} that nixvm does not show as a VM (it sets none of the options nixvm reads, or the settings exclude it); \`nixvm flake include ${shellWord(hiddenIn.dir)} ${shellWord(name)}\` makes it one.`,
    );
  }
  const known = snap.vms.map((v) => visibleName(v.name));
  const pending = snap.flakes.filter((f) => f.state !== 'ok');
  if (pending.length > 0) {
    const why = pending.map((f) => flakeSentence(f, now, 0, commandName)).filter(Boolean);
    const prefix = pending.every((f) => f.state === 'evaluating')
      ? `No VM named "${visibleName(name)}" yet`
      : `No VM named "${visibleName(name)}"`;
    return new CliError(EXIT.noSuchVm, `${prefix}: ${visibleName(why.join(' '))}`);
  }
  const hint = known.length ? `known VMs: ${known.join(', ')}` : 'the agent knows no VMs';
  return new CliError(EXIT.noSuchVm, `No VM named "${visibleName(name)}" (${hint}).`);
}

async function findVm(s: Session, name: string): Promise<{ snap: AgentSnapshot; vm: VmSnapshot }> {
  const snap = await (await s.port()).call('snapshot', {});
  const vm = snap.vms.find((v) => v.name === name);
  if (!vm) throw noSuchVm(name, snap, s.io.now());
  return { snap, vm };
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError('Give a whole number of lines, 0 or more.');
  }
  return n;
}

/** A flake that did not evaluate makes `ls` and `reevaluate` exit 1 (the documented rule). */
function flakesFailed(flakes: AgentSnapshot['flakes']): boolean {
  return flakes.some((f) => f.state === 'failed' || f.state === 'nix-missing' || f.state === 'no-such-dir');
}

// ─── commands ────────────────────────────────────────────────────────────────────────────────

async function cmdLs(s: Session, opts: { json?: boolean }): Promise<number> {
  const snap = await (await s.port()).call('snapshot', {});
  if (opts.json) s.json({ vms: snap.vms, flakes: snap.flakes, problems: snap.agent.problems });
  else s.out(formatVmTable(snap, s.width, { paint: s.paint, now: s.io.now() }));
  return flakesFailed(snap.flakes) ? EXIT.failed : EXIT.ok;
}

async function cmdStatus(s: Session, name: string, opts: { json?: boolean }): Promise<number> {
  const { vm } = await findVm(s, name);
  if (opts.json) s.json(vm);
  else s.out(formatStatus(vm, s.io.now()));
  return EXIT.ok;
}

type VmAction = 'start' | 'stop' | 'restart' | 'build' | 'apply';

const DONE: Record<VmAction, string> = {
  start: 'started',
  stop: 'stopped',
  restart: 'restarted',
  build: 'built',
  apply: 'applied',
};

/** The VMs `--all` means for each action: every one the action applies to. */
function allFor(action: VmAction | 'cancel', vms: VmSnapshot[]): string[] {
  const up = (v: VmSnapshot) => v.state === 'running' || v.state === 'starting';
  return vms
    .filter((v) => {
      switch (action) {
        case 'start':
          return v.spec !== null && !up(v) && v.state !== 'stopping';
        case 'stop':
        case 'restart':
          return up(v);
        case 'cancel':
          return v.build.status === 'building';
        default:
          return v.spec !== null;
      }
    })
    .map((v) => v.name);
}

/** The names a command acts on: those given, or `--all`; unknown names are refused up front. */
function targets(
  s: Session,
  action: VmAction | 'cancel',
  names: string[],
  all: boolean | undefined,
  snap: AgentSnapshot,
): string[] {
  if (all && names.length) throw new CliError(EXIT.usage, `Give VM names or --all, not both.`);
  if (!all && names.length === 0) throw new CliError(EXIT.usage, `nixvm ${action} needs VM names (or --all).`);
  const unique = all ? allFor(action, snap.vms) : [...new Set(names)];
  for (const n of unique) if (!snap.vms.some((v) => v.name === n)) throw noSuchVm(n, snap, s.io.now());
  return unique;
}

interface ActionResult {
  vm: string;
  ok: boolean;
  snapshot?: VmSnapshot;
  error?: { code: string; message: string; detail?: string; logPath?: string };
}

/**
 * start|stop|restart|build|apply on one or more VMs, side by side. Builds (asked for, or the
 * one a stale start needs) show live progress from the agent's snapshot events. Unknown names
 * are refused before anything happens. Ctrl-C during a build asks (on a terminal) whether to
 * cancel it or leave it to the agent; a second Ctrl-C cancels.
 */
async function cmdAction(
  s: Session,
  action: VmAction,
  names: string[],
  opts: { json?: boolean; all?: boolean },
): Promise<number> {
  const port = await s.port();
  const signal = s.io.signal;
  const t0 = s.io.now();
  const snap = await interruptible(port.call('snapshot', {}), signal);
  const unique = targets(s, action, names, opts.all, snap);
  if (unique.length === 0) {
    if (opts.json) s.json([]);
    else s.err(`No VM to ${action}.`);
    return EXIT.ok;
  }

  const view: BuildProgressView = createProgressView(s.io.stdout, s.io.now, { silent: opts.json === true });
  // An apply's output (the store-image copy, then the switch), printed line by line as it comes:
  // each snapshot carries how many lines there are and the last few. Only this call's apply.
  const applySince = Date.now() - 1000;
  const printed = new Map<string, { at: number; count: number }>();
  const applyLines = (vm: VmSnapshot | undefined): void => {
    const a = vm?.applied;
    if (action !== 'apply' || !vm || !a?.output || a.at < applySince) return;
    const seen = printed.get(vm.name);
    const done = seen?.at === a.at ? seen.count : 0;
    const { count, tail } = a.output;
    if (count <= done) return;
    const first = count - tail.length;
    const name = visibleName(vm.name);
    if (first > done) view.log(`${name} | … (${first - done} more in its apply.log)`);
    for (let i = Math.max(done, first); i < count; i++) view.log(`${name} | ${visibleName(tail[i - first] ?? '')}`);
    printed.set(vm.name, { at: a.at, count });
  };
  const latest = new Map<string, VmSnapshot>();
  // Called with every later snapshot of a VM; used to wait for a build to end.
  const waiters = new Map<string, (vm: VmSnapshot) => void>();
  const unsubscribe = port.subscribe((ev) => {
    if (ev.type !== 'snapshot') return;
    for (const vm of ev.snapshot.vms) {
      if (!unique.includes(vm.name)) continue;
      latest.set(vm.name, vm);
      view.update(vm);
      applyLines(vm);
      waiters.get(vm.name)?.(vm);
    }
  });
  const failures: string[] = [];
  const results = new Map<string, ActionResult>();

  const gone = agentGone(port, `building ${unique.join(', ')}`);
  const buildEnd = (name: string): Promise<VmSnapshot> =>
    Promise.race([
      gone.promise,
      new Promise<VmSnapshot>((resolve) => {
        waiters.set(name, (vm) => {
          if (vm.build.status === 'building') return;
          waiters.delete(name);
          resolve(vm);
        });
      }),
    ]);

  /** A build of this VM failed during this command (not some earlier one). */
  const failedNow = (vm: VmSnapshot | undefined): vm is VmSnapshot =>
    vm !== undefined && vm.build.status === 'failed' && (vm.build.finishedAt === null || vm.build.finishedAt >= t0);
  const buildFailureLines = (vm: VmSnapshot | undefined): string[] => {
    if (!failedNow(vm)) return [];
    const lines: string[] = [];
    if (vm.build.detail)
      lines.push(
        ...vm.build.detail
          .trimEnd()
          .split('\n')
          .map((l) => `  ${l}`),
      );
    if (vm.build.logPath)
      lines.push(`  full log: ${vm.build.logPath} (or \`nixvm logs ${commandName(vm.name)} --build\`)`);
    return lines;
  };
  const buildError = (vm: VmSnapshot): ActionResult['error'] => ({
    code: 'build-failed',
    message: vm.build.error ?? 'The build failed.',
    ...(vm.build.detail ? { detail: vm.build.detail } : {}),
    ...(vm.build.logPath ? { logPath: vm.build.logPath } : {}),
  });

  const one = async (name: string): Promise<number> => {
    // An apply's outcome is new when it is from this call (not an earlier one).
    const t0 = Date.now() - 1000;
    try {
      let vm = await interruptible(port.call(action, { vm: name }), signal);
      latest.set(name, vm);
      view.update(vm);
      applyLines(vm);
      // An agent may answer as soon as a build is under way (asked for, or the one a stale
      // start needs); the user asked to see it end.
      if (action !== 'stop' && vm.build.status === 'building') {
        vm = await interruptible(buildEnd(name), signal);
        view.update(vm);
      }
      const isBuild = action === 'build' || action === 'apply';
      if (vm.build.status === 'failed' && (isBuild || failedNow(vm))) {
        failures.push(`${visibleName(name)}: ${vm.build.error ?? 'the build failed.'}`, ...buildFailureLines(vm));
        results.set(name, { vm: name, ok: false, snapshot: vm, error: buildError(vm) });
        return EXIT.failed;
      }
      results.set(name, { vm: name, ok: true, snapshot: vm });
      if (action === 'build') view.log(`${visibleName(name)}: built${vm.builtOutPath ? ` ${vm.builtOutPath}` : ''}`);
      else if (action === 'apply' && vm.applied?.how === 'switch' && vm.applied.at >= t0)
        view.log(formatOutcome('switched in place', vm));
      else if (action === 'apply' && vm.applied?.how === 'restart' && vm.applied.at >= t0)
        view.log(`${formatOutcome('restarted', vm)}: ${vm.applied.reasons.join('; ')}`);
      else view.log(formatOutcome(DONE[action], vm));
      return EXIT.ok;
    } catch (err) {
      if (err instanceof Interrupted || agentErrorCode(err) === 'not-running') throw err;
      if (err instanceof CliError && err.exitCode === EXIT.notRunning) throw err;
      const { code, error } = jsonError(err, s.knownSocketPath());
      failures.push(`${visibleName(name)}: ${error.message}`);
      let fresh: VmSnapshot | undefined;
      if (action !== 'stop') {
        // The sentence says what failed; nix's own words are in the build's detail.
        const now = await port.call('snapshot', {}).catch(() => null);
        fresh = now?.vms.find((v) => v.name === name) ?? latest.get(name);
        applyLines(fresh);
        failures.push(...buildFailureLines(fresh));
      }
      results.set(name, {
        vm: name,
        ok: false,
        ...(fresh ? { snapshot: fresh } : {}),
        error: failedNow(fresh) ? { ...buildError(fresh)!, message: error.message } : error,
      });
      return code;
    }
  };

  const report = (): void => {
    if (opts.json)
      s.json(
        unique.map(
          (n) => results.get(n) ?? { vm: n, ok: false, error: { code: 'interrupted', message: 'Interrupted.' } },
        ),
      );
    else for (const l of failures) s.err(l);
  };

  try {
    const codes = await Promise.all(unique.map(one));
    view.stop();
    report();
    return codes.find((c) => c !== EXIT.ok) ?? EXIT.ok;
  } catch (err) {
    view.stop();
    if (err instanceof Interrupted) {
      report();
      return interrupted(s, unique, latest, opts.json === true);
    }
    throw err;
  } finally {
    gone.dispose();
    unsubscribe();
  }
}

/**
 * Ctrl-C while waiting on VMs. Builds in flight: on a terminal, ask once whether to cancel them
 * (a second Ctrl-C says yes); without one, leave them to the agent and say so.
 */
async function interrupted(s: Session, vms: string[], latest: Map<string, VmSnapshot>, json: boolean): Promise<number> {
  const building = vms.filter((n) => latest.get(n)?.build.status === 'building');
  const say = (line: string): void => {
    if (!json) s.err(line);
  };
  if (building.length === 0) {
    say(`Interrupted; the agent carries on with ${vms.map(visibleName).join(', ')} (\`nixvm watch\` follows it).`);
    return EXIT.interrupted;
  }
  const list = building.map(visibleName).join(', ');
  const cancelHint = `\`nixvm cancel ${building.map(shellWord).join(' ')}\` cancels ${building.length === 1 ? 'it' : 'them'}`;
  let off = (): void => {};
  const second = new Promise<'interrupt'>((resolve) => {
    off = s.io.onInterrupt(() => resolve('interrupt'));
  });
  let answer: Awaited<ReturnType<CliIo['confirm']>>;
  try {
    answer = json
      ? null
      : await Promise.race([s.io.confirm(`Cancel the build of ${list}? [y/N] (Ctrl-C again cancels) `), second]);
  } finally {
    off();
  }
  if (answer === 'yes' || answer === 'interrupt') {
    const port = await s.port();
    await Promise.allSettled(building.map((vm) => port.call('cancelBuild', { vm })));
    say(`Cancelled the build of ${list}.`);
    return EXIT.interrupted;
  }
  say(
    answer === null
      ? `Interrupted; the build of ${list} goes on in the agent (${cancelHint}, \`nixvm watch\` follows it).`
      : `Left the build of ${list} running in the agent; ${cancelHint}.`,
  );
  return EXIT.interrupted;
}

/** `nixvm cancel <vm…>`: stop the builds in flight (the VMs themselves are left alone). */
async function cmdCancel(s: Session, names: string[], opts: { json?: boolean; all?: boolean }): Promise<number> {
  const port = await s.port();
  const snap = await port.call('snapshot', {});
  const unique = targets(s, 'cancel', names, opts.all, snap);
  const results: ActionResult[] = [];
  for (const name of unique) {
    const was = snap.vms.find((v) => v.name === name)!.build.status === 'building';
    try {
      const vm = await port.call('cancelBuild', { vm: name });
      results.push({ vm: name, ok: true, snapshot: vm });
      if (!opts.json)
        s.out(was ? `${visibleName(name)}: build cancelled` : `${visibleName(name)}: no build was running`);
    } catch (err) {
      const { error } = jsonError(err, s.knownSocketPath());
      results.push({ vm: name, ok: false, error });
      if (!opts.json) s.err(`${visibleName(name)}: ${error.message}`);
    }
  }
  if (opts.json) s.json(results);
  else if (unique.length === 0) s.out('No build is running.');
  return results.every((r) => r.ok) ? EXIT.ok : EXIT.failed;
}

async function cmdReevaluate(s: Session, opts: { json?: boolean }): Promise<number> {
  const port = await s.port();
  const flakes = await interruptible(port.call('reevaluate', {}), s.io.signal);
  if (opts.json) s.json(flakes);
  else {
    const snap = await port.call('snapshot', {});
    for (const f of flakes) {
      const vms = snap.vms.filter((v) => v.flake === f.dir).length;
      const sentence = flakeSentence(f, s.io.now(), vms, commandName);
      // A flake that failed, or is still in its first evaluation, is its sentence alone.
      s.out(
        sentence && (f.error || f.state === 'evaluating')
          ? sentence
          : `${f.dir}: evaluated, ${vms} VM${vms === 1 ? '' : 's'}${sentence ? `. ${sentence}` : '.'}`,
      );
    }
    if (flakes.length === 0) s.out('No flake configured; add one with `nixvm flake add DIR`.');
  }
  return flakesFailed(flakes) ? EXIT.failed : EXIT.ok;
}

async function cmdIp(
  s: Session,
  name: string,
  opts: { ipv4?: boolean; ipv6?: boolean; json?: boolean },
): Promise<number> {
  const port = await s.port();
  const ips = await port.call('ips', { vm: name });
  // The link-local address follows from the MAC, but nothing answers on it unless the VM runs.
  const { vm } = await findVm(s, name);
  if (!isReachable(vm)) {
    throw new CliError(
      EXIT.failed,
      `${visibleName(name)} is ${vm.state}, so no address of it answers; start it with \`nixvm start ${commandName(name)}\`.`,
    );
  }
  const addr = opts.ipv4 ? ips.ipv4 : opts.ipv6 ? ips.ipv6 : (ips.ipv4 ?? ips.ipv6);
  if (!addr) {
    const which = opts.ipv4 ? 'IPv4 address' : opts.ipv6 ? 'IPv6 address' : 'IP address';
    const why = opts.ipv6
      ? 'it gets one from its MAC once the agent knows the bridge it runs on'
      : 'a VM gets one once it is running and its DHCP lease appears';
    throw new CliError(
      EXIT.failed,
      `${visibleName(name)} has no ${which} yet (${why}); see \`nixvm status ${commandName(name)}\`.`,
    );
  }
  // --json: both addresses, and the same exit code as the text form (a failure above is JSON too).
  if (opts.json) s.json(ips);
  else s.out(addr);
  return EXIT.ok;
}

/**
 * The ssh argv, rebuilt here from the destination the agent named (checked: addresses, paths, a
 * user, a port) with our own ssh and options: whatever answers on the socket, the CLI never runs
 * a command it was handed.
 */
async function sshFor(s: Session, name: string): Promise<{ argv: string[]; target: SshDestination }> {
  const r = await (await s.port()).call('sshCommand', { vm: name });
  try {
    const target = checkSshDestination(name, r.target);
    const route = checkRoute(target, r.route);
    return { argv: sshArgv(sshTargetFor(target, { nixvm: s.io.selfArgv, ...(route ? { route } : {}) })), target };
  } catch (err) {
    throw new CliError(EXIT.failed, err instanceof Error ? err.message : String(err));
  }
}

async function cmdSsh(
  s: Session,
  name: string,
  cmd: string[],
  opts: { start: boolean; timeout: string; verbose?: boolean },
): Promise<number> {
  const seconds = Number(opts.timeout);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600)
    throw new CliError(
      EXIT.usage,
      `--timeout needs a number of seconds up to 3600, not ${JSON.stringify(opts.timeout)}.`,
    );
  const { runSsh } = await import('./ssh.ts');
  return runSsh({
    vm: name,
    cmd,
    io: s.io,
    port: await s.port(),
    start: opts.start,
    timeoutMs: seconds * 1000,
    verbose: !!opts.verbose,
    // The start's progress goes to stderr: stdout is the remote command's alone.
    startVm: async () => {
      const progress = new Session({ ...s.io, stdout: s.io.stderr });
      progress.socketOverride = s.socketOverride;
      try {
        return await cmdAction(progress, 'start', [name], {});
      } finally {
        await progress.close();
      }
    },
    close: () => s.close(),
    noSuchVm: (snap) => noSuchVm(name, snap, s.io.now()),
  });
}

async function cmdProxy(
  s: Session,
  name: string | undefined,
  portArg: string | undefined,
  opts: { unix?: string },
): Promise<number> {
  const { runProxy } = await import('./ssh.ts');
  if (opts.unix) return runProxy({ io: s.io, socket: opts.unix });
  if (!name) throw new CliError(EXIT.usage, 'nixvm proxy needs a VM (or --unix <socket>).');
  if (portArg !== undefined && portArg !== '22')
    throw new CliError(
      EXIT.usage,
      `nixvm attaches only the guest's vsock port 22 (for sshd), not ${JSON.stringify(portArg)}.`,
    );
  const { target } = await sshFor(s, name);
  if (!target.vsock)
    throw new CliError(
      EXIT.failed,
      `${visibleName(name)} was not started with a vsock socket for ssh; restart it (\`nixvm restart ${commandName(name)}\`).`,
    );
  await s.close();
  return runProxy({ io: s.io, socket: target.vsock });
}

async function cmdConsole(
  s: Session,
  vm: string,
  opts: { start?: boolean; readOnly?: boolean; resize?: boolean; quietMs: string },
): Promise<number> {
  if (opts.readOnly && opts.resize)
    throw new CliError(
      EXIT.usage,
      '--resize types `stty` into the guest, which --read-only does not do; drop one of them.',
    );
  const quietMs = Number(opts.quietMs);
  if (!Number.isInteger(quietMs) || quietMs < 0 || quietMs > 600_000)
    throw new CliError(
      EXIT.usage,
      `--quiet-ms needs a whole number of milliseconds up to 600000, not ${JSON.stringify(opts.quietMs)}.`,
    );
  const port = await s.port();
  if (opts.start) {
    const snap = await interruptible(port.call('snapshot', {}), s.io.signal);
    const v = snap.vms.find((x) => x.name === vm);
    if (!v) throw noSuchVm(vm, snap, s.io.now());
    if (v.state !== 'running' && v.state !== 'starting') {
      // The start's progress goes to stderr: from a pipe, stdout is the guest's answers alone.
      const progress = new Session({ ...s.io, stdout: s.io.stderr });
      progress.socketOverride = s.socketOverride;
      try {
        const code = await cmdAction(progress, 'start', [vm], {});
        if (code !== EXIT.ok) return code;
      } finally {
        await progress.close();
      }
    }
  }
  const { runConsole } = await import('./console.ts');
  return runConsole({ vm, io: s.io, port, readOnly: !!opts.readOnly, resize: !!opts.resize, quietMs });
}

async function cmdSshCommand(s: Session, name: string, opts: { json?: boolean }): Promise<number> {
  const { argv, target } = await sshFor(s, name);
  const command = sshCommandLine(argv);
  if (opts.json) s.json({ argv, command, target });
  else s.out(command);
  return EXIT.ok;
}

/** Where nixvm's ssh config is and the Include line to add; nixvm never edits ~/.ssh/config itself. */
async function cmdSshConfig(s: Session, opts: { json?: boolean }): Promise<number> {
  const info = (await (await s.port()).call('snapshot', {})).agent.sshConfig;
  if (opts.json) {
    s.json(info);
    return EXIT.ok;
  }
  s.out(`nixvm's ssh config: ${info.path}`);
  if (info.status === 'included') s.out('~/.ssh/config already includes it: `ssh nixvm-<vm>` works.');
  else {
    const why =
      info.status === 'unreadable'
        ? ' (~/.ssh/config could not be read)'
        : info.status === 'missing'
          ? ' (there is no ~/.ssh/config yet)'
          : '';
    s.out(`To use \`ssh nixvm-<vm>\`, add this line at the top of ~/.ssh/config yourself${why}:`);
    s.out(`  ${info.includeLine}`);
  }
  return EXIT.ok;
}

/**
 * `nixvm ssh -v` means verbose, as `ssh -v` does; the program-wide `-v` (the version, which
 * Commander reads anywhere on the line) keeps its meaning everywhere else.
 */
export function sshVerbose(argv: readonly string[]): string[] {
  let cmd = 0;
  while (cmd < argv.length && argv[cmd]!.startsWith('-')) cmd += argv[cmd] === '--socket' ? 2 : 1;
  if (argv[cmd] !== 'ssh') return [...argv];
  const end = argv.indexOf('--', cmd);
  return argv.map((a, i) => (i > cmd && (end < 0 || i < end) && a === '-v' ? '--verbose' : a));
}

/** Lines already printed that `fresh` (a new tail) repeats: the index in `fresh` to go on from. */
export function resumeAt(printed: readonly string[], fresh: readonly string[]): number | null {
  if (printed.length === 0) return 0;
  const m = Math.min(20, printed.length);
  const key = printed.slice(-m);
  for (let end = fresh.length; end >= m; end--) {
    let same = true;
    for (let i = 0; i < m && same; i++) same = fresh[end - m + i] === key[i];
    if (same) return end;
  }
  return null;
}

/**
 * The last lines of a log, and with -f every new one, until Ctrl-C. When the agent goes away
 * (restarted, upgraded) the VM and its log are still there: -f waits for an agent to answer
 * again and goes on from the last line it printed.
 */
async function cmdLogs(
  s: Session,
  name: string,
  opts: { follow?: boolean; lines: number; build?: boolean; json?: boolean },
): Promise<number> {
  const kind: LogKind = opts.build ? 'build' : 'console';
  const printed: string[] = [];
  const emit = (lines: string[]): void => {
    for (const line of lines) {
      if (opts.json) s.jsonLine({ vm: name, kind, line });
      else s.io.stdout.write(`${line}\n`);
      printed.push(line);
    }
    if (printed.length > 200) printed.splice(0, printed.length - 200);
  };
  const empty = (): string =>
    kind === 'console'
      ? `${visibleName(name)} has no console output yet (it has not run since its log was made); \`nixvm start ${shellWord(name)}\` starts it.`
      : `${visibleName(name)} has no build log yet; \`nixvm build ${shellWord(name)}\` builds it.`;

  let port = await s.port();
  let first = true;
  for (;;) {
    let live = false;
    // Subscribe before reading the tail so nothing written in between is lost; lines that arrive
    // before the tail is read are already in it.
    const unsubscribe = opts.follow
      ? port.subscribe(
          (ev) => {
            if (live && ev.type === 'log' && ev.vm === name && ev.kind === kind) emit(ev.lines);
          },
          { logs: [{ vm: name, kind }] },
        )
      : () => {};
    try {
      const want = first ? Math.min(opts.lines, MAX_LOG_LINES) : 1000;
      const tail = await interruptible(port.call('logs', { vm: name, kind, lines: want }), s.io.signal);
      if (first) {
        if (opts.json && !opts.follow) s.json(tail);
        else emit(tail.lines);
        if (tail.lines.length === 0 && !opts.json && (opts.lines > 0 || tail.path === null)) {
          s.err(opts.follow ? `${empty()} Waiting for it (Ctrl-C stops).` : empty());
        }
      } else {
        const at = resumeAt(printed, tail.lines);
        if (at === null)
          s.err('nixvm: (more lines were written while the agent was away than it keeps; some may be missing)');
        emit(tail.lines.slice(at ?? 0));
      }
      first = false;
      if (!opts.follow) return EXIT.ok;
      live = true;
      if ((await untilInterruptedOrGone(port, s.io.signal)) === 'interrupted') return EXIT.ok;
    } catch (err) {
      if (err instanceof Interrupted) return EXIT.ok;
      if (agentErrorCode(err) !== 'not-running' || !opts.follow || first) throw err;
    } finally {
      unsubscribe();
    }
    // The agent went away; the VM (and its log) did not.
    s.err(
      `nixvm: the agent went away; ${visibleName(name)}'s ${kind} log goes on once one answers again (Ctrl-C stops).`,
    );
    for (;;) {
      await pause(500, s.io.signal);
      if (s.io.signal.aborted) return EXIT.ok;
      try {
        port = await s.reconnect();
        break;
      } catch (err) {
        if (agentErrorCode(err) !== 'not-running') throw err;
      }
    }
    s.err('nixvm: the agent is back.');
  }
}

async function cmdInspect(s: Session, name: string, opts: { json?: boolean }): Promise<number> {
  const r = await (await s.port()).call('inspect', { vm: name });
  if (opts.json) s.json({ spec: r.spec, argv: r.argv });
  else s.out(formatInspect(name, r.spec, r.argv));
  return EXIT.ok;
}

/**
 * State changes as they happen, until Ctrl-C. Human lines start with the time of day. --json is
 * one object per line: the whole snapshot first, then for each later snapshot only what changed
 * (`{"type":"change","at",…}`; `--full` prints whole snapshots instead), logs and notices as they are.
 */
async function cmdWatch(s: Session, opts: { json?: boolean; full?: boolean }): Promise<number> {
  const port = await s.port();
  let prev: AgentSnapshot | null = null;
  let ready = false;
  const pending: AgentEvent[] = [];
  const show = (ev: AgentEvent): void => {
    const at = s.io.now();
    if (opts.json) {
      if (ev.type === 'snapshot' && prev && !opts.full) {
        const change = snapshotChanges(prev, ev.snapshot);
        if (change) s.jsonLine({ type: 'change', at, ...change });
      } else s.jsonLine({ ...ev, at });
    } else for (const line of formatEvent(ev, prev)) s.io.stdout.write(`${timeOfDay(at)} ${line}\n`);
    if (ev.type === 'snapshot') prev = ev.snapshot;
  };
  const unsubscribe = port.subscribe((ev) => {
    if (ready) show(ev);
    else pending.push(ev);
  });
  try {
    // The current state first, so every later line is a change against something shown.
    const snap = await interruptible(port.call('snapshot', {}), s.io.signal);
    show({ type: 'snapshot', snapshot: snap });
    for (const ev of pending) if (ev.type !== 'snapshot') show(ev);
    ready = true;
    await untilInterrupted(port, s.io.signal, 'watching it');
    return EXIT.ok;
  } catch (err) {
    if (err instanceof Interrupted) return EXIT.ok;
    throw err;
  } finally {
    unsubscribe();
  }
}

async function cmdDaemon(s: Session, opts: { flake?: string[] }): Promise<number> {
  const flakes = opts.flake?.map((f) => path.resolve(s.io.cwd, f));
  // Without --socket the daemon places its socket itself (a planted short directory is passed over).
  const socketPath = s.socketOverride ? await s.socketPath() : undefined;
  return s.io.runDaemon({ ...(flakes ? { flakes } : {}), ...(socketPath ? { socketPath } : {}), io: s.io });
}

async function cmdLoginItem(s: Session, action: 'on' | 'off' | 'status', opts: { json?: boolean }): Promise<number> {
  const api = await s.io.loginItem();
  const status = action === 'on' ? await api.install() : action === 'off' ? await api.remove() : await api.status();
  if (action !== 'on') {
    if (opts.json) s.json(status);
    else s.out(formatLoginItem(status));
    return EXIT.ok;
  }
  // Which flakes the agent it starts will watch: the settings' (`daemon --flake` is for one run).
  const access = await settingsAccess(s);
  let flakes: string[];
  try {
    flakes = (await access.get()).flakes;
  } finally {
    access.close();
  }
  if (opts.json) s.json({ ...status, flakes });
  else {
    s.out(formatLoginItem(status));
    s.out(
      flakes.length
        ? `At login the agent watches ${flakes.join(', ')} (from the settings; \`nixvm flake add DIR\` adds one).`
        : 'At login the agent watches no flake yet: add one with `nixvm flake add DIR` (a `nixvm daemon --flake` is for that run only).',
    );
  }
  return EXIT.ok;
}

async function cmdDiskLs(s: Session, opts: { json?: boolean }): Promise<number> {
  const disks = await (await s.port()).call('disks', {});
  if (opts.json) s.json(disks);
  else s.out(formatDiskList(disks));
  return EXIT.ok;
}

/**
 * `disk reset`: asks first (unless --yes) when the VM is stopped; a running VM is the agent's to
 * refuse. --json prints the VM's snapshot after it; a "no" or no terminal to ask on is a failure
 * like any other (`{"error": …}` on stdout).
 */
async function cmdDiskReset(s: Session, name: string, opts: { yes?: boolean; json?: boolean }): Promise<number> {
  const port = await s.port();
  const snap = await port.call('snapshot', {});
  const vm = snap.vms.find((v) => v.name === name);
  // A VM no flake defines any more has no snapshot, only its image's row in `disk ls`.
  const orphan = vm
    ? undefined
    : (await port.call('disks', {})).find((d) => d.role === 'writable-store' && d.orphan && d.vms[0] === name);
  if (!vm && !orphan) throw noSuchVm(name, snap, s.io.now());
  const shown = visibleName(name);
  const stopped = !vm || vm.state === 'stopped' || vm.state === 'crashed';
  const img = orphan ?? vm?.disks?.images.find((d) => d.role === 'writable-store');
  if (stopped && img && !opts.yes) {
    const question = `Delete the writable store image of ${shown} (${visibleName(img.path)}, ${formatBytes(img.allocatedBytes)} on disk)? Everything ${shown} keeps in its writable Nix store is lost. [y/N] `;
    const answer = await s.io.confirm(question);
    if (answer === null) {
      throw new CliError(
        EXIT.usage,
        `nixvm disk reset deletes everything ${shown} keeps in its writable Nix store; run it in a terminal to be asked, or pass --yes.`,
      );
    }
    if (answer !== 'yes') throw new CliError(EXIT.failed, 'Nothing was deleted.');
  }
  const after = await port.call('diskReset', { vm: name });
  if (opts.json) {
    s.json(after);
    return EXIT.ok;
  }
  if (!after) {
    s.out(`${shown}: writable store image deleted (no flake defines ${shown} any more).`);
    return EXIT.ok;
  }
  const size = after.spec?.writableStore?.sizeMiB;
  s.out(`${shown}: writable store image deleted; its next start makes a new one${size ? ` of ${size} MiB` : ''}.`);
  return EXIT.ok;
}

/** `disk grow`: --json prints the VM's snapshot after it. */
async function cmdDiskGrow(s: Session, name: string, opts: { json?: boolean }): Promise<number> {
  const after = await (await s.port()).call('diskGrow', { vm: name });
  if (opts.json) {
    s.json(after);
    return EXIT.ok;
  }
  const img = after.disks?.images.find((d) => d.role === 'writable-store');
  s.out(
    `${visibleName(name)}: writable store image grown${img ? ` to ${formatBytes(img.apparentBytes)}` : ''} (sparse).`,
  );
  return EXIT.ok;
}

async function cmdDoctor(s: Session, opts: { json?: boolean }): Promise<number> {
  const port = await s.maybePort();
  const report: DoctorReport = port ? await port.call('doctor', {}) : await s.io.doctorHere(s.io.env);
  if (opts.json) s.json({ ...report, agent: port !== null });
  else {
    if (!port) s.out('(No agent is running: checked from here; start one for the checks of its VMs.)');
    s.out(formatDoctor(report, s.width, s.paint));
  }
  return report.checks.some((c) => c.status === 'fail') ? EXIT.failed : EXIT.ok;
}

async function cmdComplete(s: Session, program: Command, words: string[]): Promise<number> {
  for (const c of await completions(program, words, { vmNames: () => vmNamesForCompletion(s), cwd: s.io.cwd }))
    s.out(c);
  return EXIT.ok;
}

/** VM names from the agent when it runs; none (and no complaint) when it does not. */
async function vmNamesForCompletion(s: Session): Promise<string[]> {
  try {
    const port = await s.port();
    return (await port.call('snapshot', {})).vms.map((v) => v.name);
  } catch {
    return [];
  }
}

// ─── wiring ──────────────────────────────────────────────────────────────────────────────────

const VM_ACTIONS: [VmAction, string][] = [
  ['start', 'start VMs (building first when their closure is stale or missing)'],
  ['stop', 'stop VMs (ACPI shutdown, then harder)'],
  ['restart', 'stop, then start VMs'],
  ['build', "build VMs' closures without starting them"],
  ['apply', 'rebuild VMs and bring the running ones onto the new closure: switch in place when possible, else restart'],
];

export function buildProgram(s: Session, setCode: (c: number) => void): Command {
  const io = s.io;
  const program = new Command('nixvm');
  program
    .description('Run the NixOS VMs a Nix flake defines (vfkit + Rosetta), through the NixVM agent.')
    .version(pkg.version, '-v, --version')
    .option('--socket <path>', "the agent's control socket (default: in the NixVM state dir)")
    .addHelpText('after', `\n${EXIT_CODES_HELP}`)
    .exitOverride()
    .configureOutput({
      writeOut: (str) => io.stdout.write(str),
      writeErr: (str) => {
        // JSON mode: the usage error becomes the JSON error (main prints it).
        if (s.jsonMode) s.usageText += str;
        else io.stderr.write(str);
      },
      getOutHelpWidth: () => io.stdout.columns ?? 80,
      getErrHelpWidth: () => io.stderr.columns ?? 80,
    })
    .showSuggestionAfterError(true);
  program.hook('preAction', (thisCommand) => {
    s.socketOverride = thisCommand.opts<{ socket?: string }>().socket;
  });

  // Every action reports its exit code through setCode; commander only parses.
  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      setCode(await fn(...args));
    };
  const json = (what = 'print JSON instead of text'): Option => new Option('--json', what);
  const all = (what: string): Option => new Option('--all', what);

  program
    .command('ls')
    .alias('list')
    .description('list the VMs: name, state, stale, cpus/memory, IP; then what is up with each flake')
    .addOption(json('print {"vms": [...], "flakes": [...], "problems": [...]}'))
    .action(act((opts: { json?: boolean }) => cmdLs(s, opts)));

  program
    .command('status')
    .description('everything about one VM: state, closures, addresses, ssh, logs, last exit, build')
    .argument('<vm>')
    .addOption(json())
    .action(act((vm: string, opts: { json?: boolean }) => cmdStatus(s, vm, opts)));

  const allWhat: Record<VmAction, string> = {
    start: 'every VM that is not running',
    stop: 'every running VM',
    restart: 'every running VM',
    build: 'every VM',
    apply: 'every VM',
  };
  for (const [name, description] of VM_ACTIONS) {
    program
      .command(name)
      .description(description)
      .argument('[vm...]')
      .addOption(all(allWhat[name]))
      .addOption(json('print one result per VM: [{"vm", "ok", "snapshot"|"error"}]'))
      .action(act((vms: string[], opts: { json?: boolean; all?: boolean }) => cmdAction(s, name, vms, opts)));
  }

  program
    .command('cancel')
    .description('cancel the builds of VMs (the app and the API can too); the VMs are left as they are')
    .argument('[vm...]')
    .addOption(all('every build in flight'))
    .addOption(json())
    .action(act((vms: string[], opts: { json?: boolean; all?: boolean }) => cmdCancel(s, vms, opts)));

  program
    .command('reevaluate')
    .description('evaluate every flake again now (after fixing the network, say)')
    .addOption(json())
    .action(act((opts: { json?: boolean }) => cmdReevaluate(s, opts)));

  program
    .command('ip')
    .description("print a VM's address (IPv4 when known, else the link-local IPv6)")
    .argument('<vm>')
    .addOption(new Option('-4, --ipv4', 'only the IPv4 address').conflicts('ipv6'))
    .addOption(new Option('-6, --ipv6', 'only the IPv6 address').conflicts('ipv4'))
    .addOption(json())
    .action(act((vm: string, opts: { ipv4?: boolean; ipv6?: boolean; json?: boolean }) => cmdIp(s, vm, opts)));

  program
    .command('ssh')
    .description(
      "ssh into a VM with nixvm's key: starts it, waits for its sshd (vsock, else its address); arguments after -- run there",
    )
    .argument('<vm>')
    .argument('[cmd...]', 'command to run in the VM (after --); its exit code is ours')
    .option('--no-start', 'refuse instead of starting a stopped VM')
    .option('--timeout <seconds>', 'how long to wait for sshd', '60')
    .option('-v, --verbose', 'say which way (vsock, IPv4, IPv6) ssh connects')
    .action(
      act((vm: string, cmd: string[], opts: { start: boolean; timeout: string; verbose?: boolean }) =>
        cmdSsh(s, vm, cmd, opts),
      ),
    );

  program
    .command('proxy')
    .description("ssh's ProxyCommand: joins stdin and stdout to a VM's vsock port 22")
    .argument('[vm]')
    .argument('[port]', 'the guest vsock port (22)')
    .option('--unix <socket>', 'the vsock socket itself (what generated ssh commands use; no agent needed)')
    .action(
      act((vm: string | undefined, port: string | undefined, opts: { unix?: string }) => cmdProxy(s, vm, port, opts)),
    );

  program
    .command('console')
    .description(`the VM's serial console on this terminal (detach with Ctrl-]); from a pipe, types what comes in`)
    .argument('<vm>')
    .option('--start', 'start the VM first when it is not running')
    .option('--read-only', 'watch without typing')
    .option(
      '--resize',
      "type `stty rows R cols C` into the guest's shell (at its prompt, with nothing typed on the line) when attaching and after each resize; without it nixvm only prints that line",
    )
    .option('--quiet-ms <ms>', 'from a pipe: end once the guest is quiet this long after the input ended', '1000')
    .action(
      act((vm: string, opts: { start?: boolean; readOnly?: boolean; resize?: boolean; quietMs: string }) =>
        cmdConsole(s, vm, opts),
      ),
    );

  program
    .command('ssh-command')
    .description('print the ssh command line for a VM, quoted, ready to paste')
    .argument('<vm>')
    .addOption(json())
    .action(act((vm: string, opts: { json?: boolean }) => cmdSshCommand(s, vm, opts)));

  program
    .command('ssh-config')
    .description("where nixvm's ssh config (one Host nixvm-<vm> per VM) is, and the Include line to add")
    .addOption(json())
    .action(act((opts: { json?: boolean }) => cmdSshConfig(s, opts)));

  program
    .command('logs')
    .description("print the last lines of a VM's serial console (or build) log")
    .argument('<vm>')
    .option('-f, --follow', 'keep printing new lines until Ctrl-C (also across an agent restart)')
    .option('-n, --lines <n>', 'how many lines', parseCount, 50)
    .option('--build', "the last build's log instead of the console")
    .addOption(json())
    .action(
      act((vm: string, opts: { follow?: boolean; lines: number; build?: boolean; json?: boolean }) =>
        cmdLogs(s, vm, opts),
      ),
    );

  program
    .command('inspect')
    .description("the VM's spec and the exact vfkit command the agent runs for it")
    .argument('<vm>')
    .addOption(json())
    .action(act((vm: string, opts: { json?: boolean }) => cmdInspect(s, vm, opts)));

  program
    .command('watch')
    .description('print state changes, build progress and notices as they happen (timestamped), until Ctrl-C')
    .addOption(json('one JSON object per line: the snapshot, then only what changed'))
    .addOption(new Option('--full', 'with --json: every snapshot whole instead of what changed'))
    .action(act((opts: { json?: boolean; full?: boolean }) => cmdWatch(s, opts)));

  registerSettingsCommands(program, s, act);
  registerBuilderCommands(program, s, act);

  program
    .command('doctor')
    .description('check what nixvm needs (nix, vfkit, macOS, Rosetta, a Linux builder, …) and say what to fix')
    .addOption(json())
    .action(act((opts: { json?: boolean }) => cmdDoctor(s, opts)));

  const disk = program.command('disk').description("the VMs' disk images: list, reset or grow them");
  disk
    .command('ls')
    .alias('list')
    .description('every disk image in the state dir (store images, writable stores), those no VM uses included')
    .addOption(json())
    .action(act((opts: { json?: boolean }) => cmdDiskLs(s, opts)));
  disk
    .command('reset')
    .description("delete a stopped VM's writable store image (its next start makes a new one); asks first")
    .argument('<vm>')
    .option('-y, --yes', 'do not ask')
    .addOption(json("print the VM's snapshot after the reset"))
    .action(act((vm: string, opts: { yes?: boolean; json?: boolean }) => cmdDiskReset(s, vm, opts)));
  disk
    .command('grow')
    .description("grow a stopped VM's writable store image to its virtualisation.diskSize (sparse)")
    .argument('<vm>')
    .addOption(json("print the VM's snapshot after growing it"))
    .action(act((vm: string, opts: { json?: boolean }) => cmdDiskGrow(s, vm, opts)));

  program
    .command('daemon')
    .description('run a headless agent in the foreground (VMs keep running when it stops)')
    .option(
      '--flake <dir...>',
      'flake directories to run too, for this run only (`nixvm flake add` keeps one in the settings)',
    )
    .action(act((opts: { flake?: string[] }) => cmdDaemon(s, opts)));

  program
    .command('login-item')
    .description('start the agent at login (launchd): on, off, or status')
    .addArgument(new Argument('<action>').choices(['on', 'off', 'status']))
    .addOption(json())
    .action(act((action: 'on' | 'off' | 'status', opts: { json?: boolean }) => cmdLoginItem(s, action, opts)));

  program
    .command('completion')
    .description('print the shell completion script: nixvm completion bash|zsh|fish (see the README to install it)')
    .addArgument(new Argument('<shell>').choices([...SHELLS]))
    .action(
      act(async (shell: Shell) => {
        s.out(completionScript(shell, io.selfArgv));
        return EXIT.ok;
      }),
    );

  program
    .command('__complete', { hidden: true })
    .argument('[words...]')
    .allowUnknownOption()
    .helpOption(false)
    .action(act((words: string[]) => cmdComplete(s, program, words)));

  return program;
}

/**
 * Run `nixvm` with `argv` (the arguments after the program name) and return the exit code.
 * Anything not given in `io` comes from the real process (terminal, env, control socket).
 */
export async function main(argv: string[], io: Partial<CliIo> = {}): Promise<number> {
  const full: CliIo = { ...defaultIo(), ...io };
  const s = new Session(full);
  const ddash = argv.indexOf('--');
  s.jsonMode = (ddash < 0 ? argv : argv.slice(0, ddash)).includes('--json') && argv[0] !== '__complete';
  let code: number = EXIT.ok;
  const program = buildProgram(s, (c) => {
    code = c;
  });
  if (argv.length === 0) {
    // No command: the help, on stderr, and the usage code (documented in the help itself).
    full.stderr.write(program.helpInformation());
    full.stderr.write(`\n${EXIT_CODES_HELP}\n`);
    return EXIT.usage;
  }
  // -V was the version flag before -v; keep it working.
  const args = sshVerbose(argv[0] === '-V' ? ['--version', ...argv.slice(1)] : argv);
  try {
    await program.parseAsync(args, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (or the help).
      if (['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code) && err.exitCode === 0) {
        return EXIT.ok;
      }
      if (s.jsonMode) {
        const message = (s.usageText || err.message)
          .trim()
          .split('\n')[0]!
          .replace(/^error:\s*/, '');
        s.json({ error: { code: 'usage', message: message.charAt(0).toUpperCase() + message.slice(1) } });
      }
      return EXIT.usage;
    }
    const { code: exit, error } = jsonError(err, s.knownSocketPath());
    if (s.jsonMode) s.json({ error });
    else if (error.message) s.err(exit === EXIT.interrupted ? error.message : `nixvm: ${error.message}`);
    return exit;
  } finally {
    await s.close();
  }
}
