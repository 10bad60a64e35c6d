/**
 * What a running VM's vfkit uses: ps's columns parsed (BSD ps and procps), the real ps asked
 * about this process, and the sampler that runs only while some subscriber asks for usage.
 */
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  pairVmServices,
  parseEtime,
  parseProcessUsage,
  parseVmServices,
  processUsage,
  processUsageArgv,
  vmProcessUsage,
  vmServicesArgv,
} from '../../src/host/process-usage.ts';
import type { RunResult } from '../../src/host/runner.ts';
import { EventHub } from '../../src/core/event-hub.ts';
import { UsageSampler } from '../../src/core/usage.ts';
import { snapshot } from './snapshot-factory.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('process usage from ps', () => {
  it('asks ps for pid, %cpu and rss of all pids at once', () => {
    expect(processUsageArgv([12, 345])).toEqual(['ps', '-o', 'pid=,%cpu=,rss=', '-p', '12,345']);
  });

  it("reads BSD ps's and procps' columns (rss in KiB), a decimal comma too, and skips other lines", () => {
    const out = parseProcessUsage('  412  12.5 1048576\n 7001   0,3   20480\nps: no such process\n\n99 101.0 8\n');
    expect([...out]).toEqual([
      [412, { cpuPercent: 12.5, rssBytes: 1024 ** 3 }],
      [7001, { cpuPercent: 0.3, rssBytes: 20 * 1024 ** 2 }],
      [99, { cpuPercent: 101, rssBytes: 8192 }],
    ]);
  });

  it('asks the real ps about live processes; a pid that is gone is not in the answer', async () => {
    const child = spawn('sleep', ['30']);
    try {
      const dead = spawn('true');
      await new Promise((r) => dead.once('exit', r));
      const u = await processUsage([process.pid, child.pid!, dead.pid!]);
      expect([...u.keys()].sort()).toEqual([process.pid, child.pid!].sort());
      // This process holds at least its heap in memory.
      expect(u.get(process.pid)!.rssBytes).toBeGreaterThan(10 * 1024 * 1024);
      expect(u.get(child.pid!)!.cpuPercent).toBeGreaterThanOrEqual(0);
      expect(await processUsage([])).toEqual(new Map());
    } finally {
      child.kill();
    }
  });
});

// Written in BSD ps's format for `ps -A -o pid=,etime=,%cpu=,rss=,comm=` (not recorded on a Mac):
// comm is the executable's path, the VM service's inside Virtualization.framework.
const SERVICE_PATH =
  '/System/Library/Frameworks/Virtualization.framework/Versions/A/XPCServices/com.apple.Virtualization.VirtualMachine.xpc/Contents/MacOS/com.apple.Virtualization.VirtualMachine';
const PS_A = [
  `    1 3-04:05:06   0.1  12000 /sbin/launchd`,
  // Another app's VM (Docker Desktop, say), up for a day.
  `  310 1-00:00:00  55.0 4194304 ${SERVICE_PATH}`,
  `  901    10:02   0.3  30000 /opt/homebrew/bin/vfkit`,
  `  905    10:01  12.5 2097152 ${SERVICE_PATH}`,
  `  950    00:41   0.2  29000 /opt/homebrew/bin/vfkit`,
  `  953    00:40 101.0 1048576 ${SERVICE_PATH}`,
  '  999    00:05   0.0   900 /Applications/My App.app/Contents/MacOS/My App',
].join('\n');

describe('macOS: the VM service a guest runs in', () => {
  const now = 10_000_000;

  it("reads ps's etime", () => {
    expect(parseEtime('00:41')).toBe(41);
    expect(parseEtime('10:02')).toBe(602);
    expect(parseEtime('02:00:01')).toBe(7201);
    expect(parseEtime('1-00:00:00')).toBe(86_400);
    expect(parseEtime('soon')).toBeNull();
  });

  it('finds the VM services in the process table, with when each started', () => {
    expect(vmServicesArgv()).toEqual(['ps', '-A', '-o', 'pid=,etime=,%cpu=,rss=,comm=']);
    expect(parseVmServices(PS_A, now)).toEqual([
      { pid: 310, startedAt: now - 86_400_000, cpuPercent: 55, rssBytes: 4 * 1024 ** 3 },
      { pid: 905, startedAt: now - 601_000, cpuPercent: 12.5, rssBytes: 2 * 1024 ** 3 },
      { pid: 953, startedAt: now - 40_000, cpuPercent: 101, rssBytes: 1024 ** 3 },
    ]);
  });

  it("gives each vfkit the service that started with it, never another app's", () => {
    const services = parseVmServices(PS_A, now);
    const pairs = pairVmServices(
      [
        { pid: 950, startedAt: now - 41_000 },
        { pid: 901, startedAt: now - 602_000 },
        // Started before nixvm knew (its record says so), and no service near it.
        { pid: 777, startedAt: now - 5_000_000 },
      ],
      services,
    );
    expect(Object.fromEntries([...pairs].map(([v, s]) => [v, s.pid]))).toEqual({ 901: 905, 950: 953 });
  });

  it("adds the service's CPU and memory to vfkit's on macOS only, from two ps runs", async () => {
    const runs: string[][] = [];
    const runner = async (argv: string[]): Promise<RunResult> => {
      runs.push(argv);
      const stdout = argv.includes('-A') ? PS_A : '  901   0.3  30000\n  950   0.2  29000\n';
      return { argv, exitCode: 0, signal: null, stdout, stderr: '', durationMs: 1 };
    };
    const vfkits = [
      { pid: 901, startedAt: now - 602_000 },
      { pid: 950, startedAt: now - 41_000 },
    ];
    const mac = await vmProcessUsage(vfkits, { platform: 'darwin', now, runner });
    expect(runs).toEqual([processUsageArgv([901, 950]), vmServicesArgv()]);
    expect(mac.get(901)).toEqual({ cpuPercent: 12.8, rssBytes: (30000 + 2097152) * 1024, vmService: true });
    expect(mac.get(950)).toEqual({ cpuPercent: 101.2, rssBytes: (29000 + 1048576) * 1024, vmService: true });
    runs.length = 0;
    const linux = await vmProcessUsage(vfkits, { platform: 'linux', now, runner });
    expect(runs).toEqual([processUsageArgv([901, 950])]);
    expect(linux.get(901)).toEqual({ cpuPercent: 0.3, rssBytes: 30000 * 1024, vmService: false });
  });
});

