/**
 * The agent's side of the control socket: newline-delimited JSON RPC over a unix socket, generic
 * over any AgentPort. Whatever a client sends (garbage, binary, a 10 MiB line, a flood, a
 * half-closed or vanished connection) ends in an error reply or a dropped connection, never in
 * an exception that reaches the agent.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { AgentEvent, AgentMethod, AgentPort, ConsoleAttachment, ConsoleEvent, ParamsOf } from '../api/types.ts';
import { errorMessage, errorShape } from '../api/errors.ts';
import { prepareSocketDir } from '../host/socket-path.ts';
import {
  IDLE_TIMEOUT_MS,
  LineSplitter,
  MAX_CONNECTIONS,
  MAX_REQUEST_LINE_BYTES,
  PARTIAL_LINE_TIMEOUT_MS,
  STALLED_REPLY_TIMEOUT_MS,
  encodeLine,
  logSelected,
  parseRequest,
  type ControlRequest,
  type ControlResponse,
  type LogFilter,
  type RequestId,
} from './protocol.ts';

export interface ControlServerOptions {
  /** Longest request line accepted (default 1 MiB). */
  maxLineBytes?: number;
  /** A subscriber whose unsent backlog passes this is dropped (default 4 MiB). */
  maxSubscriberBacklogBytes?: number;
  /** Calls one connection may have running at once; more requests wait unread (default 32). */
  maxInFlightPerConnection?: number;
  /** Stop reading a connection's requests while this much reply data is unsent (default 1 MiB). */
  replyHighWaterBytes?: number;
  /** Bad messages tolerated on one connection before it is dropped (default 50). */
  maxBadMessages?: number;
  /** Connections at once; one more is told "too busy" and closed (default 128). */
  maxConnections?: number;
  /** Close a connection with no subscription and nothing in flight after this long idle (default 2 min). */
  idleTimeoutMs?: number;
  /** A request line must be complete within this long of its first byte (default 10 s). */
  partialLineTimeoutMs?: number;
  /** Close a connection whose replies stay unsent this long (default 30 s). */
  stalledReplyTimeoutMs?: number;
  /** Things worth a line in the agent's log (dropped subscribers, accept errors). */
  onProblem?: (message: string) => void;
}

/** What check() found: our socket, one served again after it vanished, or someone else's in its place. */
export type SocketCheck = 'ok' | 'restored' | 'taken';

export interface ControlServer {
  readonly socketPath: string;
  /** Open connections right now. */
  connectionCount(): number;
  /**
   * Is our socket file still there? Gone (its directory deleted): listen again and say
   * 'restored'. Another socket in its place: stop listening, leave it alone, say 'taken'.
   */
  check(): Promise<SocketCheck>;
  /** Stop serving; the socket file is removed only if it is still the one we made. */
  close(): Promise<void>;
}

// One encoding per event however many subscribers there are (snapshots can be large).
const encodedEvents = new WeakMap<AgentEvent, string>();
function encodeEvent(ev: AgentEvent): string {
  let line = encodedEvents.get(ev);
  if (line === undefined) {
    line = encodeLine({ event: ev });
    encodedEvents.set(ev, line);
  }
  return line;
}

type Resolved = Required<Omit<ControlServerOptions, 'onProblem'>> & Pick<ControlServerOptions, 'onProblem'>;

class Connection {
  readonly #socket: net.Socket;
  readonly #port: AgentPort;
  readonly #opts: Resolved;
  readonly #splitter: LineSplitter;
  readonly #onClosed: (c: Connection) => void;
  #queue: string[] = [];
  #inFlight = 0;
  #badMessages = 0;
  #closed = false;
  #peerEnded = false;
  #closing = false;
  #logs: LogFilter[] | undefined = undefined;
  #unsubscribe: (() => void) | null = null;
  /** This connection's console attachment (one at a time), or the attach under way. */
  #console: ConsoleAttachment | null = null;
  #consoleAttaching = false;
  /** When something last arrived or was answered (idle timeout). */
  #lastActivity = Date.now();
  /** When the unfinished line began to arrive, if one has. */
  #partialSince: number | null = null;
  /** Since when replies have been waiting to be sent, if they are. */
  #unsentSince: number | null = null;

