/**
 * The one way tests wait. A wait names what it waits for, has a deadline, and races the process
 * it depends on: if that process exits first the wait fails at once with its exit status and its
 * output, instead of running out its time and looking like a slow machine. A failing condition
 * (a socket not there yet) counts as "not yet", and the last such error is in the message.
 */
import type { ChildProcess } from 'node:child_process';

/** Default deadline: generous, as the suite shares two cores with other work. */
export const WAIT_MS = 30_000;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** An in-process run that threw (watchRun). */
  error?: string;
}

/** A process a wait depends on. */
export interface Watched {
  /** For messages, e.g. "the vfkit simulator (pid 123)". */
  readonly name: string;
  /** Settles when the process has exited. */
  readonly exited: Promise<Exit>;
  /** What it has written so far that says why it failed (its stderr, or its log). */
  output(): string;
}

export interface WaitOptions {
  /** What is awaited, for the message: "the REST socket of vm3". */
  what: string;
  timeoutMs?: number;
  /** The process(es) whose exit ends the wait. */
  process?: Watched | readonly Watched[];
  /** Poll interval for conditions; default 25 ms. */
  intervalMs?: number;
  /** More to say when the wait fails (the last snapshot, the file's content…). */
  detail?: () => string;
}

/** What a condition returns when it holds. */
export type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

export class WaitError extends Error {
  override name = 'WaitError';
}

/** The last `max` characters of `s`, on whole lines. */
export function tail(s: string, max = 4000): string {
  if (s.length <= max) return s;
  const cut = s.slice(-max);
  return `…${cut.slice(cut.indexOf('\n') + 1)}`;
}

function describeExit(e: Exit): string {
  if (e.error !== undefined) return `failed (${e.error})`;
  return e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
}

/**
 * Resolves with `promise`'s value, or fails when it has not settled within the deadline or when
 * a watched process exits first. The promise's own rejection passes through unchanged.
 */
export function settles<T>(promise: Promise<T>, opts: WaitOptions): Promise<T> {
  return race(promise, opts);
}

/** settles(), with a last look (`final`) when a watched process exits: a value there still wins. */
function race<T>(promise: Promise<T>, opts: WaitOptions, final?: () => Promise<T | undefined>): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? WAIT_MS;
  const watched = opts.process === undefined ? [] : Array.isArray(opts.process) ? opts.process : [opts.process];
  const started = Date.now();
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn();
    };
    const extra = () => {
      const parts: string[] = [];
      const d = opts.detail?.();
      if (d) parts.push(d);
      for (const w of watched as Watched[]) {
        const out = w.output().trim();
        parts.push(out ? `${w.name} wrote:\n${tail(out)}` : `${w.name} wrote nothing.`);
      }
      return parts.length ? `\n${parts.join('\n')}` : '';
    };
    const timer = setTimeout(() => {
      const running = (watched as Watched[]).map((w) => `${w.name} is still running`).join('; ');
      finish(() =>
        reject(
          new WaitError(
            `Timed out after ${timeoutMs} ms waiting for ${opts.what}${running ? ` (${running})` : ''}.${extra()}`,
          ),
        ),
      );
    }, timeoutMs);
    promise.then(
      (v) => finish(() => resolve(v)),
      (e: unknown) => finish(() => reject(e)),
    );
    for (const w of watched as Watched[]) {
      void w.exited.then(async (exit) => {
        if (done) return;
        // What we waited for may have happened just before the exit: look once more.
        const last = await final?.().catch(() => undefined);
        if (last !== undefined) return finish(() => resolve(last));
        finish(() =>
          reject(
            new WaitError(
              `${w.name} ${describeExit(exit)} after ${Date.now() - started} ms, while we waited for ${opts.what}.${extra()}`,
            ),
          ),
        );
      });
    }
  });
}

/**
 * Polls `cond` until it returns a truthy value (returned), within the deadline and before any
 * watched process exits. A `cond` that throws counts as "not yet"; a call that hangs is cut off
 * by the deadline.
 */
export async function waitFor<T>(cond: () => T | Promise<T>, opts: WaitOptions): Promise<Truthy<T>> {
  const interval = opts.intervalMs ?? 25;
  let lastError: unknown = null;
  let stop = false;
  const poll = (async () => {
    for (;;) {
      try {
        const v = await cond();
        if (v) return v as Truthy<T>;
        lastError = null;
      } catch (e) {
        lastError = e;
      }
      if (stop) throw new WaitError('stopped');
      await new Promise((r) => setTimeout(r, interval));
    }
  })();
  try {
    const detail = () =>
      [
        lastError ? `Last try: ${lastError instanceof Error ? lastError.message : String(lastError)}` : '',
        opts.detail?.(),
      ]
        .filter(Boolean)
        .join('\n');
    const final = async () => ((await cond()) || undefined) as Truthy<T> | undefined;
    return await race(poll, { ...opts, detail }, final);
  } finally {
    stop = true;
    poll.catch(() => {});
  }
}

/** A child process as a Watched, keeping its stderr (and stdout, if `stdout` is true) as it comes. */
export function watchChild(child: ChildProcess, name: string, opts: { stdout?: boolean } = {}): Watched {
  let out = '';
  child.stderr?.on('data', (c: Buffer | string) => (out += c.toString()));
  if (opts.stdout) child.stdout?.on('data', (c: Buffer | string) => (out += c.toString()));
  const exited = new Promise<Exit>((resolve) => {
    const gone = (exit: Exit) => {
      // Its last words may still be in the pipe: wait for the pipes to close, but not for a
      // grandchild that inherited them and lives on.
      const t = setTimeout(() => resolve(exit), 500);
      child.once('close', () => {
        clearTimeout(t);
        resolve(exit);
      });
    };
    if (child.exitCode !== null || child.signalCode !== null) gone({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => gone({ code, signal }));
  });
  return { name: `${name} (pid ${child.pid})`, exited, output: () => out };
}

/** An in-process run (a promise of its exit code) as a Watched: a wait fails if it ends first. */
export function watchRun(run: Promise<unknown>, name: string, output: () => string = () => ''): Watched {
  const exited = run.then(
    (v): Exit => ({ code: typeof v === 'number' ? v : 0, signal: null }),
    (e: unknown): Exit => ({ code: null, signal: null, error: e instanceof Error ? e.message : String(e) }),
  );
  return { name, exited, output };
}
