/**
 * The log window in Chromium over the real Agent: the simulator's console (its boot log and
 * heartbeat chatter), lines a guest writes to the console file, and a real build log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendFileSync, readFileSync } from 'node:fs';
import { createTestAgent } from '../helpers/agent.ts';
import { copyFixture } from '../helpers/fixtures.ts';
import { startHarness, type AppPage, type Harness } from './harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const atBottom = (app: AppPage) =>
  app.page.evaluate(() => {
    const el = document.getElementById('log')!;
    return el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
  });

/** Lines the window holds, from its count label. */
async function lineCount(app: AppPage): Promise<number> {
  return Number(/^(\d+) lines$/.exec((await app.page.locator('#count').textContent()) ?? '')?.[1] ?? 0);
}

/** Waits until the page shows heartbeat number > n; returns the number shown. */
async function heartbeatAfter(app: AppPage, n: number): Promise<number> {
  const handle = await app.page.waitForFunction(
    (after) => {
      const m = /heartbeat (\d+)/.exec(document.querySelector('#log .line:last-child')?.textContent ?? '');
      return m && Number(m[1]) > after ? Number(m[1]) : null;
    },
    n,
    { timeout: 30_000 },
  );
  return (await handle.jsonValue()) as number;
}

/** Waits until the window holds more than n lines. */
async function linesAfter(app: AppPage, n: number): Promise<void> {
  await app.page.waitForFunction(
    (after) => Number(/^(\d+) lines$/.exec(document.getElementById('count')?.textContent ?? '')?.[1] ?? 0) > after,
    n,
    { timeout: 30_000 },
  );
}