  constructor(socket: net.Socket, port: AgentPort, opts: Resolved, onClosed: (c: Connection) => void) {
    this.#socket = socket;
    this.#port = port;
    this.#opts = opts;
    this.#onClosed = onClosed;
    this.#splitter = new LineSplitter(opts.maxLineBytes);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('drain', () => {
      this.#unsentSince = null;
      this.#pump();
    });
    // ECONNRESET/EPIPE from a client that went away: 'close' follows and cleans up.
    socket.on('error', () => {});
    socket.on('close', () => this.#onClose());
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /**
   * Called now and then by the server: a half-sent line that never ends, a connection that only
   * sits there, or a client that stopped reading its replies gives its slot back.
   */
  sweep(now: number): void {
    if (this.#closed || this.#closing) return;
    if (this.#partialSince !== null && now - this.#partialSince > this.#opts.partialLineTimeoutMs) {
      this.#hangUp(
        `A message on the control socket was not finished within ${Math.round(this.#opts.partialLineTimeoutMs / 1000)} s; the connection is closed, send each request as one line.`,
      );
      return;
    }
    if (this.#unsentSince !== null && now - this.#unsentSince > this.#opts.stalledReplyTimeoutMs) {
      this.#problem('control socket: dropped a client that stopped reading its replies.');
      this.#socket.destroy();
      return;
    }
    const idle =
      this.#unsubscribe === null &&
      this.#console === null &&
      this.#inFlight === 0 &&
      this.#queue.length === 0 &&
      this.#partialSince === null &&
      this.#socket.writableLength === 0;
    if (idle && now - this.#lastActivity > this.#opts.idleTimeoutMs) this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#closing) return;
    this.#lastActivity = Date.now();
    const lines = this.#splitter.push(chunk);
    if (!this.#splitter.pending) this.#partialSince = null;
    else if (lines.length > 0 || this.#partialSince === null) this.#partialSince = this.#lastActivity;
    for (const l of lines) this.#queue.push(l);
    if (this.#splitter.overflow) {
      // Answer what was complete before the oversized line, then say why we hang up.
      this.#queue = this.#queue.slice(0, this.#opts.maxInFlightPerConnection);
      this.#pump();
      const mib = (this.#opts.maxLineBytes / (1024 * 1024)).toFixed(1).replace(/\.0$/, '');
      this.#hangUp(
        `A message on the control socket was longer than ${mib} MiB; the connection is closed, send smaller requests.`,
      );
      return;
    }
    this.#pump();
  }

  /**
   * The client finished sending (or vanished: on a unix socket both read as EOF). Its requests
   * still get answers; a subscription ends, since nobody may be reading any more.
   */
  #onEnd(): void {
    this.#peerEnded = true;
    // A last request without its newline still counts (e.g. `printf '{…}' | nc -U`).
    const rest = this.#splitter.flush();
    if (rest !== null) this.#queue.push(rest);
    this.#pump();
    this.#stopSubscription();
    this.#detachConsole();
    this.#maybeFinish();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#stopSubscription();
    this.#detachConsole();
    this.#onClosed(this);
  }

  /**
   * Answer queued requests while there is room: a bounded number in flight, and only while the
   * replies already written are being read (a client that pipelines without reading gets no more
   * answers, and its requests stay unread in the kernel, until it reads).
   */
  #pump(): void {
    while (
      !this.#closed &&
      !this.#closing &&
      this.#queue.length &&
      this.#inFlight < this.#opts.maxInFlightPerConnection &&
      this.#socket.writableLength <= this.#opts.replyHighWaterBytes
    ) {
      const line = this.#queue.shift() as string;
      this.#handleLine(line);
    }
    this.#updateFlow();
    this.#maybeFinish();
  }

  /** Read more only when there is room to act on it: bounded queue, bounded unsent replies. */
  #updateFlow(): void {
    if (this.#closed) return;
    const full = this.#queue.length > 0 || this.#socket.writableLength > this.#opts.replyHighWaterBytes;
    if (full) this.#socket.pause();
    else if (!this.#closing) this.#socket.resume();
  }

  /** The client half-closed and everything it asked for is answered: finish our half too. */
  #maybeFinish(): void {
    if (this.#peerEnded && !this.#closing && !this.#queue.length && this.#inFlight === 0) {
      this.#closing = true;
      this.#socket.end();
    }
  }

  #handleLine(line: string): void {
    if (line.trim() === '') return;
    const parsed = parseRequest(line);
    if (!parsed.ok) {
      this.#badMessages++;
      if (this.#badMessages > this.#opts.maxBadMessages) {
        this.#hangUp(
          `Too many malformed messages on the control socket (last: ${parsed.error.message}); the connection is closed.`,
        );
        return;
      }
      this.#reply({ id: parsed.id, error: parsed.error });
      return;
    }
    const req = parsed.request;
    if (req.method === 'subscribe') {
      this.#subscribe(req);
      return;
    }
    if (req.method === 'unsubscribe') {
      this.#stopSubscription();
      this.#reply({ id: req.id, result: { subscribed: false } });
      return;
    }
    if (req.method === 'consoleAttach') {
      this.#attachConsole(req);
      return;
    }
    if (req.method === 'consoleInput') {
      // Keystrokes are not answered (a reply per key would double the traffic); a refusal is.
      if (!this.#console)
        this.#reply({
          id: req.id,
          error: { code: 'bad-request', message: 'consoleInput needs a console attached first (consoleAttach).' },
        });
      else this.#console.write(req.params.data as Uint8Array);
      return;
    }
    if (req.method === 'consoleDetach') {
      this.#detachConsole();
      this.#reply({ id: req.id, result: { attached: false } });
      return;
    }
    this.#call(req.id, req.method as AgentMethod, req.params);
  }

  #call(id: RequestId, method: AgentMethod, params: Record<string, unknown>): void {
    this.#inFlight++;
    Promise.resolve()
      .then(() => this.#port.call(method, params as ParamsOf<typeof method>))
      .then(
        (result) => this.#reply({ id, result: result === undefined ? null : result }, method),
        (err: unknown) => this.#reply({ id, error: errorShape(err) }),
      )
      .catch((err: unknown) => this.#problem(`control socket: replying to ${method} failed: ${String(err)}`))
      .finally(() => {
        this.#inFlight--;
        this.#pump();
      });
  }

  /** (Re)subscribe with the requested logs; the agent filters, we check again before sending. */
  #subscribe(req: ControlRequest): void {
    if (this.#peerEnded) {
      this.#reply({
        id: req.id,
        error: {
          code: 'bad-request',
          message: 'subscribe needs a connection that stays open for reading and writing.',
        },
      });
      return;
    }
    const logs = req.params.logs as LogFilter[] | undefined;
    const usage = req.params.usage === true;
    this.#stopSubscription();
    this.#logs = logs?.map((f) => ({ vm: f.vm, kind: f.kind }));
    try {
      this.#unsubscribe = this.#port.subscribe((ev) => this.#onEvent(ev), {
        ...(this.#logs ? { logs: this.#logs } : {}),
        ...(usage ? { usage } : {}),
      });
    } catch (err) {
      this.#reply({ id: req.id, error: errorShape(err) });
      return;
    }
    this.#reply({ id: req.id, result: { subscribed: true } });
  }

  #attachConsole(req: ControlRequest): void {
    if (this.#peerEnded || this.#console || this.#consoleAttaching) {
      this.#reply({
        id: req.id,
        error: {
          code: 'bad-request',
          message: this.#peerEnded
            ? 'consoleAttach needs a connection that stays open for reading and writing.'
            : 'This connection already has a console attached; open another connection for another console.',
        },
      });
      return;
    }
    const { vm, input } = req.params as { vm: string; input: boolean };
    this.#consoleAttaching = true;
    this.#inFlight++;
    // Events can arrive before the reply is written (the history, first): hold them until then.
    let early: ConsoleEvent[] | null = [];
    const onEvent = (ev: ConsoleEvent) => {
      if (early) early.push(ev);
      else this.#onConsoleEvent(ev);
    };
    Promise.resolve()
      .then(() => this.#port.attachConsole(vm, { input }, onEvent))
      .then(
        (att) => {
          if (this.#closed || this.#closing) {
            att.detach();
            return;
          }
          this.#console = att;
          this.#reply({ id: req.id, result: { vm: att.vm, pty: att.pty } });
          const held = early ?? [];
          early = null;
          for (const ev of held) this.#onConsoleEvent(ev);
        },
        (err: unknown) => this.#reply({ id: req.id, error: errorShape(err) }),
      )
      .catch((err: unknown) => this.#problem(`control socket: attaching a console failed: ${String(err)}`))
      .finally(() => {
        this.#consoleAttaching = false;
        this.#inFlight--;
        this.#pump();
      });
  }

  // Called from the console relay's read loop: must never throw back into it.
  #onConsoleEvent(ev: ConsoleEvent): void {
    if (this.#closed || this.#closing) return;
    try {
      const wire = ev.kind === 'data' ? { kind: 'data' as const, data: Buffer.from(ev.data).toString('base64') } : ev;
      const line = encodeLine({ console: wire });
      if (this.#socket.writableLength + Buffer.byteLength(line) > this.#opts.maxSubscriberBacklogBytes) {
        this.#problem(
          `control socket: dropped a console client that stopped reading (over ${this.#opts.maxSubscriberBacklogBytes} bytes unsent).`,
        );
        this.#detachConsole();
        this.#socket.destroy();
        return;
      }
      if (!this.#socket.write(line)) this.#unsentSince ??= Date.now();
      if (ev.kind === 'end') this.#console = null;
    } catch (err) {
      this.#problem(`control socket: could not send console output: ${String(err)}`);
    }
  }

  #detachConsole(): void {
    const c = this.#console;
    this.#console = null;
    try {
      c?.detach();
    } catch (err) {
      this.#problem(`control socket: detaching a console failed: ${String(err)}`);
    }
  }

  #stopSubscription(): void {
    const u = this.#unsubscribe;
    this.#unsubscribe = null;
    if (u) {
      try {
        u();
      } catch (err) {
        this.#problem(`control socket: unsubscribing failed: ${String(err)}`);
      }
    }
  }

  // Called from inside the agent's emit: must never throw back into it.
  #onEvent(ev: AgentEvent): void {
    if (this.#closed || this.#closing) return;
    try {
      if (ev.type === 'log' && !logSelected(this.#logs, ev.vm, ev.kind)) return;
      const line = encodeEvent(ev);
      if (this.#socket.writableLength + Buffer.byteLength(line) > this.#opts.maxSubscriberBacklogBytes) {
        // A subscriber that does not read would make us buffer without limit; let it go instead.
        this.#problem(
          `control socket: dropped a subscriber that stopped reading (over ${this.#opts.maxSubscriberBacklogBytes} bytes unsent).`,
        );
        this.#stopSubscription();
        this.#socket.destroy();
        return;
      }
      if (!this.#socket.write(line)) this.#unsentSince ??= Date.now();
    } catch (err) {
      this.#problem(`control socket: could not send an event: ${String(err)}`);
    }
  }

  #reply(msg: ControlResponse, method?: string): void {
    if (this.#closed || this.#socket.writableEnded) return;
    this.#lastActivity = Date.now();
    let line: string;
    try {
      line = encodeLine(msg);
    } catch (err) {
      // A result JSON cannot carry (a cycle, a bigint) is the agent's bug; the client still gets an answer.
      line = encodeLine({
        id: msg.id,
        error: {
          code: 'failed',
          message: `The agent's answer to ${method ?? 'the request'} could not be encoded: ${String(err)}.`,
        },
      });
    }
    if (!this.#socket.write(line)) this.#unsentSince ??= Date.now();
    this.#updateFlow();
  }

  /** Send a last error line, then close; destroy anyway if the client never lets it drain. */
  #hangUp(message: string): void {
    if (this.#closing || this.#closed) return;
    this.#closing = true;
    this.#queue = [];
    this.#stopSubscription();
    this.#socket.pause();
    const timer = setTimeout(() => this.#socket.destroy(), 2000);
    timer.unref();
    this.#socket.end(encodeLine({ id: null, error: { code: 'bad-request', message } }), () => {
      clearTimeout(timer);
      this.#socket.destroy();
    });
  }

  #problem(message: string): void {
    try {
      this.#opts.onProblem?.(message);
    } catch {
      // A broken logger must not take the connection down either.
    }
  }
}

