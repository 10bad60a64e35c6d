/**
 * The agent's side of the control socket: newline-delimited JSON RPC over a unix socket, generic
 * over any AgentPort. Whatever a client sends (garbage, binary, a 10 MiB line, a flood, a
 * half-closed or vanished connection) ends in an error reply or a dropped connection, never in
 * an exception that reaches the agent.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { AgentEvent, AgentMethod, AgentPort, ParamsOf } from '../api/types.ts';
import { errorShape } from '../api/errors.ts';
import { prepareSocketDir } from '../host/socket-path.ts';
import {
  LineSplitter,
  MAX_REQUEST_LINE_BYTES,
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
  maxConnections?: number;
  /** Things worth a line in the agent's log (dropped subscribers, accept errors). */
  onProblem?: (message: string) => void;
}

export interface ControlServer {
  readonly socketPath: string;
  /** Open connections right now. */
  connectionCount(): number;
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

  constructor(socket: net.Socket, port: AgentPort, opts: Resolved, onClosed: (c: Connection) => void) {
    this.#socket = socket;
    this.#port = port;
    this.#opts = opts;
    this.#onClosed = onClosed;
    this.#splitter = new LineSplitter(opts.maxLineBytes);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('drain', () => this.#updateFlow());
    // ECONNRESET/EPIPE from a client that went away: 'close' follows and cleans up.
    socket.on('error', () => {});
    socket.on('close', () => this.#onClose());
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#closing) return;
    const lines = this.#splitter.push(chunk);
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
    this.#maybeFinish();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#stopSubscription();
    this.#onClosed(this);
  }

  #pump(): void {
    while (
      !this.#closed &&
      !this.#closing &&
      this.#queue.length &&
      this.#inFlight < this.#opts.maxInFlightPerConnection
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
    this.#call(req.id, req.method, req.params);
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
    this.#stopSubscription();
    this.#logs = logs?.map((f) => ({ vm: f.vm, kind: f.kind }));
    try {
      this.#unsubscribe = this.#port.subscribe((ev) => this.#onEvent(ev), this.#logs ? { logs: this.#logs } : {});
    } catch (err) {
      this.#reply({ id: req.id, error: errorShape(err) });
      return;
    }
    this.#reply({ id: req.id, result: { subscribed: true } });
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
      this.#socket.write(line);
    } catch (err) {
      this.#problem(`control socket: could not send an event: ${String(err)}`);
    }
  }

  #reply(msg: ControlResponse, method?: string): void {
    if (this.#closed || this.#socket.writableEnded) return;
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
    this.#socket.write(line);
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
    maxConnections: options.maxConnections ?? 128,
    onProblem: options.onProblem,
  };
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
  if (existing === 'stale') fs.unlinkSync(socketPath);

  const connections = new Set<Connection>();
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
  server.maxConnections = opts.maxConnections;
  server.on('connection', (socket) => {
    connections.add(new Connection(socket, port, opts, (c) => connections.delete(c)));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(socketPath, () => {
      server.off('error', onError);
      resolve();
    });
  });
  // Node has no mode option for unix sockets; the 0700 directory covers the instant before chmod.
  fs.chmodSync(socketPath, 0o600);
  const ino = fs.statSync(socketPath).ino;
  // Accept errors (EMFILE…) after listening: log, keep serving.
  server.on('error', (err) => opts.onProblem?.(`control socket: ${err.message}`));

  let closing: Promise<void> | null = null;
  return {
    socketPath,
    connectionCount: () => connections.size,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of connections) c.destroy();
        // Remove the file only if it is still ours (not a newer agent's).
        try {
          if (fs.statSync(socketPath).ino === ino) fs.unlinkSync(socketPath);
        } catch {
          // Already gone.
        }
      });
      return closing;
    },
  };
}
