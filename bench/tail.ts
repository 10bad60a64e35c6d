/**
 * `tail` of the last 1000 lines of a 1 GiB console log: time and peak memory.
 * Also: what following 10 idle console logs costs in CPU (it must be ~0: no busy polling).
 *
 *   node bench/tail.ts [--size-mib 1024] [--lines 1000] [--idle-seconds 5] [--json]
 *
 * Memory is measured in a fresh child process per run (peak RSS from getrusage, minus the peak
 * of an identical child that does not call tail), so the 1 GiB file's creation does not pollute it.
 */
import { mkdtemp, open, rm, appendFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { follow, tail } from '../src/core/vm/console.ts';

const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    lines: { type: 'string', default: '1000' },
    'idle-seconds': { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    child: { type: 'string' },
    file: { type: 'string' },
  },
});

interface ChildReport {
  /** First call in a fresh process (cold: JIT, thread pool start-up). */
  ms: number;
  /** Median of 10 more calls in the same process. */
  warmMs: number;
  maxRssKiB: number;
  lines: number;
  lastLine: string;
}

/** The child: optionally tail once, then report its own peak RSS. */
async function child(mode: string, file: string, lines: number): Promise<void> {
  let ms = 0;
  let warmMs = 0;
  let got: string[] = [];
  if (mode === 'tail') {
    const t0 = performance.now();
    got = await tail(file, lines);
    ms = performance.now() - t0;
    const warm: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      await tail(file, lines);
      warm.push(performance.now() - t);
    }
    warmMs = warm.sort((a, b) => a - b)[5]!;
  }
  const report: ChildReport = {
    ms,
    warmMs,
    maxRssKiB: process.resourceUsage().maxRSS,
    lines: got.length,
    lastLine: got.at(-1) ?? '',
  };
  process.stdout.write(JSON.stringify(report));
}

/** A realistic serial console: kernel timestamps, systemd, some UTF-8, CRLF as a serial port sends. */
function consoleBlock(bytes: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  let i = 0;
  while (n < bytes) {
    const t = (i / 1000).toFixed(6).padStart(12);
    const line =
      i % 7 === 0
        ? `[${t}] systemd[1]: Started nixos-unit-${i}.service - Unit number ${i} ✓\r\n`
        : i % 11 === 0
          ? `[${t}] kernel: virtio_net virtio${i % 4} enp0s1: renamed from eth0 — größe ${i}\r\n`
          : `[${t}] stage-2-init: running activation script for line ${i}\r\n`;
    parts.push(line);
    n += Buffer.byteLength(line);
    i++;
  }
  return Buffer.from(parts.join(''));
}

async function makeLog(file: string, sizeMiB: number): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const block = consoleBlock(8 * MiB);
  const fh = await open(file, 'w');
  let bytes = 0;
  try {
    while (bytes + block.length <= sizeMiB * MiB) {
      await fh.write(block);
      bytes += block.length;
    }
    const rest = sizeMiB * MiB - bytes;
    // Fill up to the exact size with whole lines, ending in a prompt without a newline.
    const lastNl = block.subarray(0, Math.max(0, rest - 13)).lastIndexOf(0x0a);
    await fh.write(block.subarray(0, lastNl + 1));
    await fh.write('nixos login: ');
    bytes += lastNl + 1 + 13;
  } finally {
    await fh.close();
  }
  return { ms: performance.now() - t0, bytes };
}

async function runChild(mode: 'tail' | 'baseline', file: string, lines: number): Promise<ChildReport> {
  // Imported here so the measured child does not load execa and friends.
  const { run } = await import('../src/host/runner.ts');
  const r = await run([
    process.execPath,
    import.meta.filename,
    '--child',
    mode,
    '--file',
    file,
    '--lines',
    String(lines),
  ]);
  return JSON.parse(r.stdout) as ChildReport;
}

/** CPU the process spends while following `count` quiet files for `seconds`. */
async function idleFollowCpu(
  dir: string,
  count: number,
  seconds: number,
): Promise<{ cpuMs: number; seconds: number; delivered: number }> {
  let delivered = 0;
  const files = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const f = path.join(dir, `idle-${i}.log`);
      await appendFile(f, 'booted\n');
      return f;
    }),
  );
  const followers = files.map((f) => follow(f, (ls) => (delivered += ls.length)));
  await new Promise((r) => setTimeout(r, 200));
  // Prove they are live, then measure the quiet.
  await Promise.all(files.map((f) => appendFile(f, 'one line\n')));
  await new Promise((r) => setTimeout(r, 300));
  const c0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const c = process.cpuUsage(c0);
  for (const f of followers) f.close();
  return { cpuMs: (c.user + c.system) / 1000, seconds, delivered };
}

async function main(): Promise<void> {
  const sizeMiB = Number(values['size-mib']);
  const lines = Number(values.lines);
  const idleSeconds = Number(values['idle-seconds']);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nixvm-bench-tail-'));
  try {
    const file = path.join(dir, 'console.log');
    const made = await makeLog(file, sizeMiB);
    const baseline = await runChild('baseline', file, lines);
    const runs: ChildReport[] = [];
    for (let i = 0; i < 5; i++) runs.push(await runChild('tail', file, lines));
    const times = runs.map((r) => r.ms).sort((a, b) => a - b);
    const warmTimes = runs.map((r) => r.warmMs).sort((a, b) => a - b);
    const peakDeltaMiB = Math.max(...runs.map((r) => r.maxRssKiB - baseline.maxRssKiB)) / 1024;
    const idle = await idleFollowCpu(dir, 10, idleSeconds);
    const result = {
      fileBytes: made.bytes,
      createMs: Math.round(made.ms),
      lines,
      linesReturned: runs[0]!.lines,
      lastLine: runs[0]!.lastLine,
      tailMsColdMedian: +times[Math.floor(times.length / 2)]!.toFixed(2),
      tailMsColdMax: +times.at(-1)!.toFixed(2),
      tailMsWarmMedian: +warmTimes[Math.floor(warmTimes.length / 2)]!.toFixed(2),
      baselinePeakRssMiB: +(baseline.maxRssKiB / 1024).toFixed(1),
      tailPeakRssDeltaMiB: +peakDeltaMiB.toFixed(2),
      idleFollow10: {
        cpuMs: +idle.cpuMs.toFixed(1),
        seconds: idle.seconds,
        cpuPercent: +((idle.cpuMs / (idle.seconds * 1000)) * 100).toFixed(3),
        linesDelivered: idle.delivered,
      },
    };
    if (values.json) {
      console.log(JSON.stringify(result));
    } else {
      console.log(`console log: ${(made.bytes / MiB).toFixed(0)} MiB written in ${result.createMs} ms`);
      console.log(
        `tail(${lines}): ${result.linesReturned} lines; first call in a fresh process ${result.tailMsColdMedian} ms (median of 5, max ${result.tailMsColdMax}); warm ${result.tailMsWarmMedian} ms (file in page cache)`,
      );
      console.log(
        `tail peak RSS: ${result.tailPeakRssDeltaMiB >= 0 ? '+' : ''}${result.tailPeakRssDeltaMiB} MiB over an identical child that does not tail (${result.baselinePeakRssMiB} MiB peak)`,
      );
      console.log(`last line: ${JSON.stringify(result.lastLine)}`);
      console.log(
        `follow, 10 idle logs for ${idle.seconds} s: ${result.idleFollow10.cpuMs} ms CPU (${result.idleFollow10.cpuPercent}% of one core); ${idle.delivered}/10 live lines delivered`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (values.child) {
  await child(values.child, values.file ?? '', Number(values.lines));
} else {
  await main();
}
