/**
 * What the CLI needs from the world, injected so `main()` runs the same against a terminal and
 * against a test: output streams, the environment, how to reach the agent, how to hand the
 * terminal to ssh, and the signal that Ctrl-C raises.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import type { AgentPort, DoctorReport, Settings, SshDestination, SshRoute } from '../api/types.ts';
import type { LoginItemStatus } from '../host/launchd.ts';
import { resolveProgram } from '../host/runner.ts';

export interface CliOutput {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
  /** A terminal's rows (`nixvm console` tells the guest its size). */
  rows?: number;
  /** The terminal was resized (SIGWINCH); returns the unsubscribe. */
  onResize?(fn: () => void): () => void;
  /** The real terminal stream, when there is one (the progress bar draws on it). */
  stream?: NodeJS.WriteStream;
}

/** Standard input, for `nixvm console`. */
export interface CliInput {
  isTTY: boolean;
  /** A terminal's raw mode (keys one by one, no echo, Ctrl-C as a byte); no-op without a terminal. */
  setRaw(on: boolean): void;
  onData(fn: (chunk: Buffer) => void): () => void;
  onEnd(fn: () => void): () => void;
}

/** A connection to the agent: the contract's port, plus closing it when the command is done. */
export interface CliPort extends AgentPort {
  close?(): void | Promise<void>;
  /** Called once when the connection ends; `err` is set when the agent went away (not our close). */
  onClose?(fn: (err: Error | null) => void): () => void;
}

export interface LoginItemApi {
  install(): Promise<LoginItemStatus>;
  remove(): Promise<LoginItemStatus>;
  status(): Promise<LoginItemStatus>;
}

/** settings.json itself, for when no agent runs (validated by the same schema; the agent reads it when it starts). */
export interface SettingsFile {
  path: string;
  get(): Settings;
  update(patch: Partial<Settings>): Settings;
  close(): void;
}

/** The answer to a yes/no question on the terminal; 'interrupt' when Ctrl-C answered it. */
export type Answer = 'yes' | 'no' | 'interrupt';

export interface CliIo {
  stdout: CliOutput;
  stderr: CliOutput;
  /** Absent: nothing to read (tests, and commands that never read). */
  stdin?: CliInput;
  env: NodeJS.ProcessEnv;
  cwd: string;
  now(): number;
  /** Reach the agent listening on `socketPath`; rejects with AgentError('not-running') when none does. */
  connect(socketPath: string): Promise<CliPort>;
  /** The control socket used when --socket is not given. */
  defaultSocketPath(env: NodeJS.ProcessEnv): Promise<string>;
  /** Run an interactive program on our terminal (ssh); resolves with its exit status. `onStderr` also sees what it writes to stderr. */
  exec(argv: string[], opts?: ExecOptions): Promise<number>;
  /** Aborted by Ctrl-C or SIGTERM: ends `logs -f`, `watch`, `daemon` and progress waits. */
  signal: AbortSignal;
  /** `nixvm daemon`: runs a headless agent until `signal` aborts; resolves with the exit code. */
  runDaemon(opts: { flakes?: string[]; socketPath?: string; io: CliIo }): Promise<number>;
  loginItem(): Promise<LoginItemApi>;
  /**
   * Where an agent started by `npm start` (the dev agent) listens, when one was started by this
   * user and its private state dir is sound; tried when nothing answers on the default socket.
   */
  devSocketPath(env: NodeJS.ProcessEnv): Promise<string | null>;
  /** Ask a yes/no question on the terminal; null when there is no terminal to ask on. */
  confirm(question: string): Promise<Answer | null>;
  /** `fn` on each Ctrl-C after the first (which aborts `signal`); while one is registered the process does not exit on it. */
  onInterrupt(fn: () => void): () => void;
  /** settings.json, opened without a watcher. */
  settingsFile(env: NodeJS.ProcessEnv): Promise<SettingsFile>;
  /** `nixvm doctor`'s checks run here, without an agent. */
  doctorHere(env: NodeJS.ProcessEnv): Promise<DoctorReport>;
  /** The argv that runs this nixvm (for the completion scripts it prints, and ssh's ProxyCommand). */
  selfArgv: string[];
  /** Which route's sshd answers now (its banner), best first; default: connect and look. */
  probeSsh?(d: SshDestination): Promise<SshRoute | null>;
}

export interface ExecOptions {
  /** Every chunk the program writes to stderr (which still reaches ours). */
  onStderr?(chunk: string): void;
}

/** Wrap a Node stream as a CliOutput. */
export function outputOf(stream: NodeJS.WriteStream): CliOutput {
  return {
    write: (s: string) => stream.write(s),
    get isTTY() {
      return Boolean(stream.isTTY);
    },
    get columns() {
      return stream.isTTY ? stream.columns : undefined;
    },
    get rows() {
      return stream.isTTY ? stream.rows : undefined;
    },
    onResize(fn) {
      stream.on('resize', fn);
      return () => stream.off('resize', fn);
    },
    stream,
  };
}

const interruptListeners = new Set<() => void>();

/** Register for Ctrl-C after the first one (see CliIo.onInterrupt). */
export function onLaterInterrupt(fn: () => void): () => void {
  interruptListeners.add(fn);
  return () => interruptListeners.delete(fn);
}

/** A later Ctrl-C arrived: true when some command took it (else the process may exit). */
export function dispatchLaterInterrupt(): boolean {
  if (interruptListeners.size === 0) return false;
  for (const fn of [...interruptListeners]) fn();
  return true;
}

let foreground: ChildProcess | null = null;

/**
 * The interactive program holding the terminal, if any. While it runs, Ctrl-C belongs to it (the
 * terminal sends SIGINT to it directly), so the entry point must not act on its own copy.
 */
export function foregroundChild(): ChildProcess | null {
  return foreground;
}

/**
 * Hand the terminal to a program and wait for it. No shell: argv goes to execve as is. The program
 * shares our process group, so Ctrl-C reaches it directly; its exit status becomes ours.
 */
export async function execInteractive(argv: string[], opts: ExecOptions = {}): Promise<number> {
  const [program, ...args] = argv;
  if (!program) throw new Error('The agent gave an empty command to run.');
  const file = resolveProgram(program);
  return new Promise((resolve, reject) => {
    // ssh asks for passwords and host-key answers on /dev/tty, so its stderr can pass through us.
    const child = spawn(file, args, { stdio: ['inherit', 'inherit', opts.onStderr ? 'pipe' : 'inherit'] });
    child.stderr?.on('data', (d: Buffer) => {
      process.stderr.write(d);
      opts.onStderr?.(d.toString('utf8'));
    });
    foreground = child;
    child.once('error', (err) => {
      foreground = null;
      reject(err);
    });
    child.once('exit', (code, signal) => {
      foreground = null;
      // Shell convention for "killed by a signal": 128 + its number.
      if (signal) resolve(128 + (os.constants.signals[signal] ?? 0));
      else resolve(code ?? 1);
    });
  });
}
