/**
 * What each running VM's vfkit uses (CPU, resident memory), sampled from the process table only
 * while some face asks for it (a subscriber with `usage`, e.g. the open dropdown): ps every few
 * seconds costs nothing worth having when nobody looks. The samples go into the VMs' snapshots.
 */
import { errorMessage } from '../api/errors.ts';
import type { VmUsage } from '../api/types.ts';
import type { VmProcessUsage } from '../host/process-usage.ts';

/** A running VM's vfkit: its pid and when it started (to tell its macOS VM service by). */
export interface VfkitProcess {
  pid: number;
  startedAt: number | null;
}

export interface UsageSamplerOptions {
  /** The running VMs' vfkits, by VM name. */
  vfkits(): Map<string, VfkitProcess>;
  /** What each uses, by vfkit pid. */
  sample(vfkits: VfkitProcess[]): Promise<Map<number, VmProcessUsage>>;
  /** The samples changed: a snapshot is due. */
  changed(): void;
  intervalMs: number;
  /** How long sampling outlives the last face asking (a face re-subscribing drops and takes it again; default 1 s). */
  stopGraceMs?: number;
  log(line: string): void;
}

export class UsageSampler {
  readonly #o: UsageSamplerOptions;
  #usage = new Map<string, VmUsage>();
  #wanted = false;
  #timer: NodeJS.Timeout | null = null;
  #stopTimer: NodeJS.Timeout | null = null;
  #running = false;
  #closed = false;

  constructor(o: UsageSamplerOptions) {
    this.#o = o;
  }

  /** Whether a face wants usage now; sampling starts at once, and stops (forgetting the samples) when not. */
  want(on: boolean): void {
    if (this.#closed) return;
    if (this.#stopTimer) clearTimeout(this.#stopTimer);
    this.#stopTimer = null;
    if (on === this.#wanted) return;
    if (on) {
      this.#wanted = true;
      void this.#tick();
      return;
    }
    this.#stopTimer = setTimeout(() => this.#stop(), this.#o.stopGraceMs ?? 1000);
    this.#stopTimer.unref?.();
  }

  #stop(): void {
    this.#stopTimer = null;
    this.#wanted = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#usage.size) {
      // A number nobody refreshes would read as current: drop it.
      this.#usage = new Map();
      this.#o.changed();
    }
  }

  get sampling(): boolean {
    return this.#wanted;
  }

  usage(vm: string): VmUsage | null {
    return this.#usage.get(vm) ?? null;
  }

  close(): void {
    this.#closed = true;
    this.#wanted = false;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#stopTimer) clearTimeout(this.#stopTimer);
    this.#timer = null;
    this.#stopTimer = null;
  }

  async #tick(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#timer = null;
    try {
      const byVm = this.#o.vfkits();
      const samples = byVm.size ? await this.#o.sample([...byVm.values()]) : new Map<number, VmProcessUsage>();
      if (!this.#wanted) return;
      const at = Date.now();
      const next = new Map<string, VmUsage>();
      for (const [vm, v] of byVm) {
        const u = samples.get(v.pid);
        if (u) next.set(vm, { cpuPercent: u.cpuPercent, rssBytes: u.rssBytes, vmService: u.vmService, at });
      }
      const same =
        next.size === this.#usage.size &&
        [...next].every(([vm, u]) => {
          const old = this.#usage.get(vm);
          return (
            old !== undefined &&
            old.cpuPercent === u.cpuPercent &&
            old.rssBytes === u.rssBytes &&
            old.vmService === u.vmService
          );
        });
      this.#usage = next;
      if (!same) this.#o.changed();
    } catch (err) {
      this.#o.log(`sampling the VMs' CPU and memory: ${errorMessage(err)}`);
    } finally {
      this.#running = false;
      if (this.#wanted && !this.#closed) {
        this.#timer = setTimeout(() => void this.#tick(), this.#o.intervalMs);
        this.#timer.unref?.();
      }
    }
  }
}
