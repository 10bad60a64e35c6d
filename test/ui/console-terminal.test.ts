/**
 * The log window's Terminal tab in Chromium over the real Agent and the simulator's real pty:
 * xterm.js shows the console's screen, keys typed in the page reach the guest's shell, and the
 * window's CSP (style-src 'self') holds: no violation, no script error.
 */
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent } from '../helpers/agent.ts';
import { startHarness, type AppPage, type Harness } from './harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

/** The terminal's screen as text (xterm.js's DOM renderer: one element per row). */
const screen = (app: AppPage) =>
  app.page.evaluate(() =>
    Array.from(document.querySelectorAll('#term .xterm-rows > div'))
      .map((r) => r.textContent ?? '')
      .join('\n'),
  );

describe('the Terminal tab', () => {
  it('types into the serial console of the seed’s minimal-vm and shows its answers', async () => {
    const t = await createTestAgent({ fixture: 'seed' });
    let opened: AppPage | null = null;
    try {
      await t.agent.call('start', { vm: 'minimal-vm' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'minimal-vm' && v.state === 'running'));
      const app = (opened = await h.open(t.agent, 'log', { query: { vm: 'minimal-vm', kind: 'console' } }));
      const violations: string[] = [];
      await app.page.exposeFunction('__cspViolation', (v: string) => violations.push(v));
      await app.page.evaluate(() =>
        document.addEventListener('securitypolicyviolation', (e) =>
          (window as unknown as { __cspViolation(v: string): void }).__cspViolation(
            `${e.violatedDirective} ${e.blockedURI}`,
          ),
        ),
      );
      await app.page.locator('[data-mode="terminal"]').click();
      await app.page.waitForFunction(
        () => (document.querySelector('#term .xterm-rows')?.textContent ?? '').includes('[root@minimal-vm:~]#'),
        null,
        { timeout: 30_000 },
      );
      expect(await screen(app)).toContain('minimal-vm login: root (automatic login)');
      // Keystrokes reach the guest once this attachment holds the input (the notice says so):
      // typed before, they would be dropped, as the console drops a watcher's.
      await app.page.waitForFunction(
        () => document.getElementById('notice')?.textContent === 'Typing into the console of "minimal-vm".',
        null,
        { timeout: 30_000 },
      );
      // Keys go where the focus is: into xterm.js's own input, not the tab button just clicked.
      await app.page.locator('#term .xterm-helper-textarea').focus();
      await app.page.keyboard.type('uname -a');
      // Enter once the guest echoed the line: typed faster than the echo, the Enter was lost now
      // and then here (1 run in 3 alone; never with the harness logging each keystroke).
      await app.page.waitForFunction(
        () => (document.querySelector('#term .xterm-rows')?.textContent ?? '').includes('# uname -a'),
        null,
        { timeout: 30_000 },
      );
      await app.page.keyboard.press('Enter');
      await app.page
        .waitForFunction(
          () => (document.querySelector('#term .xterm-rows')?.textContent ?? '').includes('Linux minimal-vm 6.6.32'),
          null,
          { timeout: 30_000 },
        )
        .catch(async (err: Error) => {
          throw new Error(`${err.message}\nThe terminal shows:\n${await screen(app)}`);
        });
      expect(await app.page.locator('#notice').textContent()).toBe('Typing into the console of "minimal-vm".');
      // The log's own tools step aside while the terminal is shown.
      expect(await app.page.locator('#search').isHidden()).toBe(true);
      await app.page.screenshot({ path: path.join(os.tmpdir(), 'nixvm-terminal-tab.png') });
      expect(violations).toEqual([]);
      expect(app.problems).toEqual([]);
      // Back to the log: the session is in the console log, as lines.
      await app.page.locator('[data-kind="console"]').click();
      await app.page.locator('#log .line', { hasText: 'Linux minimal-vm 6.6.32' }).waitFor();
    } finally {
      await opened?.close();
      await t.agent.call('stop', { vm: 'minimal-vm' }).catch(() => null);
      await t.close();
    }
  });
});
