/**
 * The log window's Terminal tab in Chromium over the real Agent and the simulator's real pty:
 * xterm.js shows the console log's history (the earlier runs too) above the console's screen,
 * each line once, keys typed in the page reach the guest's shell, a resize is said as the `stty`
 * line or (Pass size) typed at the guest's prompt, and the window's CSP (style-src 'self')
 * holds: no violation, no script error.
 */
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { waitFor } from '../helpers/wait.ts';
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

/** Until the VM's console log (as `nixvm logs` reads it) satisfies `ok`. */
async function waitForLog(t: TestAgent, vm: string, ok: (log: string) => boolean, what: string): Promise<void> {
  let last = '';
  await waitFor(
    async () => {
      last = (await t.agent.call('logs', { vm, kind: 'console', lines: 200 })).lines.join('\n');
      return ok(last);
    },
    { what, detail: () => `The console log ends:\n${last.slice(-2000)}` },
  );
}

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
        () => document.getElementById('notice')?.textContent?.startsWith('Typing into the console of "minimal-vm".'),
        null,
        { timeout: 30_000 },
      );
      // A serial line carries no size: the notice says the stty line for this terminal's.
      expect(await app.page.locator('#notice').textContent()).toMatch(
        /^Typing into the console of "minimal-vm"\. The guest cannot see this window's size over a serial line: run `stty rows \d+ cols \d+` in it\.$/,
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
      // Still shown once the guest's answer reached the console log too (the log's own notice
      // logic stays out of it: hiding it would resize the terminal, and the guest's size with it).
      expect(await app.page.locator('#notice').isVisible(), 'the notice was hidden').toBe(true);
      expect(await app.page.locator('#notice').textContent()).toMatch(/^Typing into the console of "minimal-vm"\./);
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
  it('shows the console log’s history, the run before this one too, above the live console, each line once', async () => {
    const t = await createTestAgent({ fixture: 'seed' });
    let opened: AppPage | null = null;
    try {
      // Two runs: the log has both, the relay's replay only the second.
      for (const run of [1, 2]) {
        await t.agent.call('start', { vm: 'minimal-vm' });
        await t.waitFor((s) => s.vms.some((v) => v.name === 'minimal-vm' && v.state === 'running'));
        await waitForLog(t, 'minimal-vm', (log) => log.includes('[root@minimal-vm:~]# '), `run ${run}'s prompt`);
        if (run === 1) {
          await t.agent.call('stop', { vm: 'minimal-vm' });
          await t.waitFor((s) => s.vms.some((v) => v.name === 'minimal-vm' && v.state === 'stopped'));
        }
      }
      // Tall enough for both runs without scrolling: the DOM then holds every row.
      const app = (opened = await h.open(t.agent, 'log', {
        query: { vm: 'minimal-vm', kind: 'console' },
        viewport: { width: 1000, height: 2400 },
      }));
      await app.page.locator('[data-mode="terminal"]').click();
      await app.page
        .waitForFunction(
          () =>
            (document.querySelector('#term .xterm-rows')?.textContent ?? '').includes('Run started') &&
            (document.querySelector('#term .xterm-rows')?.textContent ?? '').includes('[root@minimal-vm:~]#'),
          null,
          { timeout: 30_000 },
        )
        .catch(async (err: Error) => {
          throw new Error(
            `${err.message}\nNo "Run started" separator and prompt; the terminal shows:\n${await screen(app)}`,
          );
        });
      const text = await screen(app);
      const count = (needle: string) => text.split(needle).length - 1;
      const why = `The terminal shows:\n${text}`;
      expect(count('Run started'), why).toBe(2);
      // Once per run: the log's copy and the replay's are not both shown.
      expect(count('minimal-vm login: root (automatic login)'), why).toBe(2);
      expect(count('Reached target System Power Off.'), why).toBe(1);
      const [first, second] = [text.indexOf('Run started'), text.lastIndexOf('Run started')];
      expect(first, why).toBeLessThan(text.indexOf('Reached target System Power Off.'));
      expect(text.indexOf('Reached target System Power Off.'), why).toBeLessThan(second);
      expect(text.lastIndexOf('[root@minimal-vm:~]#'), why).toBeGreaterThan(second);
      expect(app.problems).toEqual([]);
    } finally {
      await opened?.close();
      await t.agent.call('stop', { vm: 'minimal-vm' }).catch(() => null);
      await t.close();
    }
  });

  it('says the stty line after a resize; with Pass size, types it at the guest’s prompt', async () => {
    const t = await createTestAgent({ fixture: 'seed' });
    let opened: AppPage | null = null;
    try {
      await t.agent.call('start', { vm: 'minimal-vm' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'minimal-vm' && v.state === 'running'));
      const app = (opened = await h.open(t.agent, 'log', { query: { vm: 'minimal-vm', kind: 'console' } }));
      await app.page.locator('[data-mode="terminal"]').click();
      await app.page.waitForFunction(
        () => (document.querySelector('#term .xterm-rows')?.textContent ?? '').includes('[root@minimal-vm:~]#'),
        null,
        { timeout: 30_000 },
      );
      const rows = () => app.page.evaluate(() => document.querySelectorAll('#term .xterm-rows > div').length);
      const before = await rows();
      await app.page.setViewportSize({ width: 700, height: 400 });
      await app.page.waitForFunction((n) => document.querySelectorAll('#term .xterm-rows > div').length !== n, before, {
        timeout: 30_000,
      });
      const after = await rows();
      await app.page.waitForFunction(
        (r) =>
          new RegExp(
            `^Typing into the console of "minimal-vm"\\. The guest cannot see this window's size over a serial line: run \`stty rows ${r} cols \\d+\` in it\\.$`,
          ).test(document.getElementById('notice')?.textContent ?? ''),
        after,
        { timeout: 30_000 },
      );
      const cols = Number(/cols (\d+)/.exec((await app.page.locator('#notice').textContent()) ?? '')![1]);
      expect(await screen(app), 'stty typed without Pass size').not.toContain('stty rows');
      // Pass size: the size goes to the guest at once, typed at its prompt; its own stty has it.
      await app.page.locator('#pass-size').check();
      await app.page
        .waitForFunction(
          (line) => (document.querySelector('#term .xterm-rows')?.textContent ?? '').includes(line),
          `stty rows ${after} cols ${cols}`,
          { timeout: 30_000 },
        )
        .catch(async (err: Error) => {
          throw new Error(
            `${err.message}\nThe notice says: ${await app.page.locator('#notice').textContent()}\nThe terminal shows:\n${await screen(app)}`,
          );
        });
      await app.page.locator('#term .xterm-helper-textarea').focus();
      await app.page.keyboard.type('stty size');
      await app.page.waitForFunction(
        () => (document.querySelector('#term .xterm-rows')?.textContent ?? '').includes('# stty size'),
        null,
        { timeout: 30_000 },
      );
      await app.page.keyboard.press('Enter');
      await app.page
        .waitForFunction(
          (answer) =>
            Array.from(document.querySelectorAll('#term .xterm-rows > div')).some(
              (r) => (r.textContent ?? '').trim() === answer,
            ),
          `${after} ${cols}`,
          { timeout: 30_000 },
        )
        .catch(async (err: Error) => {
          throw new Error(`${err.message}\nThe terminal shows:\n${await screen(app)}`);
        });
      expect(app.problems).toEqual([]);
    } finally {
      await opened?.close();
      await t.agent.call('stop', { vm: 'minimal-vm' }).catch(() => null);
      await t.close();
    }
  });
});
