/**
 * The `nixvm` command line: commander wiring over an AgentPort. Every command talks to the agent
 * through the contract in src/api (nothing here knows how VMs run); what it prints comes from the
 * pure formatters in format.ts. `main()` returns the exit code instead of exiting, so tests drive
 * it with a scripted port and read what it wrote.
 */
import path from 'node:path';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { AgentEvent, AgentSnapshot, LogKind, VmSnapshot } from '../api/types.ts';
import pkg from '../../package.json' with { type: 'json' };
import { agentErrorCode } from '../api/errors.ts';
import { MAX_LOG_LINES } from '../api/validate.ts';
import { checkSshDestination, sshArgvFor, sshCommandLine, type SshDestination } from '../core/net/ssh.ts';
import { CliError, EXIT, EXIT_CODES_HELP, Interrupted, describeError } from './errors.ts';
import {
  commandName,
  formatBytes,
  formatDiskList,
  formatEvent,
  formatInspect,
  formatLoginItem,
  formatOutcome,
  formatStatus,
  formatVmTable,
  visibleName,
  visibleText,
} from './format.ts';
import { defaultIo } from './default-io.ts';
import type { CliIo, CliPort } from './io.ts';
import { createProgressView, type BuildProgressView } from './progress.ts';

export { EXIT } from './errors.ts';
export type { CliIo, CliOutput, CliPort } from './io.ts';

/** One invocation: the io, the socket to use, and the agent connection (opened on first use). */
class Session {
  readonly io: CliIo;
  socketOverride: string | undefined;
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

  port(): Promise<CliPort> {
    this.#port ??= this.socketPath().then((p) => this.io.connect(p));
    return this.#port;
  }