/** What is at a socket path: nothing, a live server, a leftover socket file, or something else. */
export async function probeSocket(
  socketPath: string,
  timeoutMs = 1000,
): Promise<'absent' | 'live' | 'stale' | 'not-a-socket'> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch {
    return 'absent';
  }
  if (!st.isSocket()) return 'not-a-socket';
  return new Promise((resolve) => {
    const s = net.createConnection(socketPath);
    const done = (r: 'live' | 'stale') => {
      clearTimeout(timer);
      s.removeAllListeners();
      s.on('error', () => {});
      s.destroy();
      resolve(r);
    };
    // A listener that does not answer in time is still a listener: leave it alone.
    const timer = setTimeout(() => done('live'), timeoutMs);
    s.once('connect', () => done('live'));
    s.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'stale' : 'live'),
    );
  });
}

/**
 * Serve `port` on `socketPath` (0600, in a 0700 directory). A socket file left by a crash is
 * removed once nothing answers on it; a live one means another agent, which is an error.
 */
export async function startControlServer(
  port: AgentPort,
  socketPath: string,
  options: ControlServerOptions = {},
): Promise<ControlServer> {
  const opts: Resolved = {
    maxLineBytes: options.maxLineBytes ?? MAX_REQUEST_LINE_BYTES,
    maxSubscriberBacklogBytes: options.maxSubscriberBacklogBytes ?? 4 * 1024 * 1024,
    maxInFlightPerConnection: options.maxInFlightPerConnection ?? 32,
    replyHighWaterBytes: options.replyHighWaterBytes ?? 1024 * 1024,
    maxBadMessages: options.maxBadMessages ?? 50,
    maxConnections: options.maxConnections ?? MAX_CONNECTIONS,
    idleTimeoutMs: options.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
    partialLineTimeoutMs: options.partialLineTimeoutMs ?? PARTIAL_LINE_TIMEOUT_MS,
    stalledReplyTimeoutMs: options.stalledReplyTimeoutMs ?? STALLED_REPLY_TIMEOUT_MS,
    onProblem: options.onProblem,
  };
  const connections = new Set<Connection>();
  const onConnection = (socket: net.Socket): void => {
    if (connections.size >= opts.maxConnections) {
      // Say so, rather than a silent hang-up a client would read as "the agent is not running".
      socket.on('error', () => {});
      socket.end(
        encodeLine({
          id: null,
          error: {
            code: 'failed',
            message: `The nixvm agent is too busy: ${opts.maxConnections} clients are connected to it; close some (\`nixvm watch\`, \`nixvm logs -f\`, log windows) and try again.`,
          },
        }),
      );
      setTimeout(() => socket.destroy(), 1000).unref();
      opts.onProblem?.(`control socket: refused a client, ${opts.maxConnections} are connected already.`);
      return;
    }
    connections.add(new Connection(socket, port, opts, (c) => connections.delete(c)));
  };
  let listening = await listenOn(socketPath, onConnection, opts);
  const sweepEvery = Math.max(
    50,
    Math.min(opts.idleTimeoutMs, opts.partialLineTimeoutMs, opts.stalledReplyTimeoutMs) / 4,
  );
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const c of connections) c.sweep(now);
  }, sweepEvery);
  sweeper.unref();

  let closing: Promise<void> | null = null;
  let checking: Promise<SocketCheck> | null = null;
  return {
    socketPath,
    connectionCount: () => connections.size,
    check(): Promise<SocketCheck> {
      checking ??= (async (): Promise<SocketCheck> => {
        if (closing) return 'ok';
        if (sameSocket(socketPath, listening.identity)) return 'ok';
        if (lstatOrNull(socketPath)) {
          // Someone else's socket now (another agent started while ours was gone): leave it be.
          listening.server.close();
          return 'taken';
        }
        // Gone (the state dir was deleted): serve again on a fresh socket at the same path.
        listening.server.close();
        try {
          listening = await listenOn(socketPath, onConnection, opts);
        } catch (err) {
          opts.onProblem?.(`control socket: could not listen again on ${socketPath}: ${errorMessage(err)}`);
          return 'taken';
        }
        return 'restored';
      })().finally(() => {
        checking = null;
      });
      return checking;
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(sweeper);
        listening.server.close(() => resolve());
        for (const c of connections) c.destroy();
        // Remove the file only if it is still ours: the same inode, made at the same moment (an
        // inode number alone can be reused by a newer agent's socket).
        try {
          if (sameSocket(socketPath, listening.identity)) fs.unlinkSync(socketPath);
        } catch {
          // Already gone.
        }
      });
      return closing;
    },
  };
}

