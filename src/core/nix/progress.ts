/**
 * Nix's activity stream (`--log-format internal-json`, lines starting with `@nix `) turned into
 * BuildProgress and human log lines. Pure: feed it lines, read the state.
 *
 * The aggregation mirrors nix's own progress bar (libmain/progress-bar.cc): per activity type,
 * done/expected/running come from `Progress` results of live activities plus what stopped
 * activities had done, and `SetExpected` results raise the expectation. Nix does not promise
 * that `expected` only grows (a path found valid mid-build shrinks it), so neither do we; only
 * `percent` is kept monotonic.
 *
 * Tolerance: unknown actions, activity types and result types are ignored; results for unknown
 * activity ids are ignored; ids are kept as decimal strings because they can exceed 2^53 and
 * JSON.parse would silently round them (two activities would then share an id).
 */
import type { BuildProgress } from '../../api/types.ts';
import { drvName, stripAnsi } from './errors.ts';

/** Activity types (nix's ActivityType). */
export const Act = {
  Unknown: 0,
  CopyPath: 100,
  FileTransfer: 101,
  Realise: 102,
  CopyPaths: 103,
  Builds: 104,
  Build: 105,
  OptimiseStore: 106,
  VerifyPaths: 107,
  Substitute: 108,
  QueryPathInfo: 109,
  PostBuildHook: 110,
  BuildWaiting: 111,
  FetchTree: 112,
} as const;

/** Result types (nix's ResultType). */
export const Res = {
  FileLinked: 100,
  BuildLogLine: 101,
  UntrustedPath: 102,
  CorruptedPath: 103,
  SetPhase: 104,
  Progress: 105,
  SetExpected: 106,
  PostBuildLogLine: 107,
  FetchStatus: 108,
} as const;

export type NixLogEvent =
  | { action: 'start'; id: string; parent: string | null; type: number; level: number; text: string; fields: unknown[] }
  | { action: 'stop'; id: string }
  | { action: 'result'; id: string; type: number; fields: unknown[] }
  | { action: 'msg'; level: number; msg: string }
  /** A line that is not part of the JSON stream (printed as is). */
  | { action: 'text'; text: string };

/** Quote the integer values of "id" and "parent" so they survive JSON.parse exactly. */
function quoteIds(json: string): string {
  // Inside a JSON string a quote is always escaped, so `"id":` can only match a real key.
  return json.replace(/"(id|parent)"\s*:\s*(-?\d+)/g, '"$1":"$2"');
}

function asId(v: unknown): string | null {
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return v;
  if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  if (typeof v === 'bigint') return v.toString();
  return null;
}

/** Parse one stderr line of `nix … --log-format internal-json`. Null for lines to ignore. */
export function parseNixLogLine(line: string): NixLogEvent | null {
  const trimmed = line.replace(/\r$/, '');
  if (!trimmed.startsWith('@nix ')) return trimmed.trim() ? { action: 'text', text: stripAnsi(trimmed) } : null;
  let obj: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(quoteIds(trimmed.slice(5)));
    if (!parsed || typeof parsed !== 'object') return null;
    obj = parsed as Record<string, unknown>;
  } catch {
    return null;
  }
  const fields = Array.isArray(obj.fields) ? (obj.fields as unknown[]) : [];
  const num = (v: unknown, d: number) => (typeof v === 'number' ? v : d);
  switch (obj.action) {
    case 'start': {
      const id = asId(obj.id);
      if (id === null) return null;
      return {
        action: 'start',
        id,
        parent: asId(obj.parent),
        type: num(obj.type, Act.Unknown),
        level: num(obj.level, 3),
        text: typeof obj.text === 'string' ? stripAnsi(obj.text) : '',
        fields,
      };
    }
    case 'stop': {
      const id = asId(obj.id);
      return id === null ? null : { action: 'stop', id };
    }
    case 'result': {
      const id = asId(obj.id);
      if (id === null || typeof obj.type !== 'number') return null;
      return { action: 'result', id, type: obj.type, fields };
    }
    case 'msg':
      return typeof obj.msg === 'string' ? { action: 'msg', level: num(obj.level, 0), msg: stripAnsi(obj.msg) } : null;
    default:
      return null;
  }
}

