/**
 * What a running VM's vfkit uses: ps's columns parsed (BSD ps and procps), the real ps asked
 * about this process, and the sampler that runs only while some subscriber asks for usage.
 */
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseProcessUsage, processUsage, processUsageArgv } from '../../src/host/process-usage.ts';
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

describe('UsageSampler', () => {
  function sampler(pids = new Map([['web', 41]])) {
    const calls: number[][] = [];
    let changes = 0;
    let cpu = 5;
    const s = new UsageSampler({
      pids: () => pids,
      sample: async (p) => {
        calls.push(p);
        return new Map(p.map((pid) => [pid, { cpuPercent: cpu, rssBytes: 1024 }]));
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
