/**
 * Learning how an adopted vfkit ends. An adopted process is not our child, so no exit event comes:
 * hold an idle connection to its REST socket (it closes when vfkit exits), and check the pid every
 * few seconds as a fallback. Idle cost is the point: nothing is polled while a VM simply runs.
 */
import { pidAlive, pidGone } from '../../host/process.ts';
import type { EndInfo } from './ending.ts';
import type { VfkitRest } from './rest.ts';

/** The run being watched, as the supervisor owns it. */
export interface WatchedRun {
  readonly pid: number;
  readonly rest: VfkitRest;
  readonly isEnded: boolean;
  /** The process is gone; its exit status went to whoever was its parent. */
  settle(info: EndInfo): void;
}

export interface WatchHooks {
  /** Still the VM's current run (a newer run replaces it)? */
  current(): boolean;
  /** The REST API answered after having been silent. */
  answered(): void;
}

interface State {
  hooks: WatchHooks;
  unwatch: (() => void) | null;
  lastArm: number;
  rearmDelay: number;
  /** Back-off while the vfkit is alive but its REST API silent. */
  silentDelay: number;
  fastPoll: NodeJS.Timeout | null;
}

const GONE: EndInfo = { code: null, signal: null };

export class ExitWatch {
  readonly #livenessIntervalMs: number;
  readonly #runs = new Map<WatchedRun, State>();
  #liveness: NodeJS.Timeout | null = null;
  /** close() was called: no watch, timer or re-arm may start after it. */
  #closed = false;

  constructor(livenessIntervalMs: number) {
    this.#livenessIntervalMs = livenessIntervalMs;
  }

  /** Start keeping an eye on an adopted run (the pid check; `arm` adds the REST connection). */
  track(r: WatchedRun, hooks: WatchHooks): void {
    this.#runs.set(r, { hooks, unwatch: null, lastArm: 0, rearmDelay: 0, silentDelay: 0, fastPoll: null });
    this.#ensureLiveness();
  }

  /** Hold an idle REST connection; it closes when vfkit exits (or, with a server that drops idle connections, now and then). */
  arm(r: WatchedRun): void {
    const s = this.#runs.get(r);
    if (this.#closed || !s || r.isEnded || !s.hooks.current()) return;
    s.unwatch?.();
    s.lastArm = Date.now();
    const w = r.rest.watch(() => {
      s.unwatch = null;
      void this.confirm(r);
    });
    s.unwatch = w.cancel;
  }

  /** Look again in `ms`. */
  confirmLater(r: WatchedRun, ms: number): void {
    setTimeout(() => void this.confirm(r), ms).unref();
  }

  /** Is it still there? Settles the run when it is gone; otherwise re-arms the watch. */
  async confirm(r: WatchedRun): Promise<void> {
    const s = this.#runs.get(r);
    if (this.#closed || !s || r.isEnded || !s.hooks.current()) return;
    // REST first: answering is proof of life and costs no process spawn (an idle-closing server
    // sends us here every few seconds).
    let answers = false;
    if (pidAlive(r.pid)) {
      try {
        await r.rest.getState({ timeoutMs: 2000 });
        answers = true;
      } catch {
        // Gone or on its way out; decided below.
      }
    }
    if (r.isEnded || !s.hooks.current()) return;
    if (!answers) {
      if (await pidGone(r.pid)) r.settle(GONE);
      else {
        // Alive but silent: exiting, or hung; look again shortly (the liveness timer also keeps checking).
        s.silentDelay = Math.min(Math.max(s.silentDelay, 500) * 2, 30_000);
        this.confirmLater(r, s.silentDelay);
      }
      return;
    }
    s.silentDelay = 0;
    s.hooks.answered();
    if (s.unwatch) return; // already watched (we came here from the liveness timer)
    // Still there: the server closed an idle connection (vfkit does not; a Node server would only
    // if asked to). Re-arm, backing off if it keeps closing quickly so a misbehaving server cannot make us spin.
    const lived = Date.now() - s.lastArm;
    s.rearmDelay = lived < 1000 ? Math.min(Math.max(s.rearmDelay, 500) * 2, 30_000) : 0;
    if (s.rearmDelay) setTimeout(() => this.arm(r), s.rearmDelay).unref();
    else this.arm(r);
  }

  /** While stopping an adopted VM: check often, it is about to go. */
  startFastPoll(r: WatchedRun): void {
    const s = this.#runs.get(r);
    if (!s || s.fastPoll) return;
    let tick = 0;
    s.fastPoll = setInterval(() => {
      if (!pidAlive(r.pid)) r.settle(GONE);
      // Once a second also catch a zombie nobody reaps (kill(pid, 0) succeeds on those).
      else if (++tick % 10 === 0) void pidGone(r.pid).then((gone) => gone && r.settle(GONE));
    }, 100);
    s.fastPoll.unref();
  }

  stopFastPoll(r: WatchedRun): void {
    const s = this.#runs.get(r);
    if (s?.fastPoll) clearInterval(s.fastPoll);
    if (s) s.fastPoll = null;
  }

  /** The run ended: drop its connection and timers. */
  forget(r: WatchedRun): void {
    const s = this.#runs.get(r);
    if (!s) return;
    s.unwatch?.();
    this.stopFastPoll(r);
    this.#runs.delete(r);
  }

  close(): void {
    this.#closed = true;
    if (this.#liveness) clearInterval(this.#liveness);
    this.#liveness = null;
    for (const r of [...this.#runs.keys()]) this.forget(r);
  }

  #ensureLiveness(): void {
    if (this.#closed || this.#liveness) return;
    this.#liveness = setInterval(() => {
      let any = false;
      for (const r of this.#runs.keys()) {
        if (r.isEnded) continue;
        any = true;
        if (!pidAlive(r.pid)) void this.confirm(r);
      }
      if (!any && this.#liveness) {
        clearInterval(this.#liveness);
        this.#liveness = null;
      }
    }, this.#livenessIntervalMs);
    this.#liveness.unref();
  }
}
