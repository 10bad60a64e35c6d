/**
 * The CLI's side of the control socket: an AgentPort that forwards calls and subscriptions to
 * the agent over its unix socket, so CLI code is the same whether it holds the Agent or a client.
 */
import net from 'node:net';
import type {
  AgentEvent,
  AgentMethod,
  AgentPort,
  ConsoleAttachment,
  ConsoleAttachOptions,
  ConsoleEvent,
  ParamsOf,
  ResultOf,
  SubscribeOptions,
} from '../api/types.ts';
import { AgentError } from '../api/errors.ts';
import { isAgentErrorCode } from '../api/errors.ts';
import { resolvePaths } from '../host/paths.ts';
import { controlSocketPath, untrustedSocket } from '../host/socket-path.ts';
import {
  LineSplitter,
  MAX_RESPONSE_LINE_BYTES,
  encodeLine,
  logSelected,
  type ControlMethod,
  type LogFilter,
  type WireConsoleEvent,
} from './protocol.ts';

export interface ConnectOptions {
  /** Give up connecting after this long (default 5 s). */
  connectTimeoutMs?: number;
}

/**
 * The control socket of the agent for this user (or NIXVM_STATE_DIR): the first of the places the
 * agent may have put it whose directory can be trusted and holds a socket.
 */
export function defaultControlSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return controlSocketPath(resolvePaths(env).stateDir);
}

interface Pending {
  method: ControlMethod;
  resolve: (v: unknown) => void;
  reject: (e: AgentError) => void;
}

interface Listener {
  fn: (ev: AgentEvent) => void;
  logs: LogFilter[];
  usage: boolean;
}

function notRunning(socketPath: string, code: string | undefined): AgentError {
  const why = code === 'ECONNREFUSED' ? `nothing is listening on ${socketPath}` : `no socket at ${socketPath}`;
  return new AgentError(
    'not-running',
    `The nixvm agent is not running (${why}); start it with \`nixvm daemon\` or open NixVM.app.`,
  );
}

/** Merge every listener's wishes into the one set of logs the connection subscribes with. */
function mergeLogs(lists: LogFilter[][]): LogFilter[] {
  const seen = new Map<string, LogFilter>();
  for (const list of lists) for (const f of list) seen.set(`${f.kind}\0${f.vm}`, { vm: f.vm, kind: f.kind });
  return [...seen.values()];
}

export class ControlClient implements AgentPort {
  readonly socketPath: string;
  readonly #socket: net.Socket;
  readonly #splitter = new LineSplitter(MAX_RESPONSE_LINE_BYTES);
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<Listener>();
  readonly #closeListeners = new Set<(err: AgentError | null) => void>();
  #nextId = 1;
  #closed = false;
  /** close() was called by us: the ending is not news. */
  #closing = false;
  #subscribed = false;
  #subscribeAck: Promise<void> = Promise.resolve();
  /** Last error the server sent without an id (it says why it is hanging up). */
  #serverNotice: string | null = null;
  /** That error was the agent refusing us (too busy), not a protocol complaint. */
  #refused = false;
  /** This connection carries a console: where its events go. */
  #consoleFn: ((ev: ConsoleEvent) => void) | null = null;

  constructor(socket: net.Socket, socketPath: string) {
    this.#socket = socket;
    this.socketPath = socketPath;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => this.#onClose());
  }

  get closed(): boolean {
    return this.#closed;
  }

