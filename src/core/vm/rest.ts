/**
 * A small client for vfkit's REST API (`--restful-uri unix://…` or `tcp://host:port`).
 *
 * Shapes follow vfkit's sources (pkg/rest, pkg/rest/vf): `GET /vm/state` answers
 * `{"state":"VirtualMachineStateRunning","canStart":…,"canPause":…,"canResume":…,"canStop":…,"canHardStop":…}`
 * (the state string is Code-Hex/vz's stringer name); `POST /vm/state` takes `{"state":"Stop"}` and
 * answers 202 with an empty body, 400/500 with `{"error":"…"}`; `GET /vm/inspect` answers the
 * vm's config.VirtualMachine as JSON (vcpus, memoryBytes, bootloader, devices…).
 */
import http from 'node:http';
import net from 'node:net';
import type { VmRunState } from '../../api/types.ts';

export type StateChange = 'Stop' | 'HardStop' | 'Pause' | 'Resume';

/** What `GET /vm/state` says, plus our reading of it. */
export interface VfkitState {
  /** vfkit's own string, e.g. `VirtualMachineStateRunning`. */
  raw: string;
  /** Our state for it (a paused VM is still `running`: its vfkit is up and holding memory). */
  state: VmRunState;
  paused: boolean;
  canStart: boolean;
  canPause: boolean;
  canResume: boolean;
  canStop: boolean;
  canHardStop: boolean;
}

/** The parts of `GET /vm/inspect` we read; the rest is passed through untouched. */
export interface VfkitInspect {
  vcpus?: number;
  memoryBytes?: number;
  bootloader?: {
    kind?: string;
    vmlinuzPath?: string;
    initrdPath?: string;
    kernelCmdline?: string;
    [k: string]: unknown;
  };
  devices?: Array<{ kind?: string; [k: string]: unknown }>;
  [k: string]: unknown;
}

export type RestErrorKind =
  /** Nothing listens there (no socket file, connection refused): vfkit is not up (yet) or gone. */
  | 'unreachable'
  /** Connected, but no answer in time. */
  | 'timeout'
  /** vfkit answered with an error status (its `{"error":…}` text is in the message). */
  | 'http'
  /** The answer was not what vfkit sends. */
  | 'protocol';

export class RestError extends Error {
  readonly kind: RestErrorKind;
  readonly status: number | null;
  readonly endpoint: string;
  constructor(kind: RestErrorKind, endpoint: string, message: string, status: number | null = null) {
    super(message);
    this.name = 'RestError';
    this.kind = kind;
    this.endpoint = endpoint;
    this.status = status;
  }
}

export type RestEndpoint = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** Parse a `--restful-uri` value the way vfkit accepts it (unix://<abs path>, tcp://host:port, http://host:port). */
export function parseRestUri(uri: string): RestEndpoint {
  if (uri.startsWith('unix://')) {
    const p = uri.slice('unix://'.length);
    if (!p.startsWith('/')) throw new Error(`The REST address ${uri} needs an absolute socket path (unix:///…).`);
    return { kind: 'unix', path: p };
  }
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new Error(`The REST address ${uri} is not a URI vfkit accepts (unix:///path or tcp://host:port).`);
  }
  if ((u.protocol === 'tcp:' || u.protocol === 'http:') && u.hostname && u.port) {
    return { kind: 'tcp', host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) };
  }
  throw new Error(`The REST address ${uri} is not a URI vfkit accepts (unix:///path or tcp://host:port).`);
}

/** vz's state names → ours. Unknown names (a newer macOS) count as running: vfkit is up. */
export function mapVfkitState(raw: string): { state: VmRunState; paused: boolean } {
  const name = raw.replace(/^VirtualMachineState/, '');
  switch (name) {
    case 'Stopped':
      return { state: 'stopped', paused: false };
    case 'Starting':
    case 'Restoring':
      return { state: 'starting', paused: false };
    case 'Stopping':
      return { state: 'stopping', paused: false };
    case 'Error':
      return { state: 'crashed', paused: false };
    case 'Paused':
    case 'Pausing':
    case 'Saving':
      return { state: 'running', paused: true };
    default:
      // Running, Resuming, and anything newer.
      return { state: 'running', paused: false };
  }
}

export interface RestClientOptions {
  /** Per request; default 5000 ms. */
  timeoutMs?: number;
}

interface Reply {
  status: number;
  body: string;
}

export class VfkitRest {
  readonly uri: string;
  readonly endpoint: RestEndpoint;
  readonly timeoutMs: number;

