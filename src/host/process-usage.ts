/**
 * What processes use right now, from the process table: `ps -o pid=,%cpu=,rss= -p <pids>`
 * through the runner (BSD ps on macOS and procps agree on these columns: %cpu in percent of one
 * core, rss in KiB). One ps for all pids; a pid that is gone is simply not in the answer.
 */
import { run, type RunOptions, type RunResult } from './runner.ts';

export interface ProcessUsage {
  cpuPercent: number;
  rssBytes: number;
}

const PS: RunOptions = { allowFailure: true, searchPath: ['/bin', '/usr/bin'], timeoutMs: 5000 };

export function processUsageArgv(pids: readonly number[]): string[] {
  return ['ps', '-o', 'pid=,%cpu=,rss=', '-p', pids.join(',')];
}

/** ps's answer, line by line; lines that are not "pid cpu rss" are skipped. */
export function parseProcessUsage(stdout: string): Map<number, ProcessUsage> {
  const out = new Map<number, ProcessUsage>();
  for (const line of stdout.split('\n')) {
    // Some locales print a decimal comma in %cpu.
    const m = /^\s*(\d+)\s+(\d+(?:[.,]\d+)?)\s+(\d+)\s*$/.exec(line);
    if (!m) continue;
    out.set(Number(m[1]), { cpuPercent: Number(m[2]!.replace(',', '.')), rssBytes: Number(m[3]) * 1024 });
  }
  return out;
}

/** The usage of each pid still alive; empty when ps could not run. */
export async function processUsage(
  pids: readonly number[],
  runner: (argv: string[], o: RunOptions) => Promise<RunResult> = run,
): Promise<Map<number, ProcessUsage>> {
  const valid = pids.filter((p) => Number.isInteger(p) && p > 0);
  if (valid.length === 0) return new Map();
  const r = await runner(processUsageArgv(valid), PS).catch(() => null);
  return r ? parseProcessUsage(r.stdout) : new Map();
}

/**
 * On macOS a guest does not run inside vfkit: Virtualization.framework runs each VM in an XPC
 * service process of its own (Activity Monitor's "Virtual Machine Service"), which holds the
 * guest's memory and burns its CPU; vfkit is only its client. That process is launchd's child,
 * not vfkit's, and ps names no client, so it is told apart by when it started: within moments of
 * its vfkit. (A VM another app starts in that same window could be taken for ours; rare.)
 */
export const VZ_SERVICE = 'com.apple.Virtualization.VirtualMachine';

/** How long after its vfkit a VM service may start (or before: ps's etime has 1 s steps). */
const SERVICE_AFTER_MS = 30_000;
const SERVICE_BEFORE_MS = 3_000;

export function vmServicesArgv(): string[] {
  return ['ps', '-A', '-o', 'pid=,etime=,%cpu=,rss=,comm='];
}

/** ps's etime, `[[dd-]hh:]mm:ss`, in seconds; null when it is not one. */
export function parseEtime(s: string): number | null {
  const m = /^(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)$/.exec(s.trim());
  if (!m) return null;
  return ((Number(m[1] ?? 0) * 24 + Number(m[2] ?? 0)) * 60 + Number(m[3])) * 60 + Number(m[4]);
}

export interface ServiceProcess extends ProcessUsage {
  pid: number;
  /** Epoch ms, to the second. */
  startedAt: number;
}

/** The VM service processes in `ps -A -o pid=,etime=,%cpu=,rss=,comm=` (comm last: a path may hold spaces). */
export function parseVmServices(stdout: string, now: number): ServiceProcess[] {
  const out: ServiceProcess[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^\s*(\d+)\s+(\S+)\s+(\d+(?:[.,]\d+)?)\s+(\d+)\s+(.+?)\s*$/.exec(line);
    if (!m) continue;
    const comm = m[5]!;
    if (comm.slice(comm.lastIndexOf('/') + 1) !== VZ_SERVICE) continue;
    const age = parseEtime(m[2]!);
    if (age === null) continue;
    out.push({
      pid: Number(m[1]),
      startedAt: now - age * 1000,
      cpuPercent: Number(m[3]!.replace(',', '.')),
      rssBytes: Number(m[4]) * 1024,
    });
  }
  return out;
}

/**
 * Each vfkit's VM service: the first one not yet taken that started within moments of it, vfkits
 * taken oldest first (a service starts after its vfkit, so an older vfkit never takes a younger
 * one's: the younger one's service starts after the older one's).
 */
export function pairVmServices(
  vfkits: readonly { pid: number; startedAt: number }[],
  services: readonly ServiceProcess[],
): Map<number, ServiceProcess> {
  const free = [...services].sort((a, b) => a.startedAt - b.startedAt);
  const out = new Map<number, ServiceProcess>();
  for (const v of [...vfkits].sort((a, b) => a.startedAt - b.startedAt)) {
    const i = free.findIndex(
      (s) => s.startedAt >= v.startedAt - SERVICE_BEFORE_MS && s.startedAt <= v.startedAt + SERVICE_AFTER_MS,
    );
    if (i < 0) continue;
    out.set(v.pid, free[i]!);
    free.splice(i, 1);
  }
  return out;
}

export interface VmProcessUsage extends ProcessUsage {
  /** The VM service's share is in it (macOS), not vfkit's alone. */
  vmService: boolean;
}

/**
 * What each VM uses, by its vfkit's pid: vfkit's own CPU and memory, plus, on macOS, its VM
 * service's (where the guest really runs). One ps for the vfkits, one more on macOS for the services.
 */
export async function vmProcessUsage(
  vfkits: readonly { pid: number; startedAt: number | null }[],
  o: {
    platform?: NodeJS.Platform;
    now?: number;
    runner?: (argv: string[], o: RunOptions) => Promise<RunResult>;
  } = {},
): Promise<Map<number, VmProcessUsage>> {
  const runner = o.runner ?? run;
  const own = await processUsage(
    vfkits.map((v) => v.pid),
    runner,
  );
  const out = new Map<number, VmProcessUsage>();
  for (const [pid, u] of own) out.set(pid, { ...u, vmService: false });
  if ((o.platform ?? process.platform) !== 'darwin' || own.size === 0) return out;
  const r = await runner(vmServicesArgv(), PS).catch(() => null);
  if (!r) return out;
  const started = vfkits.flatMap((v) =>
    v.startedAt !== null && own.has(v.pid) ? [{ pid: v.pid, startedAt: v.startedAt }] : [],
  );
  for (const [pid, s] of pairVmServices(started, parseVmServices(r.stdout, o.now ?? Date.now()))) {
    const u = own.get(pid)!;
    out.set(pid, {
      cpuPercent: Math.round((u.cpuPercent + s.cpuPercent) * 10) / 10,
      rssBytes: u.rssBytes + s.rssBytes,
      vmService: true,
    });
  }
  return out;
}
