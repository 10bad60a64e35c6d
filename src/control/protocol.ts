/**
 * The control socket's wire format: one JSON object per line (UTF-8, '\n'-terminated).
 *
 *   → {"id":1,"method":"start","params":{"vm":"web"}}
 *   ← {"id":1,"result":{…}}            or  {"id":1,"error":{"code":"no-such-vm","message":"…"}}
 *   → {"id":2,"method":"subscribe","params":{"logs":[{"vm":"web","kind":"console"}]}}
 *   ← {"id":2,"result":{"subscribed":true}}  then  {"event":{…AgentEvent}} lines
 *   → {"id":3,"method":"unsubscribe"}  ← {"id":3,"result":{"subscribed":false}}
 *
 * A VM's serial console, one per connection:
 *   → {"id":4,"method":"consoleAttach","params":{"vm":"web","input":true}}
 *   ← {"id":4,"result":{"vm":"web","pty":"/dev/ttys003"}}  then  {"console":{"kind":"data","data":"<base64>"}},
 *     {"console":{"kind":"input","writer":true|false}}, and at the end {"console":{"kind":"end","reason":"…"}}
 *   → {"id":5,"method":"consoleInput","params":{"data":"<base64>"}}   (answered only when refused)
 *   → {"id":6,"method":"consoleDetach"}  ← {"id":6,"result":{"attached":false}}
 *
 * A reply to a message whose id could not be read carries "id": null; so does the last line before
 * the agent hangs up on a connection, saying why (too busy, a line too long, too slow…).
 *
 * Bounds (what one client can make the agent hold; past them the connection is refused or closed
 * with that last line, and the agent carries on):
 *   - a request line: MAX_REQUEST_LINE_BYTES (1 MiB); a reply line a client reads: 64 MiB;
 *   - malformed messages (not JSON, no such method, bad params): past 50 on one connection, it is closed;
 *   - connections: 128 at once; one more is answered "too busy" and closed;
 *   - a connection with no subscription and nothing in flight is closed after 2 minutes idle; a
 *     line must be finished within 10 s of its first byte;
 *   - requests: 32 in flight per connection; the agent stops reading (and answering) while 1 MiB
 *     of its replies to that connection are unsent, and closes it when they stay unsent for
 *     30 s; a subscriber whose unsent events pass 4 MiB is dropped;
 *   - subscribe: at most MAX_SUBSCRIBE_LOGS (64) logs per subscription, each naming a VM the
 *     agent knows, and MAX_AGENT_LOG_FILTERS (1024) over all subscriptions;
 *   - `logs` replies: at most MAX_LOG_REPLY_BYTES (8 MiB) of lines, each cut at 16 KiB.
 */
import { errorShape, type AgentErrorShape } from '../api/errors.ts';
import type { AgentEvent, AgentMethod, LogKind, SubscribeOptions, WireConsoleEvent } from '../api/types.ts';

export type { WireConsoleEvent };
import {
  agentMethod,
  isPlainObject,
  validateConsoleAttach,
  validateConsoleInput,
  validateParams,
  validateSubscribe,
} from '../api/validate.ts';

export type RequestId = number | string;

/** One log a subscription wants: this VM's console or build log. */
export interface LogFilter {
  vm: string;
  kind: LogKind;
}

/** subscribe's params are the AgentPort's SubscribeOptions: `logs` omitted = state and notices only. */
export type SubscribeParams = SubscribeOptions;

export type ControlMethod =
  | AgentMethod
  | 'subscribe'
  | 'unsubscribe'
  | 'consoleAttach'
  | 'consoleInput'
  | 'consoleDetach';

export interface ControlRequest {
  id: RequestId;
  method: ControlMethod;
  params: Record<string, unknown>;
}

export type ControlResponse =
  | { id: RequestId | null; result: unknown }
  | { id: RequestId | null; error: AgentErrorShape };

export interface ControlEventMessage {
  event: AgentEvent;
}

export interface ControlConsoleMessage {
  console: WireConsoleEvent;
}

/** Largest request line the server reads; a longer one gets an error and the connection ends. */
export const MAX_REQUEST_LINE_BYTES = 1024 * 1024;
/** Largest line a client reads (snapshots and log tails are bigger than requests). */
export const MAX_RESPONSE_LINE_BYTES = 64 * 1024 * 1024;

