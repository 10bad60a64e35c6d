/**
 * Console logs at the sizes a VM left running for weeks produces: tail and rotation must not
 * load the file. Files are sparse (a hole, then real lines), so they cost no disk and little time.
 */
import { appendFile, mkdtemp, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rotateConsoleLog, tail } from '../../src/core/vm/console.ts';

const MiB = 1024 * 1024;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nixvm-console-big-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Peak RSS growth while `fn` runs, sampled between its awaits. */
async function peakRssGrowth<T>(fn: () => Promise<T>): Promise<{ result: T; growth: number }> {
  globalThis.gc?.();
  const base = process.memoryUsage.rss();
  let peak = base;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 1);
  try {
    const result = await fn();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, growth: peak - base };
  } finally {
    clearInterval(timer);
  }
}

describe('console logs at scale', () => {
  it('tail of a 300 MiB log reads only its end', async () => {
    const file = path.join(dir, 'big.log');
    await writeFile(file, '');
    await truncate(file, 300 * MiB);
    const lines = Array.from(
      { length: 5000 },
      (_, i) => `[ ${String(i).padStart(6)} ] systemd[1]: Started unit ${i} ✓`,
    );
    await appendFile(file, `${lines.join('\r\n')}\r\n`);
    const { result, growth } = await peakRssGrowth(() => tail(file, 1000));
    expect(result).toEqual(lines.slice(-1000));
    expect(growth).toBeLessThan(32 * MiB);
  });

  it('tail through a 256 MiB line scans back in constant memory and cuts the line', async () => {
    const file = path.join(dir, 'one-huge-line.log');
    await writeFile(file, 'first line\n');
    await truncate(file, 256 * MiB);
    await appendFile(file, '\nlast line\n');
    const { result, growth } = await peakRssGrowth(() => tail(file, 3, { maxLineBytes: 4096 }));
    expect(result[0]).toBe('first line');
    expect(result[1]).toHaveLength(4096 + 1); // the hole after "first line\n", cut to 4096 bytes, plus "…"
    expect(result[1]!.endsWith('…')).toBe(true);
    expect(result[2]).toBe('last line');
    expect(growth).toBeLessThan(32 * MiB);
  });

  it('rotation caps a 512 MiB last run by streaming its end, not loading it', async () => {
    const file = path.join(dir, 'vm.log');
    const fh = await open(file, 'w');
    await fh.truncate(512 * MiB - 20);
    await fh.close();
    await appendFile(file, '\nthe very last line\n');
    const { growth } = await peakRssGrowth(() => rotateConsoleLog(file, 3, 8 * MiB));
    const size = (await stat(`${file}.1`)).size;
    expect(size).toBeLessThanOrEqual(8 * MiB + 200);
    expect(size).toBeGreaterThan(8 * MiB - 64 * 1024);
    expect(await tail(`${file}.1`, 1)).toEqual(['the very last line']);
    expect((await readFile(`${file}.1`, 'latin1')).slice(0, 40)).toMatch(/^\[nixvm: the first \d+ bytes/);
    expect(growth).toBeLessThan(32 * MiB);
  });
});