describe('UsageSampler', () => {
  function sampler(pids = new Map([['web', { pid: 41, startedAt: 1 }]])) {
    const calls: number[][] = [];
    let changes = 0;
    let cpu = 5;
    const s = new UsageSampler({
      vfkits: () => pids,
      sample: async (v) => {
        calls.push(v.map((x) => x.pid));
        return new Map(v.map(({ pid }) => [pid, { cpuPercent: cpu, rssBytes: 1024, vmService: false }]));
      },
      changed: () => changes++,
      intervalMs: 2000,
      stopGraceMs: 1000,
      log: () => {},
    });
    return {
      s,
      calls,
      changes: () => changes,
      setCpu: (n: number) => {
        cpu = n;
      },
    };
  }

  it('samples at once when wanted, again each interval, and never when nobody wants it', async () => {
    vi.useFakeTimers();
    const { s, calls, changes, setCpu } = sampler();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls).toEqual([]);
    expect(s.usage('web')).toBeNull();

    s.want(true);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual([[41]]);
    expect(s.usage('web')).toMatchObject({ cpuPercent: 5, rssBytes: 1024 });
    expect(changes()).toBe(1);
    // The same numbers again: no snapshot for nothing.
    await vi.advanceTimersByTimeAsync(2000);
    expect(calls).toHaveLength(2);
    expect(changes()).toBe(1);
    setCpu(7);
    await vi.advanceTimersByTimeAsync(2000);
    expect(s.usage('web')?.cpuPercent).toBe(7);
    expect(changes()).toBe(2);

    // Nobody asks: after the grace it stops and forgets (a number nobody refreshes would mislead).
    s.want(false);
    await vi.advanceTimersByTimeAsync(999);
    expect(s.usage('web')).not.toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(s.usage('web')).toBeNull();
    expect(changes()).toBe(3);
    const n = calls.length;
    await vi.advanceTimersByTimeAsync(20_000);
    expect(calls).toHaveLength(n);
    s.close();
  });

  it('a face that re-subscribes (drops, then asks again at once) does not restart it', async () => {
    vi.useFakeTimers();
    const { s, calls } = sampler();
    s.want(true);
    await vi.advanceTimersByTimeAsync(0);
    s.want(false);
    s.want(true);
    await vi.advanceTimersByTimeAsync(1500);
    expect(s.usage('web')).not.toBeNull();
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(500);
    expect(calls).toHaveLength(2);
    s.close();
  });

  it('runs no ps while no VM runs', async () => {
    vi.useFakeTimers();
    const { s, calls } = sampler(new Map());
    s.want(true);
    await vi.advanceTimersByTimeAsync(5000);
    expect(calls).toEqual([]);
    s.close();
  });
});

describe('EventHub and usage', () => {
  it('wants usage while at least one subscriber asks for it', () => {
    const wanted: boolean[] = [];
    const hub = new EventHub({
      emitIntervalMs: 100,
      snapshot: () => snapshot([]),
      afterEmit: () => {},
      consoleLogPath: () => '/nonexistent',
      usageWanted: (on) => wanted.push(on),
      log: () => {},
    });
    const plain = hub.subscribe(() => {});
    expect(wanted).toEqual([]);
    const a = hub.subscribe(() => {}, { usage: true });
    const b = hub.subscribe(() => {}, { usage: true });
    expect(wanted).toEqual([true]);
    a();
    expect(wanted).toEqual([true]);
    b();
    b();
    expect(wanted).toEqual([true, false]);
    plain();
    hub.subscribe(() => {}, { usage: true });
    hub.close();
    expect(wanted).toEqual([true, false, true, false]);
  });
});