/** Most logs one control-socket subscription may follow. */
export const MAX_SUBSCRIBE_LOGS = 64;
/** Connections served at once; one more gets a "too busy" line and is closed. */
export const MAX_CONNECTIONS = 128;
/** A connection with no subscription and nothing in flight is closed after this long idle. */
export const IDLE_TIMEOUT_MS = 120_000;
/** A request line must be complete within this long of its first byte. */
export const PARTIAL_LINE_TIMEOUT_MS = 10_000;
/** Replies that stay unsent this long (a client that never reads) close the connection. */
export const STALLED_REPLY_TIMEOUT_MS = 30_000;

export function encodeLine(
  msg: ControlResponse | ControlEventMessage | ControlConsoleMessage | ControlRequest,
): string {
  return `${JSON.stringify(msg)}\n`;
}

export type ParsedRequest =
  | { ok: true; request: ControlRequest }
  | { ok: false; id: RequestId | null; error: AgentErrorShape };

function bad(id: RequestId | null, message: string): ParsedRequest {
  return { ok: false, id, error: { code: 'bad-request', message } };
}

function isId(v: unknown): v is RequestId {
  return (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v.length <= 200);
}

/** Parse and check one request line; never throws. */
export function parseRequest(line: string): ParsedRequest {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    return bad(null, 'The message is not valid JSON; send one JSON object per line.');
  }
  if (!isPlainObject(msg)) {
    return bad(null, 'The message is not a JSON object; send {"id":…,"method":…,"params":{…}}.');
  }
  const id = msg.id;
  if (!isId(id)) {
    return bad(null, 'The message has no usable "id"; give each request a number or a short string id.');
  }
  try {
    const raw = msg.params === null ? undefined : msg.params;
    if (msg.method === 'subscribe') {
      return {
        ok: true,
        request: { id, method: 'subscribe', params: { ...validateSubscribe(raw, MAX_SUBSCRIBE_LOGS) } },
      };
    }
    if (msg.method === 'unsubscribe') return { ok: true, request: { id, method: 'unsubscribe', params: {} } };
    if (msg.method === 'consoleAttach')
      return { ok: true, request: { id, method: 'consoleAttach', params: { ...validateConsoleAttach(raw) } } };
    if (msg.method === 'consoleInput')
      return { ok: true, request: { id, method: 'consoleInput', params: { ...validateConsoleInput(raw) } } };
    if (msg.method === 'consoleDetach') return { ok: true, request: { id, method: 'consoleDetach', params: {} } };
    const method = agentMethod(msg.method);
    return { ok: true, request: { id, method, params: { ...validateParams(method, raw) } } };
  } catch (err) {
    return { ok: false, id, error: errorShape(err) };
  }
}

/** Does a log event pass a subscription's selection? */
export function logSelected(logs: readonly LogFilter[] | undefined, vm: string, kind: LogKind): boolean {
  return logs?.some((f) => f.vm === vm && f.kind === kind) ?? false;
}

/**
 * Splits a byte stream into lines without ever holding more than `maxLineBytes` of one line.
 * `push` returns complete lines; `overflow` turns true once a line grew past the cap (the
 * caller then replies and drops the connection; nothing more is returned).
 */
export class LineSplitter {
  readonly maxLineBytes: number;
  overflow = false;
  #parts: Buffer[] = [];
  #size = 0;

  constructor(maxLineBytes: number) {
    this.maxLineBytes = maxLineBytes;
  }

  push(chunk: Buffer): string[] {
    if (this.overflow) return [];
    const lines: string[] = [];
    let start = 0;
    let nl: number;
    while ((nl = chunk.indexOf(0x0a, start)) !== -1) {
      const piece = chunk.subarray(start, nl);
      if (this.#size + piece.length > this.maxLineBytes) {
        this.#overflowed();
        return lines;
      }
      this.#parts.push(piece);
      lines.push(stripCr(Buffer.concat(this.#parts).toString('utf8')));
      this.#parts = [];
      this.#size = 0;
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (this.#size + rest.length > this.maxLineBytes) {
      this.#overflowed();
      return lines;
    }
    if (rest.length) {
      // Copy: the caller's chunk may be reused by the stream.
      this.#parts.push(Buffer.from(rest));
      this.#size += rest.length;
    }
    return lines;
  }

  /** Part of a line has arrived and its newline has not. */
  get pending(): boolean {
    return this.#size > 0;
  }

  /** What is left after the stream ended without a final newline. */
  flush(): string | null {
    if (this.overflow || this.#size === 0) return null;
    const s = stripCr(Buffer.concat(this.#parts).toString('utf8'));
    this.#parts = [];
    this.#size = 0;
    return s;
  }

  #overflowed(): void {
    this.overflow = true;
    this.#parts = [];
    this.#size = 0;
  }
}

function stripCr(s: string): string {
  return s.endsWith('\r') ? s.slice(0, -1) : s;
}