  constructor(uri: string, opts: RestClientOptions = {}) {
    this.uri = uri;
    this.endpoint = parseRestUri(uri);
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  async getState(opts: { timeoutMs?: number } = {}): Promise<VfkitState> {
    const r = await this.request('GET', '/vm/state', undefined, opts.timeoutMs);
    const body = this.json(r, 'GET /vm/state') as Record<string, unknown>;
    if (typeof body.state !== 'string') {
      throw new RestError('protocol', this.uri, `vfkit at ${this.uri} answered GET /vm/state without a state.`);
    }
    const mapped = mapVfkitState(body.state);
    return {
      raw: body.state,
      ...mapped,
      canStart: body.canStart === true,
      canPause: body.canPause === true,
      canResume: body.canResume === true,
      canStop: body.canStop === true,
      canHardStop: body.canHardStop === true,
    };
  }

  /** Ask for a state change; resolves on vfkit's 202, throws RestError('http') with vfkit's error text otherwise. */
  async setState(change: StateChange, opts: { timeoutMs?: number } = {}): Promise<void> {
    const r = await this.request('POST', '/vm/state', JSON.stringify({ state: change }), opts.timeoutMs);
    if (r.status >= 200 && r.status < 300) return;
    throw this.httpError(r, `POST /vm/state ${change}`);
  }

  async inspect(opts: { timeoutMs?: number } = {}): Promise<VfkitInspect> {
    const r = await this.request('GET', '/vm/inspect', undefined, opts.timeoutMs);
    return this.json(r, 'GET /vm/inspect') as VfkitInspect;
  }

  /**
   * Hold one idle connection to vfkit's REST socket and call `onClose` when it closes. Neither
   * vfkit's server (Go net/http via gin, no read or idle timeouts) nor Node's closes a connection
   * that has not sent a request, so it stays open, costing nothing, for as long as vfkit lives; the
   * kernel closes it when vfkit exits. That is how we learn, without polling, that a VM we did not
   * spawn has ended. `connected` says whether the connection was ever established (false: nothing
   * listens there). A server that does close idle connections just makes the caller check and re-arm.
   */
  watch(onClose: (connected: boolean) => void): { cancel: () => void } {
    const ep = this.endpoint;
    const sock = ep.kind === 'unix' ? net.connect({ path: ep.path }) : net.connect({ host: ep.host, port: ep.port });
    let connected = false;
    let cancelled = false;
    // The watch must never keep the agent (or a test) alive on its own.
    sock.unref();
    sock.on('connect', () => {
      connected = true;
      if (ep.kind === 'tcp') sock.setKeepAlive(true, 30_000);
    });
    sock.on('data', () => {
      // vfkit never speaks first; anything here is ignored.
    });
    sock.on('error', () => {
      // 'close' follows and reports it.
    });
    sock.on('close', () => {
      if (!cancelled) onClose(connected);
    });
    return {
      cancel: () => {
        cancelled = true;
        sock.destroy();
      },
    };
  }

  private target(): http.RequestOptions {
    return this.endpoint.kind === 'unix'
      ? { socketPath: this.endpoint.path, host: 'localhost' }
      : { host: this.endpoint.host, port: this.endpoint.port };
  }

  private request(method: 'GET' | 'POST', path: string, body: string | undefined, timeoutMs?: number): Promise<Reply> {
    const ms = timeoutMs ?? this.timeoutMs;
    return new Promise<Reply>((resolve, reject) => {
      const headers: Record<string, string | number> = { Connection: 'close' };
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = Buffer.byteLength(body);
      }
      const req = http.request({ ...this.target(), agent: false, method, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(this.wrap(e));
        });
      });
      const timer = setTimeout(() => {
        req.destroy(
          new RestError('timeout', this.uri, `vfkit at ${this.uri} did not answer ${method} ${path} within ${ms} ms.`),
        );
      }, ms);
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(this.wrap(e));
      });
      req.end(body);
    });
  }

  private json(r: Reply, what: string): unknown {
    if (r.status < 200 || r.status >= 300) throw this.httpError(r, what);
    try {
      return JSON.parse(r.body);
    } catch {
      throw new RestError(
        'protocol',
        this.uri,
        `vfkit at ${this.uri} answered ${what} with something that is not JSON.`,
      );
    }
  }

  private httpError(r: Reply, what: string): RestError {
    let detail = r.body.trim();
    try {
      const j = JSON.parse(r.body) as { error?: unknown };
      if (typeof j.error === 'string') detail = j.error;
    } catch {
      // Not JSON: keep the raw text.
    }
    return new RestError(
      'http',
      this.uri,
      `vfkit refused ${what} (HTTP ${r.status})${detail ? `: ${detail}` : ''}.`,
      r.status,
    );
  }

  private wrap(e: unknown): RestError {
    if (e instanceof RestError) return e;
    const code = (e as NodeJS.ErrnoException).code;
    if (
      code === 'ENOENT' ||
      code === 'ECONNREFUSED' ||
      code === 'ECONNRESET' ||
      code === 'EPIPE' ||
      code === 'ENOTSOCK'
    ) {
      return new RestError(
        'unreachable',
        this.uri,
        `Nothing answers at ${this.uri} (${code}): vfkit is not running there.`,
      );
    }
    return new RestError('unreachable', this.uri, `Could not reach vfkit at ${this.uri}: ${(e as Error).message}.`);
  }
}
