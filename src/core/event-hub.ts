/**
 * Events to subscribers: snapshots (coalesced, at most one per interval), notices, and the live
 * log lines of the logs each subscriber follows. Console logs are followed from their files, one
 * follower per log however many subscribers want it; build lines arrive from the builds.
 */
import { AgentError, errorMessage } from '../api/errors.ts';
import type { AgentEvent, AgentSnapshot, LogKind, Notice, SubscribeOptions } from '../api/types.ts';
import { MAX_AGENT_LOG_FILTERS, MAX_LOG_LINE_BYTES } from '../api/validate.ts';
import { follow, type Follower } from './vm/console.ts';

type Subscriber = { fn: (ev: AgentEvent) => void; logs: Set<string>; usage: boolean };

const logKey = (vm: string, kind: LogKind) => `${kind}\0${vm}`;

export interface EventHubOptions {
  /** Minimum time between two snapshot events. */
  emitIntervalMs: number;
  snapshot(): AgentSnapshot;
  /** After each snapshot went out (ssh config, lease timers…). */
  afterEmit(snapshot: AgentSnapshot): void;
  consoleLogPath(vm: string): string;
  /** Whether a VM of this name exists (a subscription may only follow the logs of known VMs). */
  knows?(vm: string): boolean;
  /** Logs followed for all subscribers together (default MAX_AGENT_LOG_FILTERS). */
  maxLogFilters?: number;
  /** Whether any subscriber wants the VMs' usage now (called when that changes). */
  usageWanted?(on: boolean): void;
  log(line: string): void;
}

/** A log line cut to MAX_LOG_LINE_BYTES of UTF-8 (never inside a character), marked with `…`. */
function capLine(line: string): string {
  if (Buffer.byteLength(line) <= MAX_LOG_LINE_BYTES) return line;
  const cut = new TextDecoder().decode(Buffer.from(line).subarray(0, MAX_LOG_LINE_BYTES)).replace(/\uFFFD$/, '');
  return `${cut}…`;
}

export class EventHub {
  readonly #o: EventHubOptions;
  readonly #subscribers = new Set<Subscriber>();
  readonly #followers = new Map<string, { count: number; follower: Follower | null }>();
  #emitTimer: NodeJS.Timeout | null = null;
  #lastEmit = 0;
  #closed = false;
  /** Log filters held by all subscribers together. */
  #filters = 0;
  /** Subscribers that show the VMs' usage. */
  #usage = 0;

  constructor(o: EventHubOptions) {
    this.#o = o;
  }

  /**
   * Follow events; `opts.logs` names the logs wanted (each of a VM that exists). Throws
   * AgentError when a VM is unknown or the agent already follows as many logs as it will.
   */
  subscribe(fn: (ev: AgentEvent) => void, opts: SubscribeOptions = {}): () => void {
    const sub: Subscriber = { fn, logs: new Set(), usage: opts.usage === true };
    const wanted = new Map<string, { vm: string; kind: LogKind }>();
    for (const l of opts.logs ?? []) wanted.set(logKey(l.vm, l.kind), l);
    for (const l of wanted.values()) {
      if (this.#o.knows && !this.#o.knows(l.vm)) {
        throw new AgentError('no-such-vm', `There is no VM named ${JSON.stringify(l.vm)} whose log could be followed.`);
      }
    }
    const max = this.#o.maxLogFilters ?? MAX_AGENT_LOG_FILTERS;
    if (this.#filters + wanted.size > max) {
      throw new AgentError(
        'failed',
        `The nixvm agent already follows ${this.#filters} logs for its clients (at most ${max}); close some log windows or \`nixvm logs -f\` and try again.`,
      );
    }
    for (const [key, l] of wanted) {
      sub.logs.add(key);
      this.#retain(l.vm, l.kind);
    }
    this.#filters += sub.logs.size;
    this.#subscribers.add(sub);
    if (sub.usage && this.#usage++ === 0) this.#o.usageWanted?.(true);
    return () => {
      if (!this.#subscribers.delete(sub)) return;
      this.#filters -= sub.logs.size;
      if (sub.usage && --this.#usage === 0) this.#o.usageWanted?.(false);
      for (const key of sub.logs) {
        const [kind, vm] = key.split('\0') as [LogKind, string];
        this.#release(vm, kind);
      }
    };
  }

  /** Something changed: emit a snapshot soon, at most one per interval. */
  changed(): void {
    if (this.#closed || this.#emitTimer) return;
    const emit = (): void => {
      // A timer counts from the event loop's cached clock, which lags Date.now() while the loop is
      // busy, so it can fire a few ms early: wait out the rest to keep snapshots an interval apart.
      const early = this.#lastEmit + this.#o.emitIntervalMs - Date.now();
      if (early > 0) {
        this.#emitTimer = setTimeout(emit, early);
        return;
      }
      this.#emitTimer = null;
      const snapshot = this.#o.snapshot();
      this.broadcast({ type: 'snapshot', snapshot });
      // Stamped once it went out: under load, building the snapshot must not eat into the gap.
      this.#lastEmit = Date.now();
      this.#o.afterEmit(snapshot);
    };
    this.#emitTimer = setTimeout(emit, Math.max(0, this.#lastEmit + this.#o.emitIntervalMs - Date.now()));
  }

  broadcast(event: AgentEvent): void {
    // Build lines come from nix as they are; console lines are cut by their follower already.
    const ev =
      event.type === 'log' && event.lines.some((l) => l.length > MAX_LOG_LINE_BYTES / 4)
        ? { ...event, lines: event.lines.map(capLine) }
        : event;
    for (const s of this.#subscribers) {
      if (ev.type === 'log' && !s.logs.has(logKey(ev.vm, ev.kind))) continue;
      try {
        s.fn(ev);
      } catch (err) {
        this.#o.log(`a subscriber failed: ${errorMessage(err)}`);
      }
    }
  }

  notify(notice: Notice): void {
    this.#o.log(`${notice.level}: ${notice.title}${notice.body ? ` — ${notice.body}` : ''}`);
    this.broadcast({ type: 'notice', notice });
  }

  close(): void {
    this.#closed = true;
    if (this.#emitTimer) clearTimeout(this.#emitTimer);
    for (const f of this.#followers.values()) f.follower?.close();
    this.#followers.clear();
    this.#subscribers.clear();
    this.#filters = 0;
    if (this.#usage) this.#o.usageWanted?.(false);
    this.#usage = 0;
  }

  #retain(vm: string, kind: LogKind): void {
    const key = logKey(vm, kind);
    const f = this.#followers.get(key);
    if (f) {
      f.count++;
      return;
    }
    // Build lines arrive from the build manager; only the console needs a file follower.
    const follower =
      kind === 'console'
        ? follow(this.#o.consoleLogPath(vm), (lines) => this.broadcast({ type: 'log', vm, kind, lines }), {
            maxLineBytes: MAX_LOG_LINE_BYTES,
            onError: (err) => this.#o.log(`following ${vm}'s console log: ${errorMessage(err)}`),
          })
        : null;
    this.#followers.set(key, { count: 1, follower });
  }

  #release(vm: string, kind: LogKind): void {
    const key = logKey(vm, kind);
    const f = this.#followers.get(key);
    if (!f) return;
    if (--f.count > 0) return;
    f.follower?.close();
    this.#followers.delete(key);
  }
}