  async close(): Promise<void> {
    if (!this.#port) return;
    const port = await this.#port.catch(() => null);
    await port?.close?.();
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

/**
 * Rejects when the agent drops the connection (it quit or crashed): a command that waits on
 * events would otherwise wait forever. Never resolves.
 */
function agentGone(port: CliPort, what: string): { promise: Promise<never>; dispose: () => void } {
  let dispose = (): void => {};
  const promise = new Promise<never>((_, reject) => {
    dispose =
      port.onClose?.((err) => {
        if (err)
          reject(
            new CliError(
              EXIT.notRunning,
              `The nixvm agent went away while ${what}; start it again with \`nixvm daemon\` or open NixVM.app.`,
            ),
          );
      }) ?? dispose;
  });
  promise.catch(() => {});
  return { promise, dispose: () => dispose() };
}

/** Wait for Ctrl-C, or fail if the agent goes away first. */
async function untilInterrupted(port: CliPort, signal: AbortSignal, what: string): Promise<void> {
  const gone = agentGone(port, what);
  try {
    await Promise.race([aborted(signal), gone.promise]);
  } finally {
    gone.dispose();
  }
}

function noSuchVm(name: string, snap: AgentSnapshot): CliError {
  const known = snap.vms.map((v) => visibleName(v.name));
  const hint = known.length ? `known VMs: ${known.join(', ')}` : 'the agent knows no VMs yet';
  return new CliError(EXIT.noSuchVm, `No VM named "${visibleName(name)}" (${hint}).`);
}

async function findVm(s: Session, name: string): Promise<{ snap: AgentSnapshot; vm: VmSnapshot }> {
  const snap = await (await s.port()).call('snapshot', {});
  const vm = snap.vms.find((v) => v.name === name);
  if (!vm) throw noSuchVm(name, snap);
  return { snap, vm };
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError('Give a whole number of lines, 0 or more.');
  }
  return n;
}

// ─── commands ────────────────────────────────────────────────────────────────────────────────

async function cmdLs(s: Session, opts: { json?: boolean }): Promise<number> {
  const snap = await (await s.port()).call('snapshot', {});
  if (opts.json) s.json(snap.vms);
  else s.out(formatVmTable(snap, s.io.stdout.columns));
  return EXIT.ok;
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

/**
 * start|stop|restart|build|apply on one or more VMs, side by side. Builds (asked for, or the
 * one a stale start needs) show live progress from the agent's snapshot events. Unknown names
 * are refused before anything happens.
 */
async function cmdAction(s: Session, action: VmAction, names: string[]): Promise<number> {
  const port = await s.port();
  const signal = s.io.signal;
  const t0 = s.io.now();
  const unique = [...new Set(names)];
  const snap = await interruptible(port.call('snapshot', {}), signal);
  for (const n of unique) if (!snap.vms.some((v) => v.name === n)) throw noSuchVm(n, snap);

  const view: BuildProgressView = createProgressView(s.io.stdout);
  const latest = new Map<string, VmSnapshot>();
  // Called with every later snapshot of a VM; used to wait for a build to end.
  const waiters = new Map<string, (vm: VmSnapshot) => void>();
  const unsubscribe = port.subscribe((ev) => {
    if (ev.type !== 'snapshot') return;
    for (const vm of ev.snapshot.vms) {
      if (!unique.includes(vm.name)) continue;
      latest.set(vm.name, vm);
      view.update(vm);
      waiters.get(vm.name)?.(vm);
    }
  });
  const failures: string[] = [];

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

  /** The build detail to show for a failure, when a build failed during this command. */
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

  const one = async (name: string): Promise<number> => {
    try {
      let vm = await interruptible(port.call(action, { vm: name }), signal);
      view.update(vm);
      // An agent may answer as soon as a build is under way (asked for, or the one a stale
      // start needs); the user asked to see it end.
      if (action !== 'stop' && vm.build.status === 'building') {
        vm = await interruptible(buildEnd(name), signal);
        view.update(vm);
      }
      const isBuild = action === 'build' || action === 'apply';
      if (vm.build.status === 'failed' && (isBuild || failedNow(vm))) {
        failures.push(`${visibleName(name)}: ${vm.build.error ?? 'the build failed.'}`, ...buildFailureLines(vm));
        return EXIT.failed;
      }
      if (action === 'build') {
        view.log(`${visibleName(name)}: built${vm.builtOutPath ? ` ${vm.builtOutPath}` : ''}`);
      } else {
        view.log(formatOutcome(DONE[action], vm));
      }
      return EXIT.ok;
    } catch (err) {
      if (err instanceof Interrupted || agentErrorCode(err) === 'not-running') throw err;
      if (err instanceof CliError && err.exitCode === EXIT.notRunning) throw err;
      const { code, message } = describeError(err, s.knownSocketPath());
      failures.push(`${visibleName(name)}: ${message}`);
      if (action !== 'stop') {
        // The sentence says what failed; nix's own words are in the build's detail.
        const fresh = await port.call('snapshot', {}).catch(() => null);
        failures.push(...buildFailureLines(fresh?.vms.find((v) => v.name === name) ?? latest.get(name)));
      }
      return code;
    }
  };

  try {
    const codes = await Promise.all(unique.map(one));
    view.stop();
    for (const l of failures) s.err(l);
    return codes.find((c) => c !== EXIT.ok) ?? EXIT.ok;
  } catch (err) {
    view.stop();
    for (const l of failures) s.err(l);
    if (err instanceof Interrupted) {
      s.err(
        `Interrupted; the agent carries on with ${unique.map(visibleName).join(', ')} (\`nixvm watch\` follows it).`,
      );
      return EXIT.interrupted;
    }
    throw err;
  } finally {
    gone.dispose();
    unsubscribe();
  }
}

async function cmdIp(
  s: Session,
  name: string,
  opts: { ipv4?: boolean; ipv6?: boolean; json?: boolean },
): Promise<number> {
  const ips = await (await s.port()).call('ips', { vm: name });
  if (opts.json) {
    s.json(ips);
    return EXIT.ok;
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
  s.out(addr);
  return EXIT.ok;
}

/**
 * The ssh argv, rebuilt here from the destination the agent named (checked: an address, a user,
 * a port) with our own ssh and options: whatever answers on the socket, the CLI never runs a
 * command it was handed.
 */
async function sshFor(s: Session, name: string): Promise<{ argv: string[]; target: SshDestination }> {
  const r = await (await s.port()).call('sshCommand', { vm: name });
  try {
    const target = checkSshDestination(name, r.target);
    return { argv: sshArgvFor(name, target, 'ssh'), target };
  } catch (err) {
    throw new CliError(EXIT.failed, err instanceof Error ? err.message : String(err));
  }
}

async function cmdSsh(s: Session, name: string, cmd: string[]): Promise<number> {
  const { argv } = await sshFor(s, name);
  // Done with the agent: ssh may run for hours and needs nothing from it.
  await s.close();
  return s.io.exec([...argv, ...cmd]);
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

async function cmdLogs(
  s: Session,
  name: string,
  opts: { follow?: boolean; lines: number; build?: boolean; json?: boolean },
): Promise<number> {
  const port = await s.port();
  const kind: LogKind = opts.build ? 'build' : 'console';
  let live = false;
  const emit = (lines: string[]): void => {
    if (opts.json) for (const line of lines) s.io.stdout.write(`${JSON.stringify({ vm: name, kind, line })}\n`);
    else for (const line of lines) s.io.stdout.write(`${line}\n`);
  };
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
    const tail = await interruptible(
      port.call('logs', { vm: name, kind, lines: Math.min(opts.lines, MAX_LOG_LINES) }),
      s.io.signal,
    );
    if (opts.json && !opts.follow) s.json(tail);
    else emit(tail.lines);
    if (!opts.follow) {
      if (!opts.json && tail.path === null && tail.lines.length === 0) {
        s.err(`${visibleName(name)} has no ${kind} log yet.`);
      }
      return EXIT.ok;
    }
    live = true;
    await untilInterrupted(port, s.io.signal, `following ${name}'s ${kind} log`);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof Interrupted) return EXIT.ok;
    throw err;
  } finally {
    unsubscribe();
  }
}

async function cmdInspect(s: Session, name: string, opts: { json?: boolean }): Promise<number> {
  const r = await (await s.port()).call('inspect', { vm: name });
  if (opts.json) s.json({ spec: r.spec, argv: r.argv });
  else s.out(formatInspect(name, r.spec, r.argv));
  return EXIT.ok;
}

async function cmdWatch(s: Session, opts: { json?: boolean }): Promise<number> {
  const port = await s.port();
  let prev: AgentSnapshot | null = null;
  let ready = false;
  const pending: AgentEvent[] = [];
  const show = (ev: AgentEvent): void => {
    if (opts.json) s.io.stdout.write(`${JSON.stringify(ev)}\n`);
    else for (const line of formatEvent(ev, prev)) s.io.stdout.write(`${line}\n`);
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
  if (opts.json) s.json(status);
  else s.out(formatLoginItem(status));
  return EXIT.ok;
}

async function cmdDiskLs(s: Session, opts: { json?: boolean }): Promise<number> {
  const disks = await (await s.port()).call('disks', {});
  if (opts.json) s.json(disks);
  else s.out(formatDiskList(disks));
  return EXIT.ok;
}

/** `disk reset`: asks first (unless --yes) when the VM is stopped; a running VM is the agent's to refuse. */
async function cmdDiskReset(s: Session, name: string, opts: { yes?: boolean }): Promise<number> {
  const port = await s.port();
  const { vm } = await findVm(s, name);
  const stopped = vm.state === 'stopped' || vm.state === 'crashed';
  const img = vm.disks?.images.find((d) => d.role === 'writable-store');
  if (stopped && img && !opts.yes) {
    const question = `Delete the writable store image of ${name} (${img.path}, ${formatBytes(img.allocatedBytes)} on disk)? Everything ${name} keeps in its writable Nix store is lost. [y/N] `;
    const answer = s.io.confirm ? await s.io.confirm(question) : null;
    if (answer === null) {
      throw new CliError(
        EXIT.usage,
        `nixvm disk reset deletes everything ${name} keeps in its writable Nix store; run it in a terminal to be asked, or pass --yes.`,
      );
    }
    if (!answer) {
      s.err('Nothing was deleted.');
      return EXIT.failed;
    }
  }
  const after = await port.call('diskReset', { vm: name });
  const size = after.spec?.writableStore?.sizeMiB;
  s.out(`${name}: writable store image deleted; its next start makes a new one${size ? ` of ${size} MiB` : ''}.`);
  return EXIT.ok;
}

async function cmdDiskGrow(s: Session, name: string): Promise<number> {
  const after = await (await s.port()).call('diskGrow', { vm: name });
  const img = after.disks?.images.find((d) => d.role === 'writable-store');
  s.out(`${name}: writable store image grown${img ? ` to ${formatBytes(img.apparentBytes)}` : ''} (sparse).`);
  return EXIT.ok;
}

// ─── wiring ──────────────────────────────────────────────────────────────────────────────────

function buildProgram(s: Session, setCode: (c: number) => void): Command {
  const io = s.io;
  const program = new Command('nixvm');
  program
    .description('Run the NixOS VMs a Nix flake defines (vfkit + Rosetta), through the NixVM agent.')
    .version(pkg.version, '-V, --version')
    .option('--socket <path>', "the agent's control socket (default: in the NixVM state dir)")
    .addHelpText('after', `\n${EXIT_CODES_HELP}`)
    .exitOverride()
    .configureOutput({
      writeOut: (str) => io.stdout.write(str),
      writeErr: (str) => io.stderr.write(str),
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
  const json = (): Option => new Option('--json', 'print JSON instead of text');

  program
    .command('ls')
    .alias('list')
    .description('list the VMs: name, state, stale, cpus/memory, IP; then flake errors and warnings')
    .addOption(json())
    .action(act((opts: { json?: boolean }) => cmdLs(s, opts)));

  program
    .command('status')
    .description('everything about one VM: state, closures, addresses, ssh, logs, last exit, build')
    .argument('<vm>')
    .addOption(json())
    .action(act((vm: string, opts: { json?: boolean }) => cmdStatus(s, vm, opts)));

  const actions: [VmAction, string][] = [
    ['start', 'start VMs (building first when their closure is stale or missing)'],
    ['stop', 'stop VMs (ACPI shutdown, then harder)'],
    ['restart', 'stop, then start VMs'],
    ['build', "build VMs' closures without starting them"],
    ['apply', 'rebuild VMs and restart the running ones on the new closure'],
  ];
  for (const [name, description] of actions) {
    program
      .command(name)
      .description(description)
      .argument('<vm...>')
      .action(act((vms: string[]) => cmdAction(s, name, vms)));
  }

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
    .description('ssh into a VM (arguments after -- run as a command there)')
    .argument('<vm>')
    .argument('[cmd...]', 'command to run in the VM (after --)')
    .action(act((vm: string, cmd: string[]) => cmdSsh(s, vm, cmd)));

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
    .option('-f, --follow', 'keep printing new lines until Ctrl-C')
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
    .description('print state changes, build progress and notices as they happen, until Ctrl-C')
    .addOption(new Option('--json', 'print one JSON event per line'))
    .action(act((opts: { json?: boolean }) => cmdWatch(s, opts)));

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
    .action(act((vm: string, opts: { yes?: boolean }) => cmdDiskReset(s, vm, opts)));
  disk
    .command('grow')
    .description("grow a stopped VM's writable store image to its virtualisation.diskSize (sparse)")
    .argument('<vm>')
    .action(act((vm: string) => cmdDiskGrow(s, vm)));

  program
    .command('daemon')
    .description('run a headless agent in the foreground (VMs keep running when it stops)')
    .option('--flake <dir...>', 'flake directories to run (default: the ones in settings)')
    .action(act((opts: { flake?: string[] }) => cmdDaemon(s, opts)));

  program
    .command('login-item')
    .description('start the agent at login (launchd): on, off, or status')
    .addArgument(new Argument('<action>').choices(['on', 'off', 'status']))
    .addOption(json())
    .action(act((action: 'on' | 'off' | 'status', opts: { json?: boolean }) => cmdLoginItem(s, action, opts)));

  return program;
}

/**
 * Run `nixvm` with `argv` (the arguments after the program name) and return the exit code.
 * Anything not given in `io` comes from the real process (terminal, env, control socket).
 */
export async function main(argv: string[], io: Partial<CliIo> = {}): Promise<number> {
  const full: CliIo = { ...defaultIo(), ...io };
  const s = new Session(full);
  let code: number = EXIT.ok;
  const program = buildProgram(s, (c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (or the help).
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok;
      return EXIT.usage;
    }
    const { code: exit, message } = describeError(err, s.knownSocketPath());
    if (message) s.err(exit === EXIT.interrupted ? message : `nixvm: ${message}`);
    return exit;
  } finally {
    await s.close();
  }
}