  call<M extends AgentMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    return this.#send(method, params as Record<string, unknown>) as Promise<ResultOf<M>>;
  }

  /**
   * Receive agent events: snapshots and notices always, log lines for the logs in `opts`.
   * Returns the unsubscribe function.
   */
  subscribe(fn: (ev: AgentEvent) => void, opts: SubscribeOptions = {}): () => void {
    const l: Listener = {
      fn,
      logs: opts.logs ? opts.logs.map((f) => ({ vm: f.vm, kind: f.kind })) : [],
      usage: opts.usage === true,
    };
    this.#listeners.add(l);
    this.#resubscribe();
    return () => {
      if (this.#listeners.delete(l)) this.#resubscribe();
    };
  }

  /** Resolves once the agent has acknowledged the latest subscription change. */
  whenSubscribed(): Promise<void> {
    return this.#subscribeAck;
  }

  /** Called once when the connection ends; `err` says why when it was not our own close(). */
  onClose(fn: (err: AgentError | null) => void): () => void {
    this.#closeListeners.add(fn);
    return () => this.#closeListeners.delete(fn);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#socket.once('close', () => resolve());
      this.#closing = true;
      this.#socket.end();
      // Do not wait on an agent that never finishes its half.
      setTimeout(() => this.#socket.destroy(), 1000).unref();
    });
  }

  /**
   * Attach to a VM's console over a connection of its own (a console takes a connection; this
   * one stays free for calls and events).
   */
  async attachConsole(
    vm: string,
    opts: ConsoleAttachOptions,
    fn: (ev: ConsoleEvent) => void,
  ): Promise<ConsoleAttachment> {
    const c = await connectControl(this.socketPath);
    try {
      return await c.#attachHere(vm, opts, fn);
    } catch (err) {
      await c.close();
      throw err;
    }
  }

  async #attachHere(
    vm: string,
    opts: ConsoleAttachOptions,
    fn: (ev: ConsoleEvent) => void,
  ): Promise<ConsoleAttachment> {
    let ended = false;
    const deliver = (ev: ConsoleEvent) => {
      if (ended) return;
      if (ev.kind === 'end') ended = true;
      try {
        fn(ev);
      } catch {
        // The listener's bug stays its own.
      }
    };
    this.#consoleFn = deliver;
    this.onClose((err) =>
      deliver({
        kind: 'end',
        reason: err ? err.message : `The console of VM ${JSON.stringify(vm)} was detached.`,
      }),
    );
    const r = (await this.#send('consoleAttach', { vm, input: opts.input })) as { vm: string; pty: string };
    let nextId = 1_000_000_000;
    return {
      vm: r.vm,
      pty: r.pty,
      write: (data) => {
        if (this.#closed || data.length === 0) return;
        // Not awaited: the agent answers keystrokes only to refuse them.
        for (let i = 0; i < data.length; i += 48 * 1024) {
          const part = Buffer.from(data.subarray(i, i + 48 * 1024)).toString('base64');
          this.#socket.write(encodeLine({ id: nextId++, method: 'consoleInput', params: { data: part } }));
        }
      },
      detach: () => {
        ended = true;
        void this.close();
      },
    };
  }

  #onConsole(w: WireConsoleEvent): void {
    const fn = this.#consoleFn;
    if (!fn || typeof w !== 'object' || w === null) return;
    if (w.kind === 'data' && typeof w.data === 'string') fn({ kind: 'data', data: Buffer.from(w.data, 'base64') });
    else if (w.kind === 'input' && typeof w.writer === 'boolean') fn({ kind: 'input', writer: w.writer });
    else if (w.kind === 'end' && typeof w.reason === 'string') fn({ kind: 'end', reason: w.reason });
  }

  #resubscribe(): void {
    if (this.#closed) return;
    const logs = mergeLogs([...this.#listeners].map((l) => l.logs));
    let p: Promise<unknown>;
    if (this.#listeners.size === 0) {
      if (!this.#subscribed) return;
      this.#subscribed = false;
      p = this.#send('unsubscribe', {});
    } else {
      this.#subscribed = true;
      // The connection shows usage while any of its listeners does.
      const usage = [...this.#listeners].some((l) => l.usage);
      p = this.#send('subscribe', { ...(logs.length ? { logs } : {}), ...(usage ? { usage } : {}) });
    }
    // Subscription failures surface through onClose; the ack promise never rejects.
    this.#subscribeAck = p.then(
      () => undefined,
      () => undefined,
    );
  }

  #send(method: ControlMethod, params: Record<string, unknown>): Promise<unknown> {
    if (this.#closed) {
      return Promise.reject(this.#goneError(method));
    }
    const id = this.#nextId++;
    let line: string;
    try {
      line = encodeLine({ id, method, params: params ?? {} });
    } catch (err) {
      return Promise.reject(
        new AgentError('bad-request', `The params of ${method} cannot be sent as JSON: ${String(err)}.`),
      );
    }
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { method, resolve, reject });
      this.#socket.write(line);
    });
  }

  #onData(chunk: Buffer): void {
    const lines = this.#splitter.push(chunk);
    for (const line of lines) this.#onLine(line);
    if (this.#splitter.overflow) {
      this.#serverNotice = 'the agent sent a message too large to read';
      this.#socket.destroy();
    }
  }

  #onLine(line: string): void {
    if (!line.trim()) return;
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    const m = msg as {
      id?: unknown;
      result?: unknown;
      error?: { code?: unknown; message?: unknown };
      event?: AgentEvent;
      console?: WireConsoleEvent;
    };
    if (m.event !== undefined) {
      this.#dispatch(m.event);
      return;
    }
    if (m.console !== undefined) {
      this.#onConsole(m.console);
      return;
    }
    if (typeof m.id !== 'number') {
      if (m.error && typeof m.error.message === 'string') {
        this.#serverNotice = m.error.message;
        this.#refused = m.error.code === 'failed';
      }
      return;
    }
    const p = this.#pending.get(m.id);
    if (!p) {
      // A refused keystroke (it has no pending entry): the console's owner hears it as its end.
      if (m.error && this.#consoleFn && typeof m.error.message === 'string')
        this.#consoleFn({ kind: 'end', reason: m.error.message });
      return;
    }
    this.#pending.delete(m.id);
    if (m.error) {
      const code = isAgentErrorCode(m.error.code) ? m.error.code : 'failed';
      const message = typeof m.error.message === 'string' ? m.error.message : `${p.method} failed.`;
      p.reject(new AgentError(code, message));
    } else {
      p.resolve(m.result);
    }
  }

  #dispatch(ev: AgentEvent): void {
    for (const l of [...this.#listeners]) {
      if (ev.type === 'log' && !logSelected(l.logs, ev.vm, ev.kind)) continue;
      try {
        l.fn(ev);
      } catch {
        // One listener's bug must not starve the others.
      }
    }
  }

  #goneError(method: string): AgentError {
    // The agent said why it would not serve us ("too busy…"): that sentence is the answer.
    if (this.#refused && this.#serverNotice) return new AgentError('failed', this.#serverNotice);
    const why = this.#serverNotice ? ` (${this.#serverNotice})` : '';
    return new AgentError(
      'not-running',
      `The nixvm agent closed the connection before answering ${method}${why}; it may have quit, check with \`nixvm ls\`.`,
    );
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#pending.values()) p.reject(this.#goneError(p.method));
    this.#pending.clear();
    const err = this.#closing
      ? null
      : new AgentError(
          'not-running',
          `The nixvm agent closed the control connection${this.#serverNotice ? ` (${this.#serverNotice})` : ''}.`,
        );
    for (const fn of this.#closeListeners) {
      try {
        fn(err);
      } catch {
        // Listener bugs stay theirs.
      }
    }
  }
}

/** Connect to a running agent; an AgentError('not-running') with a hint when none is there. */
export function connectControl(
  socketPath: string = defaultControlSocketPath(),
  options: ConnectOptions = {},
): Promise<ControlClient> {
  const timeoutMs = options.connectTimeoutMs ?? 5000;
  // Only through a directory nobody else can write, to a socket we own: otherwise another local
  // user could be the one answering (and the CLI acts on its answers).
  let distrust: string | null;
  try {
    distrust = untrustedSocket(socketPath);
  } catch (err) {
    distrust = `nixvm cannot check the socket ${socketPath} (${err instanceof Error ? err.message : String(err)}).`;
  }
  if (distrust) return Promise.reject(new AgentError('failed', distrust));
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new AgentError(
          'not-running',
          `The nixvm agent did not accept a connection on ${socketPath} within ${timeoutMs} ms; it may be stuck, restart it.`,
        ),
      );
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(new ControlClient(socket, socketPath));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTDIR') {
        reject(notRunning(socketPath, err.code));
      } else if (err.code === 'EACCES' || err.code === 'EPERM') {
        reject(
          new AgentError(
            'failed',
            `Cannot open the nixvm control socket ${socketPath} (permission denied); it belongs to another user or has the wrong mode.`,
          ),
        );
      } else {
        reject(new AgentError('failed', `Could not connect to the nixvm agent at ${socketPath}: ${err.message}.`));
      }
    });
  });
}