interface Activity {
  id: string;
  type: number;
  text: string;
  seq: number;
  done: number;
  expected: number;
  running: number;
  failed: number;
  /** SetExpected contributions of this activity, per activity type. */
  expectedByType: Map<number, number>;
  /** Build activities: the derivation and its current phase. */
  drvPath: string | null;
  phase: string | null;
  /** Build activities: the remote builder it runs on ("" in nix's event: here). */
  machine: string | null;
}

interface TypeTotals {
  /** Done/failed of activities that have stopped. */
  done: number;
  failed: number;
  /** Sum of SetExpected values of live activities. */
  expected: number;
}

/** Activities whose start nix's default output shows ("building '…'", "copying path '…'"). */
const LOGGED_STARTS: ReadonlySet<number> = new Set([
  Act.Unknown,
  Act.CopyPath,
  Act.FileTransfer,
  Act.Build,
  Act.Substitute,
  Act.PostBuildHook,
]);

/** Activities that start once evaluation is over (`nix build` realises its derivations). */
const REALISING: ReadonlySet<number> = new Set([
  Act.Realise,
  Act.Builds,
  Act.Build,
  Act.CopyPaths,
  Act.CopyPath,
  Act.Substitute,
]);

const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);

export interface ApplyOutcome {
  /** A human line for the build log, if this event makes one. */
  line?: string;
  /** The progress visible to a user may have changed. */
  changed: boolean;
}

/** The state of one `nix build` run, fed one log line at a time. */
export class ProgressTracker {
  private readonly acts = new Map<string, Activity>();
  private readonly totals = new Map<number, TypeTotals>();
  private readonly logs = new Map<string, string[]>();
  private seq = 0;
  private lastLine: string | null = null;
  /** The builder of the latest remote build (kept after it ends, for the finished build's line). */
  private lastRemote: string | null = null;
  private percentFloor = 0;
  private finished = false;
  /** Nix started realising something: its evaluation is over. */
  private realising = false;
  /** Error messages (level 0), colours removed, in order. */
  readonly errors: string[] = [];
  private readonly tailMax: number;

  constructor(opts: { tailLines?: number } = {}) {
    this.tailMax = opts.tailLines ?? 50;
  }

  /** Parse and apply one stderr line. */
  feed(line: string): ApplyOutcome {
    const ev = parseNixLogLine(line);
    return ev ? this.apply(ev) : { changed: false };
  }

  apply(ev: NixLogEvent): ApplyOutcome {
    switch (ev.action) {
      case 'text':
        this.lastLine = ev.text;
        return { line: ev.text, changed: true };
      case 'msg': {
        if (ev.level === 0) this.errors.push(ev.msg);
        // error, warn, notice and info are what `nix build` prints by default.
        return ev.level <= 3 ? { line: ev.msg, changed: false } : { changed: false };
      }
      case 'start': {
        const act: Activity = {
          id: ev.id,
          type: ev.type,
          text: ev.text,
          seq: this.seq++,
          done: 0,
          expected: 0,
          running: 0,
          failed: 0,
          expectedByType: new Map(),
          drvPath: null,
          phase: null,
          machine: null,
        };
        if (ev.type === Act.Build && typeof ev.fields[0] === 'string') act.drvPath = ev.fields[0];
        // actBuild's fields: [drvPath, machineName, round, nrRounds]; a name means a remote build.
        if (ev.type === Act.Build && typeof ev.fields[1] === 'string' && ev.fields[1] !== '') {
          act.machine = ev.fields[1];
          this.lastRemote = ev.fields[1];
        }
        if (REALISING.has(ev.type)) this.realising = true;
        this.acts.set(ev.id, act);
        const shown = ev.level <= 3 && ev.text !== '' && LOGGED_STARTS.has(ev.type);
        return { ...(shown ? { line: ev.text } : {}), changed: ev.type === Act.Build };
      }
      case 'stop': {
        const act = this.acts.get(ev.id);
        if (!act) return { changed: false };
        const t = this.totalsOf(act.type);
        t.done += act.done;
        t.failed += act.failed;
        for (const [type, n] of act.expectedByType) this.totalsOf(type).expected -= n;
        this.acts.delete(ev.id);
        return { changed: true };
      }
      case 'result':
        return this.applyResult(ev);
    }
  }