describe('log window', () => {
  it('tails the console, follows new lines, pauses when scrolled up and stays bounded', async () => {
    const t = await createTestAgent({ fixture: 'ui', vmEnv: { NIXVM_SIM_CHATTER_MS: '40' } });
    let opened: AppPage | null = null;
    try {
      await t.agent.call('start', { vm: 'dev' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'));
      const app = (opened = await h.open(t.agent, 'log', {
        query: { vm: 'dev', kind: 'console' },
        viewport: { width: 800, height: 300 },
      }));

      // The tail: the boot log read from the file, then live lines as they come.
      let n = await heartbeatAfter(app, 0);
      expect(await app.page.locator('#vmname').textContent()).toBe('dev — Running');
      await app.page.locator('#search').fill('Welcome to NixOS');
      await app.page.locator('#log .line', { hasText: 'Welcome to NixOS' }).first().waitFor();
      expect(await app.page.locator('#count').textContent()).toMatch(/^[1-9] of \d+ lines$/);
      for (const l of await app.page.locator('#log .line').allTextContents()) expect(l).toContain('Welcome to NixOS');
      await app.page.locator('#search').fill('');
      n = await heartbeatAfter(app, n + 5);
      expect(await atBottom(app)).toBe(true);
      expect(await app.page.locator('#follow').isChecked()).toBe(true);

      // Scrolling up pauses following; new lines arrive but the view stays where the user is.
      await app.page.locator('#log').hover();
      await app.page.mouse.wheel(0, -400);
      await app.page.waitForFunction(() => !(document.getElementById('follow') as HTMLInputElement).checked);
      const top = await app.page.evaluate(() => document.getElementById('log')!.scrollTop);
      const held = await lineCount(app);
      await expect.poll(() => lineCount(app), { timeout: 10_000 }).toBeGreaterThan(held + 5);
      expect(await atBottom(app)).toBe(false);
      expect(await app.page.evaluate(() => document.getElementById('log')!.scrollTop)).toBe(top);

      // Follow again: back at the end, and it stays there.
      await app.page.locator('#follow').check();
      n = await heartbeatAfter(app, n + 3);
      expect(await atBottom(app)).toBe(true);

      // A guest writing fast (ANSI colours included): shown in colour; memory and DOM stay bounded
      // (only the rows in view exist), and it still ends on the newest line.
      const log = t.vm('dev').consoleLog!;
      const burst = Array.from({ length: 25_000 }, (_, i) => `burst line ${i}`);
      burst[24_995] = '[  \x1b[0;32mOK\x1b[0m  ] Started \x1b[1mnginx.service\x1b[0m.';
      appendFileSync(log, `${burst.join('\n')}\n`);
      // Found through the filter: heartbeats keep coming and, on a loaded machine, scroll the
      // burst's end out of the rendered rows before a frame that shows it can be read.
      await app.page.locator('#search').fill('burst line 24999');
      await app.page.locator('#log .line', { hasText: 'burst line 24999' }).waitFor({ timeout: 30_000 });
      await app.page.locator('#search').fill('Started nginx.service');
      const nginx = app.page.locator('#log .line', { hasText: 'Started nginx.service' });
      await nginx.waitFor();
      const ok = await nginx.evaluate((l) => ({
        green: l.querySelector('.ansi-green-fg')?.textContent ?? null,
        bold: l.querySelector('.ansi-bold')?.textContent ?? null,
        text: l.textContent ?? null,
      }));
      expect(ok).toMatchObject({ green: 'OK', bold: 'nginx.service' });
      expect(ok.text).not.toContain('\x1b');
      await app.page.locator('#search').fill('');
      n = await heartbeatAfter(app, 0);
      expect(await lineCount(app)).toBe(20_000);
      expect(await app.page.locator('#log .line').count()).toBeLessThan(100);
      expect(await app.page.locator('#notice').textContent()).toBe(
        'Showing the last 20000 lines. Open in Console for the whole file.',
      );
      expect(await atBottom(app)).toBe(true);

      // Scrolling to the top shows the oldest line kept, in order.
      await app.page.locator('#follow').uncheck();
      await app.page.evaluate(() => (document.getElementById('log')!.scrollTop = 0));
      await app.page.waitForFunction(
        () => document.querySelector<HTMLElement>('#log .rows')!.style.transform === 'translateY(6px)',
      );
      // Read the first rows in one go: heartbeats keep arriving and push the oldest lines out.
      const [a, b] = await app.page.evaluate(() =>
        Array.from(document.querySelectorAll('#log .line'))
          .slice(0, 2)
          .map((l) => l.textContent ?? ''),
      );
      const first = Number(/burst line (\d+)/.exec(a!)![1]);
      expect(first).toBeLessThan(6000);
      expect(b).toBe(`burst line ${first + 1}`);
      await app.page.locator('#follow').check();

      // Filter: only the matching lines (24980–24989; 2498 itself is long dropped), counted.
      await app.page.locator('#search').fill('burst line 2498');
      await app.page.locator('#count', { hasText: /^10 of 20000 lines$/ }).waitFor();
      // The rows follow the count within a frame (a heartbeat's flush can land in between).
      await expect
        .poll(() => app.page.locator('#log .line').allTextContents(), { timeout: 10_000 })
        .toEqual(Array.from({ length: 10 }, (_, i) => `burst line ${24_980 + i}`));
      await app.page.locator('#search').fill('');
      await app.page.locator('#count', { hasText: /^\d+ lines$/ }).waitFor();

      // Open in Console.app hands over the log file.
      await app.page.locator('#console-app').click();
      await expect.poll(() => app.host.consoleApp).toEqual([['open', '-a', 'Console', log]]);
      // No CSP violation or script error on the way (ANSI styling included).
      expect(app.problems).toEqual([]);
    } finally {
      await opened?.close();
      await t.dispose();
    }
  });

  it('Follow stays as the user set it while lines pour in', async () => {
    // A guest writing a line every 5 ms: every frame appends lines and scrolls to the end.
    const t = await createTestAgent({ fixture: 'ui', vmEnv: { NIXVM_SIM_CHATTER_MS: '5' } });
    let app: AppPage | null = null;
    try {
      await t.agent.call('start', { vm: 'dev' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'));
      app = await h.open(t.agent, 'log', {
        query: { vm: 'dev', kind: 'console' },
        viewport: { width: 800, height: 300 },
      });
      const follow = app.page.locator('#follow');
      let n = await heartbeatAfter(app, 0);
      for (let round = 0; round < 5; round++) {
        n = await heartbeatAfter(app, n + 5);
        await follow.click();
        await linesAfter(app, (await lineCount(app)) + 20);
        expect(await follow.isChecked(), `Follow came back on by itself (round ${round})`).toBe(false);
        expect(await atBottom(app)).toBe(false);
        await follow.click();
        n = await heartbeatAfter(app, n + 20);
        expect(await follow.isChecked(), `Follow went off by itself (round ${round})`).toBe(true);
        expect(await atBottom(app)).toBe(true);
      }
      expect(app.problems).toEqual([]);
    } finally {
      await app?.close();
      await t.dispose();
    }
  });

  it('shows the last build log and switches between console and build', async () => {
    const flake = await copyFixture('ui', { salt: true });
    flake.write('step-seconds', '0');
    const t = await createTestAgent({ flake });
    let app: AppPage | null = null;
    try {
      await t.agent.call('build', { vm: 'web' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'web' && v.build.status === 'succeeded'));
      app = await h.open(t.agent, 'log', { query: { vm: 'web', kind: 'build' } });
      await app.page.locator('#log .line', { hasText: 'building webapp-0.9.2' }).first().waitFor();
      expect(await app.page.locator('.seg [data-kind="build"]').getAttribute('aria-selected')).toBe('true');

      // The console tab of a VM that never ran says so, with the way to get output.
      await app.page.locator('.seg [data-kind="console"]').click();
      await app.page.locator('#empty-text', { hasText: 'web has not run yet' }).waitFor();
      expect(await app.page.locator('#empty-action').textContent()).toBe('Start');
      expect(await app.page.locator('#log .line').count()).toBe(0);
      expect(app.page.url()).toContain('kind=console');
    } finally {
      await app?.close();
      await t.dispose();
    }
  });

  it('wraps long lines when asked, keeps the rows placed, and remembers the choice', async () => {
    const t = await createTestAgent({ fixture: 'ui', vmEnv: { NIXVM_SIM_CHATTER_MS: '200' } });
    let app: AppPage | null = null;
    try {
      await t.agent.call('start', { vm: 'dev' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'));
      app = await h.open(t.agent, 'log', {
        query: { vm: 'dev', kind: 'console' },
        viewport: { width: 700, height: 400 },
      });
      await heartbeatAfter(app, 0);
      const long = `long line: ${Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ')} end-of-long-line`;
      appendFileSync(t.vm('dev').consoleLog!, `${long}\nafter the long line\n`);
      const page = app.page;
      await page.locator('#log .line', { hasText: 'end-of-long-line' }).waitFor();
      // Stop following, so the rows stay where they are while heartbeats arrive.
      await page.locator('#follow').uncheck();
      const measure = () =>
        page.evaluate(() => {
          const log = document.getElementById('log')!;
          const lines = Array.from(log.querySelectorAll<HTMLElement>('.line'));
          const i = lines.findIndex((l) => l.textContent?.includes('end-of-long-line'));
          const el = lines[i]!;
          const next = lines[i + 1]!;
          const probe = document.createElement('span');
          probe.className = 'mono';
          probe.textContent = '0'.repeat(100);
          document.body.append(probe);
          const cw = probe.getBoundingClientRect().width / 100;
          probe.remove();
          return {
            height: el.getBoundingClientRect().height,
            gap: next.getBoundingClientRect().top - el.getBoundingClientRect().bottom,
            nextText: next.textContent,
            cols: Math.floor((log.clientWidth - 24) / cw),
            overflows: log.scrollWidth > log.clientWidth,
            wrapChecked: (document.getElementById('wrap') as HTMLInputElement).checked,
          };
        });
      const before = await measure();
      expect(before).toMatchObject({
        height: 16,
        gap: 0,
        nextText: 'after the long line',
        overflows: true,
        wrapChecked: false,
      });

      await page.locator('#wrap').check();
      const rows = Math.ceil(long.length / before.cols);
      expect(rows).toBeGreaterThan(2);
      await expect.poll(async () => (await measure()).height).toBe(rows * 16);
      // The line after it starts right below it (the row count log.ts placed it by is the one drawn).
      expect(await measure()).toMatchObject({ gap: 0, nextText: 'after the long line', overflows: false });

      // Remembered: a reload comes back wrapping.
      await page.reload();
      await page.locator('#log .line', { hasText: 'end-of-long-line' }).waitFor();
      expect(await page.locator('#wrap').isChecked()).toBe(true);
      await page.locator('#follow').uncheck();
      expect((await measure()).height).toBe(rows * 16);
      await page.locator('#wrap').uncheck();
      await expect.poll(async () => (await measure()).height).toBe(16);
      expect(app.problems).toEqual([]);
    } finally {
      await app?.close();
      await t.dispose();
    }
  });

  it('separates the runs of a VM with the time each started, live across a restart and when opened after', async () => {
    const t = await createTestAgent({ fixture: 'ui' });
    let app: AppPage | null = null;
    let again: AppPage | null = null;
    try {
      await t.agent.call('start', { vm: 'dev' });
      const first = (await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'))).vms.find(
        (v) => v.name === 'dev',
      )!;
      // Tall enough for both runs' lines to be in the DOM at once (the list is virtual).
      const tall = { width: 900, height: 2400 };
      app = await h.open(t.agent, 'log', { query: { vm: 'dev', kind: 'console' }, viewport: tall });
      const booted = (p: AppPage, n: number) =>
        p.page
          .locator('#log .line', { hasText: 'Reached target Multi-User System' })
          .nth(n - 1)
          .waitFor({ timeout: 30_000 });
      await booted(app, 1);
      const runs = (p: AppPage) =>
        p.page.evaluate(() =>
          Array.from(document.querySelectorAll<HTMLElement>('#log .line.run')).map((l) => l.dataset.run),
        );
      // The run-start line the supervisor wrote first in this run's log, drawn as a separator.
      expect(await runs(app)).toEqual([new Date(first.startedAt!).toISOString()]);
      expect(readFileSync(first.consoleLog!, 'utf8').split('\n')[0]).toBe(
        `[nixvm: run started at ${new Date(first.startedAt!).toISOString()}]`,
      );

      await t.agent.call('restart', { vm: 'dev' });
      const second = (
        await t.waitFor((s) =>
          s.vms.some((v) => v.name === 'dev' && v.state === 'running' && v.startedAt !== first.startedAt),
        )
      ).vms.find((v) => v.name === 'dev')!;
      const both = [first.startedAt!, second.startedAt!].map((at) => new Date(at).toISOString());
      // Followed across the restart: the new run's lines come after a second separator.
      await app.page.locator(`#log .line.run[data-run="${both[1]}"]`).waitFor({ timeout: 30_000 });
      await app.page.locator('#follow').uncheck();
      await app.page.evaluate(() => (document.getElementById('log')!.scrollTop = 0));
      await expect.poll(() => runs(app!)).toEqual(both);
      const sep = app.page.locator('#log .line.run').nth(1);
      expect(await sep.textContent()).toMatch(/^Run started /);

      // A window opened now reads the run before this one too, each under its own separator.
      again = await h.open(t.agent, 'log', {
        query: { vm: 'dev', kind: 'console' },
        viewport: { width: 900, height: 2000 },
      });
      await booted(again, 2);
      await expect.poll(() => runs(again!)).toEqual(both);
      const order = await again.page.evaluate(() =>
        Array.from(document.querySelectorAll('#log .line'))
          .map((l) =>
            l.classList.contains('run')
              ? 'RUN'
              : /Welcome to NixOS 24\.05 \(Uakari\)!/.test(l.textContent ?? '')
                ? 'BOOT'
                : null,
          )
          .filter(Boolean),
      );
      expect(order).toEqual(['RUN', 'BOOT', 'RUN', 'BOOT']);
      expect(app.problems).toEqual([]);
    } finally {
      await again?.close();
      await app?.close();
      await t.dispose();
    }
  });

  it('an empty build log says there is no build yet; Build fills it with lines stamped as they came', async () => {
    const flake = await copyFixture('ui', { salt: true });
    flake.write('step-seconds', '1');
    const t = await createTestAgent({ flake });
    let app: AppPage | null = null;
    try {
      app = await h.open(t.agent, 'log', { query: { vm: 'web', kind: 'build' } });
      await app.page.locator('#empty-text', { hasText: 'web has no build yet' }).waitFor();
      const build = app.page.locator('#empty-action');
      expect(await build.textContent()).toBe('Build');
      const clicked = Date.now();
      await build.click();
      await app.page.locator('#log .line', { hasText: 'building webapp-0.9.2' }).first().waitFor({ timeout: 60_000 });
      expect(await app.page.locator('#empty').isHidden()).toBe(true);
      await t.waitFor((s) => s.vms.some((v) => v.name === 'web' && v.build.status === 'succeeded'), 120_000);
      const done = Date.now();
      await app.page.locator('#log .line', { hasText: '# built' }).waitFor();
      const stamps = await app.page.evaluate(() =>
        Array.from(document.querySelectorAll('#log .line.stamped')).map((l) => ({
          shown: l.querySelector('.ts')?.textContent ?? '',
          iso: l.querySelector('.ts')?.getAttribute('title') ?? '',
          text: l.textContent ?? '',
        })),
      );
      expect(stamps.length).toBeGreaterThan(3);
      for (const s of stamps) {
        expect(s.shown).toMatch(/^\d\d:\d\d:\d\d$/);
        const at = Date.parse(s.iso);
        expect(at).toBeGreaterThanOrEqual(clicked - 1000);
        expect(at).toBeLessThanOrEqual(done);
        // The stamp is the gutter's, not part of the line's text.
        expect(s.text.slice(s.shown.length)).not.toMatch(/^\s*\d{4}-\d\d-\d\dT/);
      }
      // In order, and the build took its steps' time: the stamps are when each line came.
      const times = stamps.map((s) => Date.parse(s.iso));
      expect(times).toEqual([...times].sort((a, b) => a - b));
      expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(1000);
      // The file keeps the same stamps (what `nixvm logs --build` prints).
      const file = readFileSync(t.vm('web').build.logPath!, 'utf8').trimEnd().split('\n');
      expect(file.every((l) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /.test(l))).toBe(true);
      expect(app.problems).toEqual([]);
    } finally {
      await app?.close();
      await t.dispose();
    }
  });

  it('a console that never ran says so, and its Start button starts the VM and shows its boot', async () => {
    const t = await createTestAgent({ fixture: 'ui' });
    let app: AppPage | null = null;
    try {
      app = await h.open(t.agent, 'log', { query: { vm: 'dev', kind: 'console' } });
      await app.page.locator('#empty-text', { hasText: 'dev has not run yet' }).waitFor();
      const start = app.page.locator('#empty-action');
      expect(await start.textContent()).toBe('Start');
      expect(await start.isEnabled()).toBe(true);
      // No file to hand to Console.app yet.
      expect(await app.page.locator('#console-app').isDisabled()).toBe(true);
      await start.click();
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'), 60_000);
      await app.page.locator('#log .line', { hasText: 'Welcome to NixOS' }).first().waitFor({ timeout: 30_000 });
      expect(await app.page.locator('#empty').isHidden()).toBe(true);
      expect(await app.page.locator('#log .line').first().getAttribute('class')).toBe('line run');
      expect(await app.page.locator('#console-app').isEnabled()).toBe(true);
      expect(app.problems).toEqual([]);
    } finally {
      await app?.close();
      await t.dispose();
    }
  });
});
