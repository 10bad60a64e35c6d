/**
 * Give back what a burst of work left behind. A menubar agent idles for hours between bursts
 * (starting ten VMs, a rebuild); V8 keeps the heap it grew to for them. Once nothing has happened
 * for a while, one full garbage collection returns that slack to the OS: a resting agent then
 * costs what it holds, not what it once needed. One collection per quiet spell, never a timer
 * that keeps firing.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

export interface IdleTrim {
  /** Something happened: the quiet spell starts again. */
  activity(): void;
  stop(): void;
}

let collect: (() => void) | null | undefined;

/** Node's gc(), made available at run time (the daemon is not started with --expose-gc). */
function gcFunction(): (() => void) | null {
  if (collect !== undefined) return collect;
  try {
    v8.setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as () => void;
  } catch {
    collect = null;
  }
  return collect;
}

/** True when a collection can be asked for (for tests and the agent log). */
export function gcAvailable(): boolean {
  return gcFunction() !== null;
}

export function trimWhenIdle(quietMs = 15_000, gc: (() => void) | null = gcFunction()): IdleTrim {
  let timer: NodeJS.Timeout | null = null;
  const arm = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      gc?.();
    }, quietMs);
    timer.unref();
  };
  arm();
  return {
    activity: arm,
    stop() {
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}