/** What a socket file is: device, inode and birth (or change) time. */
function identityOf(st: fs.Stats): string {
  const born = st.birthtimeMs > 0 ? st.birthtimeMs : st.ctimeMs;
  return `${st.dev}:${st.ino}:${born}`;
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch {
    return null;
  }
}

function sameSocket(socketPath: string, identity: string): boolean {
  const st = lstatOrNull(socketPath);
  return st?.isSocket() === true && identityOf(st) === identity;
}

/**
 * Listen on `socketPath` (0600, in a 0700 directory): a socket file left by a crash is removed
 * once nothing answers on it; a live one means another agent, which is an error.
 */
async function listenOn(
  socketPath: string,
  onConnection: (s: net.Socket) => void,
  opts: Resolved,
): Promise<{ server: net.Server; identity: string }> {
  prepareSocketDir(socketPath);
  const existing = await probeSocket(socketPath);
  if (existing === 'live') {
    throw new Error(
      `Another process is already serving the nixvm control socket at ${socketPath}; quit that agent first (\`nixvm ls\` reaches it).`,
    );
  }
  if (existing === 'not-a-socket') {
    throw new Error(`${socketPath} exists and is not a socket; remove it and start the agent again.`);
  }
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
  server.on('connection', onConnection);
  // libuv unlinks the path a unix server listened on when it closes, whatever is there by then
  // (another agent's socket, after ours was deleted): so listen on a private name and rename the
  // socket into place. Closing then unlinks only that name, long gone; we remove the real path
  // ourselves, and only when it is still our socket.
  const bound = path.join(path.dirname(socketPath), `.${crypto.randomBytes(4).toString('hex')}.s`);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(bound, () => {
      server.off('error', onError);
      resolve();
    });
  });
  try {
    // Node has no mode option for unix sockets; the 0700 directory covers the instant before chmod.
    fs.chmodSync(bound, 0o600);
    fs.renameSync(bound, socketPath);
  } catch (err) {
    server.close();
    throw err;
  }
  const identity = identityOf(fs.lstatSync(socketPath));
  // Accept errors (EMFILE…) after listening: log, keep serving.
  server.on('error', (err) => opts.onProblem?.(`control socket: ${err.message}`));
  return { server, identity };
}
