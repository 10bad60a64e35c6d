/**
 * The log window in Chromium over the real Agent: the simulator's console (its boot log and
 * heartbeat chatter), lines a guest writes to the console file, and a real build log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendFileSync } from 'node:fs';
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
      // Read the coloured line in the frame that shows the burst's end: heartbeats keep coming and
      // soon scroll it out of the rendered rows.
      const seen = await app.page.waitForFunction(
        () => {
          const lines = Array.from(document.querySelectorAll('#log .line'));
          if (!lines.some((l) => l.textContent === 'burst line 24999')) return null;
          const ok = lines.find((l) => l.textContent?.includes('Started nginx.service'));
          return {
            green: ok?.querySelector('.ansi-green-fg')?.textContent ?? null,
            bold: ok?.querySelector('.ansi-bold')?.textContent ?? null,
            text: ok?.textContent ?? null,
          };
        },
        null,
        { timeout: 30_000 },
      );
      const ok = (await seen.jsonValue()) as { green: string | null; bold: string | null; text: string | null };
      expect(ok).toMatchObject({ green: 'OK', bold: 'nginx.service' });
      expect(ok.text).not.toContain('\x1b');
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

      // The console tab of a VM that never ran says how to get output.
      await app.page.locator('.seg [data-kind="console"]').click();
      await app.page
        .locator('#notice', { hasText: '"web" has no console output yet: start it to see it boot here.' })
        .waitFor();
      expect(await app.page.locator('#log .line').count()).toBe(0);
      expect(app.page.url()).toContain('kind=console');
    } finally {
      await app?.close();
      await t.dispose();
    }
  });
});
