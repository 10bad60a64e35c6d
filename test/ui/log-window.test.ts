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

const lastLine = (app: AppPage) => app.page.evaluate(() => document.querySelector('#log .line:last-child')?.textContent ?? '');

/** Waits until the page shows heartbeat number > n; returns the number shown. */
async function heartbeatAfter(app: AppPage, n: number): Promise<number> {
  const handle = await app.page.waitForFunction((after) => {
    const m = /heartbeat (\d+)/.exec(document.querySelector('#log .line:last-child')?.textContent ?? '');
    return m && Number(m[1]) > after ? Number(m[1]) : null;
  }, n, { timeout: 15_000 });
  return (await handle.jsonValue()) as number;
}

describe('log window', () => {
  it('tails the console, follows new lines, pauses when scrolled up and stays bounded', async () => {
    const t = await createTestAgent({ fixture: 'ui', vmEnv: { NIXVM_SIM_CHATTER_MS: '40' } });
    let app: AppPage | null = null;
    try {
      await t.agent.call('start', { vm: 'dev' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'));
      app = await h.open(t.agent, 'log', { query: { vm: 'dev', kind: 'console' }, viewport: { width: 800, height: 300 } });

      // The tail: the boot log read from the file, then live lines as they come.
      await app.page.getByText('Welcome to NixOS', { exact: false }).first().waitFor();
      expect(await app.page.locator('#vmname').textContent()).toBe('dev — Running');
      let n = await heartbeatAfter(app, 0);
      n = await heartbeatAfter(app, n + 5);
      expect(await atBottom(app)).toBe(true);
      expect(await app.page.locator('#follow').isChecked()).toBe(true);

      // Scrolling up pauses following; new lines arrive but the view stays where the user is.
      await app.page.locator('#log').hover();
      await app.page.mouse.wheel(0, -400);
      await app.page.waitForFunction(() => !(document.getElementById('follow') as HTMLInputElement).checked);
      const top = await app.page.evaluate(() => document.getElementById('log')!.scrollTop);
      n = await heartbeatAfter(app, n + 5);
      expect(await atBottom(app)).toBe(false);
      expect(await app.page.evaluate(() => document.getElementById('log')!.scrollTop)).toBe(top);

      // Follow again: back at the end, and it stays there.
      await app.page.locator('#follow').check();
      n = await heartbeatAfter(app, n + 3);
      expect(await atBottom(app)).toBe(true);

      // A guest writing fast (ANSI colours included): shown in colour, the DOM stays capped.
      const log = t.vm('dev').consoleLog!;
      const burst = Array.from({ length: 5000 }, (_, i) => `burst line ${i}`);
      burst[4990] = '[  \x1b[0;32mOK\x1b[0m  ] Started \x1b[1mnginx.service\x1b[0m.';
      appendFileSync(log, `${burst.join('\n')}\n`);
      await app.page.locator('#log .line', { hasText: 'burst line 4999' }).waitFor({ timeout: 15_000 });
      const lines = await app.page.locator('#log .line').count();
      expect(lines).toBeLessThanOrEqual(2000);
      expect(lines).toBeGreaterThan(1000);
      const ok = app.page.locator('#log .line', { hasText: 'Started nginx.service' });
      expect(await ok.locator('.ansi-green-fg').textContent()).toBe('OK');
      expect(await ok.locator('.ansi-bold').textContent()).toBe('nginx.service');
      expect(await ok.textContent()).not.toContain('\x1b');
      expect(await app.page.locator('#notice').textContent()).toMatch(/^Showing the last \d+ lines\. Open in Console for the whole file\.$/);
      expect(await atBottom(app)).toBe(true);

      // Filter: only matching lines (49, 490–499, 4900–4999 but not 4990, now the OK line), counted.
      await app.page.locator('#search').fill('burst line 49');
      await app.page.waitForFunction(() => document.querySelectorAll('#log .line').length === 110);
      expect(await app.page.locator('#count').textContent()).toMatch(/^110 of \d+ lines$/);
      await app.page.locator('#search').fill('');
      expect(await lastLine(app)).toMatch(/burst line 4999|heartbeat/);

      // Open in Console.app hands over the log file.
      await app.page.locator('#console-app').click();
      await expect.poll(() => app!.host.consoleApp).toEqual([['open', '-a', 'Console', log]]);
      // No CSP violation or script error on the way (ANSI styling included).
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
      await app.page.locator('#notice', { hasText: 'web has no console output yet: start it to see it boot here.' }).waitFor();
      expect(await app.page.locator('#log .line').count()).toBe(0);
      expect(app.page.url()).toContain('kind=console');
    } finally {
      await app?.close();
      await t.dispose();
    }
  });
});
