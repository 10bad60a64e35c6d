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
