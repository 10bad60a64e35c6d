/**
 * Stopping a vfkit, politest first: REST Stop (the guest's ACPI shutdown), then REST HardStop,
 * SIGTERM (vfkit asks the guest, then forces it off after 5 s), SIGKILL. Each step waits for the
 * process to end before the next; a step that cannot be sent (vfkit refusing Stop before the
 * guest takes ACPI, or already gone) moves on at once.
 */
import type { VfkitRest } from './rest.ts';

export interface StopTarget {
  name: string;
  pid: number;
  rest: VfkitRest;
  /** Settles when the process is known to be gone. */
  ended: Promise<unknown>;
  readonly isEnded: boolean;
}

export interface StopTimeouts {
  stopTimeoutMs: number;
  hardStopTimeoutMs: number;
  termTimeoutMs: number;
}

/** Escalate until the process ended; false when even SIGKILL did not end it. */
export async function escalateStop(r: StopTarget, t: StopTimeouts, log: (line: string) => void): Promise<boolean> {
  const restChange = async (change: 'Stop' | 'HardStop'): Promise<boolean> => {
    try {
      await r.rest.setState(change, { timeoutMs: 3000 });
      return true;
    } catch (err) {
      log(`VM ${JSON.stringify(r.name)}: ${change} failed: ${(err as Error).message}`);
      return false;
    }
  };
  const signal = (sig: NodeJS.Signals): boolean => {
    try {
      process.kill(r.pid, sig);
      return true;
    } catch {
      return false;
    }
  };
  const steps: Array<{ what: string; act: () => Promise<boolean>; waitMs: number }> = [
    { what: 'REST Stop', act: () => restChange('Stop'), waitMs: t.stopTimeoutMs },
    { what: 'REST HardStop', act: () => restChange('HardStop'), waitMs: t.hardStopTimeoutMs },
    { what: 'SIGTERM', act: async () => signal('SIGTERM'), waitMs: t.termTimeoutMs },
    { what: 'SIGKILL', act: async () => signal('SIGKILL'), waitMs: 5_000 },
  ];
  for (const step of steps) {
    if (r.isEnded) break;
    if (!(await step.act())) continue;
    log(
      `VM ${JSON.stringify(r.name)}: sent ${step.what}, waiting up to ${step.waitMs} ms for vfkit (pid ${r.pid}) to exit`,
    );
    if (await waitEnded(r, step.waitMs)) break;
  }
  return r.isEnded;
}

function waitEnded(r: StopTarget, ms: number): Promise<boolean> {
  if (r.isEnded) return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void r.ended.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}