  private applyResult(ev: Extract<NixLogEvent, { action: 'result' }>): ApplyOutcome {
    const act = this.acts.get(ev.id);
    if (!act) return { changed: false };
    switch (ev.type) {
      case Res.BuildLogLine:
      case Res.PostBuildLogLine: {
        const text = typeof ev.fields[0] === 'string' ? stripAnsi(ev.fields[0]) : '';
        this.lastLine = text;
        if (act.drvPath) {
          let tail = this.logs.get(act.drvPath);
          if (!tail) this.logs.set(act.drvPath, (tail = []));
          tail.push(text);
          if (tail.length > this.tailMax) tail.shift();
        }
        // Like `nix build -L`: prefix with the derivation's name, builds can interleave.
        return { line: act.drvPath ? `${drvName(act.drvPath)}> ${text}` : text, changed: true };
      }
      case Res.SetPhase: {
        if (typeof ev.fields[0] === 'string') act.phase = ev.fields[0];
        return { changed: true };
      }
      case Res.Progress: {
        act.done = count(ev.fields[0]);
        act.expected = count(ev.fields[1]);
        act.running = count(ev.fields[2]);
        act.failed = count(ev.fields[3]);
        return { changed: true };
      }
      case Res.SetExpected: {
        const type = ev.fields[0];
        if (typeof type !== 'number') return { changed: false };
        const n = count(ev.fields[1]);
        const t = this.totalsOf(type);
        t.expected += n - (act.expectedByType.get(type) ?? 0);
        act.expectedByType.set(type, n);
        return { changed: true };
      }
      default:
        return { changed: false };
    }
  }

  private totalsOf(type: number): TypeTotals {
    let t = this.totals.get(type);
    if (!t) this.totals.set(type, (t = { done: 0, failed: 0, expected: 0 }));
    return t;
  }

  /** done / expected / running for one activity type, the way nix's progress bar adds them up. */
  private aggregate(type: number): { done: number; expected: number; running: number } {
    const t = this.totals.get(type) ?? { done: 0, failed: 0, expected: 0 };
    let done = t.done;
    let expected = t.done;
    let running = 0;
    for (const a of this.acts.values()) {
      if (a.type !== type) continue;
      done += a.done;
      expected += a.expected;
      running += a.running;
    }
    return { done, expected: Math.max(expected, t.expected), running };
  }

  /** The build currently running that started last. */
  private currentBuild(): Activity | null {
    let cur: Activity | null = null;
    for (const a of this.acts.values()) if (a.type === Act.Build && (!cur || a.seq > cur.seq)) cur = a;
    return cur;
  }

  /** Mark the run finished: percent becomes 100 when it succeeded. */
  finish(succeeded: boolean): void {
    this.finished = succeeded;
  }

  progress(): BuildProgress {
    const builds = this.aggregate(Act.Builds);
    const copies = this.aggregate(Act.CopyPaths);
    const transfer = this.aggregate(Act.FileTransfer);
    const bytes = transfer.expected > 0 || transfer.done > 0 ? transfer : this.aggregate(Act.CopyPath);
    const cur = this.currentBuild();
    const units = builds.expected + copies.expected;
    const raw = units > 0 ? ((builds.done + copies.done) / units) * 100 : 0;
    const percent = this.finished ? 100 : Math.min(99, Math.max(this.percentFloor, Math.floor(raw)));
    this.percentFloor = percent;
    return {
      buildsDone: builds.done,
      buildsExpected: Math.max(builds.expected, builds.done),
      buildsRunning: builds.running,
      downloadsDone: copies.done,
      downloadsExpected: Math.max(copies.expected, copies.done),
      bytesDone: bytes.done,
      bytesExpected: Math.max(bytes.expected, bytes.done),
      currentDrv: cur?.drvPath ?? null,
      phase: cur?.phase ?? null,
      remote: cur ? cur.machine : this.lastRemote,
      lastLine: this.lastLine,
      percent,
      stage: this.realising || this.finished ? 'building' : 'evaluating',
    };
  }

  /** The last log lines a derivation's builder wrote (up to the configured tail). */
  logTail(drvPath: string): string[] {
    return [...(this.logs.get(drvPath) ?? [])];
  }

  /** Derivations that wrote log lines, most recent build last. */
  builtDerivations(): string[] {
    return [...this.logs.keys()];
  }
}
