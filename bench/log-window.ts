/**
 * The log window while a VM writes fast: the real renderer in Chromium, the real Agent following
 * the console file of a simulated VM, and this script appending to that file at a high rate.
 * Prints frame intervals (idle vs. under load, as a ratio), long tasks, how many lines the DOM
 * holds, and how long after the last write the last line is on screen.
 *
 *   node bench/log-window.ts [linesPerSecond] [seconds]     (default 20000 for 5 s)
 */
import '../test/setup-env.ts';
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestAgent } from '../test/helpers/agent.ts';
import { startHarness } from '../test/ui/harness.ts';

const rate = Number(process.argv[2] ?? 20_000);
const seconds = Number(process.argv[3] ?? 5);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

const t = await createTestAgent({ fixture: 'ui' });
const h = await startHarness();
try {
  await t.agent.call('start', { vm: 'dev' });
  await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'));
  const file = t.vm('dev').consoleLog!;
  const app = await h.open(t.agent, 'log', { query: { vm: 'dev', kind: 'console' } });
  await app.page.locator('#log .line').first().waitFor();

  const measure = async (ms: number): Promise<{ frames: number[]; longTasks: number[] }> =>
    app.page.evaluate(
      (dur) =>
        new Promise<{ frames: number[]; longTasks: number[] }>((resolve) => {
          const frames: number[] = [];
          const longTasks: number[] = [];
          const po = new PerformanceObserver((l) => {
            for (const e of l.getEntries()) longTasks.push(e.duration);
          });
          try {
            po.observe({ type: 'longtask', buffered: false });
          } catch {
            // not supported: no long-task figures
          }
          let last = performance.now();
          const end = last + dur;
          const tick = (now: number) => {
            frames.push(now - last);
            last = now;
            if (now < end) requestAnimationFrame(tick);
            else {
              po.disconnect();
              resolve({ frames, longTasks });
            }
          };
          requestAnimationFrame(tick);
        }),
      ms,
    );

  const idle = await measure(2000);

  // Write `rate` lines a second in 10 ms chunks while measuring.
  const chunk = Math.max(1, Math.round(rate / 100));
  let written = 0;
  const writer = (async () => {
    const until = Date.now() + seconds * 1000;
    while (Date.now() < until) {
      const lines = Array.from(
        { length: chunk },
        () => `[${(written++).toString().padStart(8)}] \x1b[32mok\x1b[0m service output line with some text`,
      );
      appendFileSync(file, `${lines.join('\n')}\n`);
      await sleep(10);
    }
  })();
  const load = await measure(seconds * 1000);
  await writer;
  const lastLabel = `[${(written - 1).toString().padStart(8)}]`;
  const stopAt = Date.now();
  await app.page.locator('#log .line:last-child', { hasText: lastLabel }).waitFor({ timeout: 60_000 });
  const catchUp = Date.now() - stopAt;
  const domLines = await app.page.locator('#log .line').count();

  const med = (xs: number[]) => pct(xs, 50);
  console.log(
    `log window under load: ${written} lines in ${seconds} s (${Math.round(written / seconds)} lines/s asked ${rate})`,
  );
  console.log(
    `  frame interval idle:   median ${med(idle.frames).toFixed(1)} ms, p95 ${pct(idle.frames, 95).toFixed(1)} ms`,
  );
  console.log(
    `  frame interval loaded: median ${med(load.frames).toFixed(1)} ms, p95 ${pct(load.frames, 95).toFixed(1)} ms (median ratio ${(med(load.frames) / med(idle.frames)).toFixed(2)}×)`,
  );
  console.log(
    `  long tasks (>50 ms) while loaded: ${load.longTasks.length}, longest ${load.longTasks.length ? Math.max(...load.longTasks).toFixed(0) : 0} ms`,
  );
  console.log(`  DOM lines at the end: ${domLines}; last line on screen ${catchUp} ms after the last write`);
  await app.close();
} finally {
  await h.close();
  await t.dispose();
}
