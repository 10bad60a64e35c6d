/**
 * The dropdown's rows (issue 14) in Chromium over the real Agent: one primary action per state,
 * actions that cannot work disabled with the reason, nix's error text wrapped inside its card,
 * folder names on group headers, compact rows with a filter past 8 VMs (running ones first), and
 * what a running VM's vfkit uses, sampled only while the dropdown is open. See harness.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recentRuns } from '../../src/host/runner.ts';
import { createTestAgent, SIMULATOR } from '../helpers/agent.ts';
import { agentSnapshot, FakePort, vmSnapshot } from '../helpers/fake-port.ts';
import { copyFixture } from '../helpers/fixtures.ts';
import { testSpec } from '../vfkit-sim/harness.ts';
import { startHarness, type AppPage, type Harness } from './harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const row = (app: AppPage, vm: string) => app.page.locator(`li.vm[data-vm="${vm}"]`);

async function expand(app: AppPage, vm: string): Promise<void> {
  const r = row(app, vm);
  if (!(await r.evaluate((el) => el.classList.contains('expanded')))) await r.locator('.vm-main').click();
}

/** The row's visible primary buttons, by action. */
function primaries(app: AppPage, vm: string): Promise<string[]> {
  return row(app, vm)
    .locator('.vm-primary .btn')
    .evaluateAll((els) => els.filter((e) => !(e as HTMLElement).hidden).map((e) => e.getAttribute('data-action')!));
}

/**
 * The menubar hides the dropdown's window when it closes, and the page's visibility follows. Here
 * the page's visibility is set so and the event the window would get is sent.
 */
async function setVisible(app: AppPage, visible: boolean): Promise<void> {
  await app.page.evaluate((v) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (v ? 'visible' : 'hidden') });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => !v });
    document.dispatchEvent(new Event('visibilitychange'));
  }, visible);
}

describe('dropdown rows', () => {
  it('shows one primary action for each state: Start, Cancel Build while building, Stop while up, Start again', async () => {
    const flake = await copyFixture('ui', { salt: true });
    flake.write('step-seconds', '0.2');
    const t = await createTestAgent({ flake });
    const app = await h.open(t.agent, 'index');
    try {
      await row(app, 'web').waitFor();
      // Every change of web's primary slot, with the state the row showed then.
      await app.page.evaluate(() => {
        const w = window as unknown as { seen: string[] };
        w.seen = [];
        const li = document.querySelector('li.vm[data-vm="web"]')!;
        const note = () => {
          const ids = Array.from(li.querySelectorAll<HTMLElement>('.vm-primary .btn'))
            .filter((b) => !b.hidden)
            .map((b) => b.dataset.action);
          const entry = `${li.getAttribute('data-state')}${li.classList.contains('building') ? '+building' : ''}:${ids.join(',')}`;
          if (w.seen.at(-1) !== entry) w.seen.push(entry);
        };
        note();
        new MutationObserver(note).observe(li, { subtree: true, attributes: true, childList: true });
      });
      expect(await primaries(app, 'web')).toEqual(['start']);
      // Start is the blue one; nothing else competes with it in the row.
      expect(await row(app, 'web').locator('[data-action="start"]').getAttribute('class')).toContain('primary');
      await row(app, 'web').locator('[data-action="start"]').click();
      await app.page.locator('li.vm[data-vm="web"][data-state="running"]').waitFor({ timeout: 30_000 });
      await row(app, 'web').locator('[data-action="stop"]').click();
      await app.page.locator('li.vm[data-vm="web"][data-state="stopped"]').waitFor({ timeout: 30_000 });
      await app.page.waitForFunction(() => (window as unknown as { seen: string[] }).seen.at(-1)?.endsWith(':start'));
      const seen = await app.page.evaluate(() => (window as unknown as { seen: string[] }).seen);
      // Exactly one primary at every moment, and the one vmActions gives for that state.
      for (const entry of seen) {
        const [state, ids] = entry.split(':') as [string, string];
        expect(ids.split(',').filter(Boolean), entry).toHaveLength(1);
        const want = state.endsWith('+building')
          ? 'cancelBuild'
          : state === 'running' || state === 'starting'
            ? 'stop'
            : state === 'stopping'
              ? 'stopping'
              : 'start';
        expect(ids, entry).toBe(want);
      }
      const ids = seen.map((e) => e.split(':')[1]).filter((id, i, all) => id !== all[i - 1]);
      // Start, the build (cancellable), then up (Stop), then down again (a snapshot between the
      // build's end and the boot may show Start for a moment: the agent was there).
      const trail = seen.join(' → ');
      expect(ids[0], trail).toBe('start');
      expect(ids.indexOf('cancelBuild'), trail).toBeGreaterThan(0);
      expect(ids.lastIndexOf('stop'), trail).toBeGreaterThan(ids.indexOf('cancelBuild'));
      expect(ids.at(-1), trail).toBe('start');
      expect(seen, trail).toContain('running:stop');
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
    }
  }, 90_000);

  it('disables Start while vfkit is missing, with the agent’s sentence as its tooltip, and the quick actions with theirs', async () => {
    const t = await createTestAgent({ fixture: 'ui', settings: { vfkitPath: '/nonexistent/vfkit' } });
    const app = await h.open(t.agent, 'index');
    try {
      const start = row(app, 'dev').locator('[data-action="start"]');
      await start.waitFor();
      const problem = t.agent.snapshot().agent.problems.find((p) => /vfkit/i.test(p));
      expect(problem, 'the agent says vfkit is missing').toBeDefined();
      expect(await start.isDisabled()).toBe(true);
      expect(await start.getAttribute('title')).toBe(problem);
      // Not blue while it cannot work (the issue: "Start stays enabled (blue)").
      const blue = 'rgb(0, 122, 255)';
      const background = () => start.evaluate((el) => getComputedStyle(el).backgroundColor);
      expect(await background()).not.toBe(blue);
      // The banner says the same.
      expect(await app.page.locator('.problems .card.warning').allTextContents()).toContain(problem);

      // The icon buttons: named for screen readers, off with the reason while dev is stopped.
      await expand(app, 'dev');
      const quick = await row(app, 'dev')
        .locator('.vm-quick .btn')
        .evaluateAll((els) =>
          els.map((e) => [
            e.getAttribute('data-action'),
            e.getAttribute('aria-label'),
            (e as HTMLButtonElement).disabled,
            e.getAttribute('title'),
          ]),
        );
      expect(quick).toEqual([
        ['openSshInTerminal', 'Open ssh in Terminal', true, '"dev" is not running'],
        ['copySshCommand', 'Copy ssh Command', true, '"dev" is not running'],
        ['copyIp', 'Copy IP Address', true, '"dev" is not running'],
      ]);
      const more = row(app, 'dev').locator('[data-action="more"]');
      expect(await more.getAttribute('aria-label')).toBe('More Actions');
      await more.click();
      const labels = await row(app, 'dev').locator('.vm-menu [role="menuitem"]').allTextContents();
      expect(labels).toEqual([
        'Rebuild',
        'Open Serial Console in Terminal',
        'Show Log',
        'Show Build Log',
        'Show State Folder',
      ]);
      expect(await row(app, 'dev').locator('.vm-menu [data-action="openConsoleInTerminal"]').isDisabled()).toBe(true);
      // A menu from the keyboard: focus on its first item, arrows skip what is disabled, Escape
      // closes it and goes back to "…".
      const focused = () => app.page.evaluate(() => document.activeElement?.getAttribute('data-action'));
      expect(await focused()).toBe('build');
      await app.page.keyboard.press('ArrowDown');
      expect(await focused()).toBe('viewConsoleLog');
      await app.page.keyboard.press('Escape');
      await row(app, 'dev').locator('.vm-menu').waitFor({ state: 'hidden' });
      expect(await focused()).toBe('more');
      expect(await more.getAttribute('aria-expanded')).toBe('false');
      await more.click();
      // Show State Folder reveals dev's state folder, and the menu closes.
      await row(app, 'dev').locator('.vm-menu [data-action="revealStateDir"]').click();
      await expect.poll(() => app.host.revealed).toEqual([t.vm('dev').stateDir]);
      await row(app, 'dev').locator('.vm-menu').waitFor({ state: 'hidden' });

      // vfkit found again: Start works.
      await t.agent.call('setSettings', { vfkitPath: SIMULATOR });
      await app.page.waitForFunction(
        () => !document.querySelector<HTMLButtonElement>('li.vm[data-vm="dev"] [data-action="start"]')!.disabled,
      );
      expect(await start.getAttribute('title')).toBe('Start');
      expect(await background()).toBe(blue);
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it('disables Start for a VM this Mac cannot run, with the sentence the agent refuses the start with', async () => {
    // The ui fixture's VMs are x86_64-linux; on Apple silicon Virtualization.framework boots only aarch64.
    const t = await createTestAgent({ fixture: 'ui', agent: { hostMachine: { platform: 'darwin', arch: 'arm64' } } });
    const app = await h.open(t.agent, 'index');
    try {
      const start = row(app, 'dev').locator('[data-action="start"]');
      await start.waitFor();
      await app.page.waitForFunction(
        () => document.querySelector<HTMLButtonElement>('li.vm[data-vm="dev"] [data-action="start"]')!.disabled,
      );
      const refusal = await t.agent.call('start', { vm: 'dev' }).then(
        () => null,
        (e: Error) => e.message,
      );
      expect(refusal).toMatch(/^VM "dev" cannot run on this Mac: it is built for x86_64-linux/);
      expect(await start.getAttribute('title')).toBe(refusal);
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it("wraps nix's code frame inside the error card, and the whole error opens in the log window", async () => {
    const flake = await copyFixture('syntax');
    // The error is at the end of a long line: exactly where a card that does not wrap cuts it off.
    const long = `config = { description = "${'a very long description '.repeat(8)}"; }`;
    flake.write(
      'flake.nix',
      `{\n  outputs = { self }: {\n    nixosConfigurations = {\n      vm = { ${long} }\n    };\n  };\n}\n`,
    );
    const t = await createTestAgent({ flake });
    const app = await h.open(t.agent, 'index');
    try {
      const card = app.page.locator('.flake-errors .card.error');
      await card.waitFor({ timeout: 20_000 });
      // The folder's name, the full path as its tooltip.
      expect(await card.locator('.card-title').textContent()).toBe(`${path.basename(flake.dir)} failed to evaluate`);
      expect(await card.locator('.card-title').getAttribute('title')).toBe(flake.dir);
      const detail = card.locator('.card-detail');
      expect(await detail.textContent()).toContain('a very long description');
      const widths = () =>
        card.evaluate((c) =>
          [c, ...Array.from(c.querySelectorAll<HTMLElement>('.card-text, .card-detail'))].map((el) => ({
            cls: el.className,
            scroll: el.scrollWidth,
            client: el.clientWidth,
          })),
        );
      for (const w of await widths()) expect(w.scroll, `${w.cls} is wider than it shows`).toBeLessThanOrEqual(w.client);
      // The long line did wrap (more than one line tall), rather than fit by luck.
      expect(await detail.evaluate((el) => el.getBoundingClientRect().height)).toBeGreaterThan(60);

      // The card shows the first lines; "Show Full Error" opens all of them in the log window.
      const full = card.locator('[data-action="showFullError"]');
      expect(await detail.evaluate((el) => el.classList.contains('clamped'))).toBe(true);
      await full.click();
      await expect.poll(() => app.host.flakeErrorWindows).toEqual([flake.dir]);
      expect(app.problems).toEqual([]);

      // That window: the whole error, wrapped when asked, named by the folder, no VM tabs.
      const win = await h.open(t.agent, 'log', { query: { flake: flake.dir }, viewport: { width: 700, height: 400 } });
      try {
        await expect
          .poll(() => win.page.locator('#log').textContent(), { timeout: 10_000 })
          .toContain('a very long description');
        const error = t.agent.snapshot().flakes.find((f) => f.dir === flake.dir)!.error!;
        expect(await win.page.locator('#count').textContent()).toBe(`${error.split('\n').length} lines`);
        expect(await win.page.locator('#vmname').textContent()).toBe(`${path.basename(flake.dir)} failed to evaluate`);
        expect(await win.page.locator('.seg').isVisible()).toBe(false);
        expect(await win.page.locator('#console-app').isVisible()).toBe(false);
        await win.page.locator('#wrap').check();
        const spill = await win.page.evaluate(() => {
          const el = document.getElementById('log')!;
          return el.scrollWidth - el.clientWidth;
        });
        expect(spill, 'a wrapped error line is wider than the window').toBeLessThanOrEqual(0);
        await win.page.screenshot({ path: path.join(import.meta.dirname, '..', '..', 'docs', 'log-flake-error.png') });
        expect(win.problems).toEqual([]);
      } finally {
        await win.close();
      }
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it('a failed build shows its error wrapped in the row, and "Show Full Error" opens the build log', async () => {
    const flake = await copyFixture('ui', { salt: true });
    flake.write('step-seconds', '0');
    const t = await createTestAgent({ flake });
    const app = await h.open(t.agent, 'index');
    try {
      await row(app, 'builder').waitFor();
      const before = t.vm('builder').drvPath;
      // A build that fails, its last words one long line without spaces.
      flake.write('step-seconds', `0; echo ${'the-compiler-said-something-long/'.repeat(8)} >&2; exit 3`);
      await t.waitFor((s) => s.vms.some((v) => v.name === 'builder' && v.drvPath !== before), 20_000);
      await t.agent.call('build', { vm: 'builder' }).catch(() => {});
      const problem = row(app, 'builder').locator('.vm-problem');
      await problem.waitFor({ timeout: 30_000 });
      const spill = await problem.evaluate((box) =>
        [box, ...Array.from(box.querySelectorAll<HTMLElement>('.problem-text, .problem-detail'))]
          .filter((el) => !(el as HTMLElement).hidden && el.scrollWidth > el.clientWidth)
          .map((el) => el.className),
      );
      expect(spill, 'error text cut off at the right edge').toEqual([]);
      const full = problem.locator('[data-action="problemLog"]');
      expect(await full.textContent()).toBe('Show Full Error');
      await full.click();
      await expect.poll(() => app.host.logWindows).toEqual([{ vm: 'builder', kind: 'build' }]);
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
    }
  }, 90_000);

  it('past 8 VMs: compact rows, a filter by name, running VMs first, group headers named by folder', async () => {
    const ui = await copyFixture('ui', { salt: true });
    ui.write('step-seconds', '0');
    const many = await copyFixture('many');
    const t = await createTestAgent({ flake: ui, settings: { flakes: [many.dir, ui.dir] } });
    try {
      await t.waitFor((s) => s.vms.length === 29, 30_000);
      // Running before the dropdown opens: first in its flake.
      await t.agent.call('start', { vm: 'vm17' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'vm17' && v.state === 'running'), 30_000);
      const app = await h.open(t.agent, 'index');
      try {
        await row(app, 'vm25').waitFor();
        expect(await app.page.evaluate(() => document.body.classList.contains('compact'))).toBe(true);
        // Group headers: the folder's name, not an upper-cased path; the path on hover.
        const heads = await app.page
          .locator('li.group')
          .evaluateAll((els) =>
            els.map((e) => [e.textContent, e.getAttribute('title'), getComputedStyle(e).textTransform]),
          );
        expect(heads).toEqual([
          [path.basename(many.dir), many.dir, 'none'],
          [path.basename(ui.dir), ui.dir, 'none'],
        ]);
        const order = () =>
          app.page
            .locator('ul.vms > li')
            .evaluateAll((els) =>
              els.map((e) => (e.classList.contains('group') ? '#' : e.getAttribute('data-vm'))).join(' '),
            );
        const first = (await order()).split(' ').slice(0, 4);
        expect(first).toEqual(['#', 'vm17', 'vm01', 'vm02']);
        // Compact: one line per row, so many fit.
        const height = await row(app, 'vm01').evaluate((el) => el.getBoundingClientRect().height);
        expect(height).toBeLessThan(34);

        // The filter: by name, case-insensitive; a line when nothing matches.
        const filter = app.page.getByRole('searchbox', { name: 'Filter virtual machines by name' });
        await filter.fill('VM1');
        await expect
          .poll(order)
          .toBe(`# ${['vm17', ...[10, 11, 12, 13, 14, 15, 16, 18, 19].map((n) => `vm${n}`)].join(' ')}`);
        await filter.fill('WE');
        await expect.poll(order).toBe('# web');
        expect(await app.page.locator('.no-match').isVisible()).toBe(false);
        await filter.fill('nothing-like-this');
        await expect.poll(order).toBe('');
        expect(await app.page.locator('.no-match').textContent()).toBe('No VM matches “nothing-like-this”.');
        // Escape clears it.
        await filter.press('Escape');
        expect(await filter.inputValue()).toBe('');
        await expect.poll(async () => (await order()).split(' ').length).toBe(31);

        // A VM started while the dropdown is open keeps its place (a row never jumps from under the
        // pointer); the next time the dropdown opens it is with the running ones.
        await t.agent.call('start', { vm: 'vm05' });
        await app.page.locator('li.vm[data-vm="vm05"][data-state="running"]').waitFor({ timeout: 30_000 });
        expect((await order()).split(' ').slice(0, 4)).toEqual(['#', 'vm17', 'vm01', 'vm02']);
        await setVisible(app, false);
        await setVisible(app, true);
        await expect.poll(async () => (await order()).split(' ').slice(0, 4)).toEqual(['#', 'vm05', 'vm17', 'vm01']);
        expect(app.problems).toEqual([]);
      } finally {
        await app.close();
      }
    } finally {
      await t.dispose();
      many.remove();
    }
  }, 120_000);

  it('a few VMs: no filter, full rows', async () => {
    const t = await createTestAgent({ fixture: 'ui' });
    const app = await h.open(t.agent, 'index');
    try {
      await app.page.locator('li.vm').nth(3).waitFor();
      expect(await app.page.locator('.filter-box').isVisible()).toBe(false);
      expect(await app.page.evaluate(() => document.body.classList.contains('compact'))).toBe(false);
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it("shows a running VM's CPU, memory and uptime from ps, sampled only while the dropdown is open", async () => {
    const t = await createTestAgent({ fixture: 'ui', agent: { usageIntervalMs: 200 } });
    try {
      await t.agent.call('start', { vm: 'dev' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'), 30_000);
      // Nobody looks: nothing sampled.
      expect(t.vm('dev').usage ?? null).toBeNull();
      const pid = t.vm('dev').pid!;
      const app = await h.open(t.agent, 'index');
      try {
        const usage = row(app, 'dev').locator('.vm-usage');
        await app.page.waitForFunction(() =>
          /^CPU /.test(document.querySelector('li.vm[data-vm="dev"] .vm-usage')?.textContent ?? ''),
        );
        expect(await usage.textContent()).toMatch(
          /^CPU \d+(\.\d)?% · \d+(\.\d)? (KiB|MiB|GiB) in use · up \d+(s|m \d+s)$/,
        );
        const u = t.vm('dev').usage!;
        expect(u.rssBytes).toBeGreaterThan(0);
        // From the process table, for dev's vfkit.
        const ps = recentRuns().filter((r) => path.basename(r.argv[0] ?? '') === 'ps');
        expect(ps.map((r) => r.argv.slice(1).join(' '))).toContain(`-o pid=,%cpu=,rss= -p ${pid}`);
        // Only a running VM has a line.
        expect(await row(app, 'web').locator('.vm-usage').isVisible()).toBe(false);

        // The dropdown closes: sampling stops and the numbers go (nobody would refresh them).
        await setVisible(app, false);
        await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && !v.usage), 10_000, 'usage dropped');
        await setVisible(app, true);
        await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.usage), 10_000, 'usage sampled again');
        expect(app.problems).toEqual([]);
      } finally {
        await app.close();
      }
      // The page went away with its subscription: sampling stops again.
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && !v.usage), 10_000, 'usage dropped at close');
    } finally {
      await t.dispose();
    }
  }, 90_000);

  it("grows builder-vm's writable store from the menu when diskSize grew, and resets it only once the user confirms", async () => {
    const flake = await copyFixture('seed-exact', { salt: true });
    const certs = path.join(flake.dir, 'ca-bundle.crt');
    fs.writeFileSync(certs, '-----BEGIN CERTIFICATE-----\nnixvm test\n-----END CERTIFICATE-----\n');
    const t = await createTestAgent({ flake, env: { NIX_SSL_CERT_FILE: certs } });
    try {
      await t.agent.call('start', { vm: 'builder-vm' });
      await t.agent.call('stop', { vm: 'builder-vm' });
      const img = t.vm('builder-vm').disks!.images.find((d) => d.role === 'writable-store')!.path;
      expect(fs.statSync(img).size).toBe(20 * 1024 * 1024 * 1024);
      const app = await h.open(t.agent, 'index');
      try {
        const menuItem = (action: string) => row(app, 'builder-vm').locator(`.vm-menu [data-action="${action}"]`);
        const openMenu = async () => {
          await expand(app, 'builder-vm');
          if (!(await row(app, 'builder-vm').locator('.vm-menu').isVisible()))
            await row(app, 'builder-vm').locator('[data-action="more"]').click();
        };
        await row(app, 'builder-vm').waitFor();
        await openMenu();
        // Same size as diskSize: only Reset is offered.
        expect(await menuItem('growDisk').count()).toBe(0);
        expect(await menuItem('resetDisk').textContent()).toBe('Reset Writable Store…');

        const host = flake.file('hosts/builder-vm.nix');
        fs.writeFileSync(host, fs.readFileSync(host, 'utf8').replace('diskSize = 20 * 1024;', 'diskSize = 30 * 1024;'));
        await t.waitFor((s) => s.vms.some((v) => v.name === 'builder-vm' && v.disks?.canGrow === true), 60_000);
        await openMenu();
        await menuItem('growDisk').waitFor();
        expect(await menuItem('growDisk').isDisabled()).toBe(false);
        await menuItem('growDisk').click();
        await t.waitFor(
          (s) => s.vms.some((v) => v.name === 'builder-vm' && v.disks?.canGrow === false),
          10_000,
          'grown',
        );
        expect(fs.statSync(img).size).toBe(30 * 1024 * 1024 * 1024);
        expect(t.vm('builder-vm').disks!.notice).toBeNull();

        // Reset asks; "Cancel" deletes nothing.
        const asked: string[] = [];
        const answer = (accept: boolean) =>
          app.page.once('dialog', (d) => {
            asked.push(d.message());
            void (accept ? d.accept() : d.dismiss());
          });
        answer(false);
        await openMenu();
        await menuItem('resetDisk').click();
        await expect.poll(() => asked.length).toBe(1);
        expect(asked[0]).toBe(
          'Delete the writable store image of "builder-vm"? Everything it keeps in its writable Nix store is lost; its next start makes a new, empty one.',
        );
        expect(fs.existsSync(img), 'the image after "Cancel"').toBe(true);
        answer(true);
        await openMenu();
        await menuItem('resetDisk').click();
        await t.waitFor(
          (s) =>
            s.vms.some((v) => v.name === 'builder-vm' && !v.disks?.images.some((d) => d.role === 'writable-store')),
          10_000,
          'the image gone',
        );
        expect(fs.existsSync(img)).toBe(false);
        await openMenu();
        expect(await menuItem('resetDisk').count(), 'nothing left to reset').toBe(0);
        expect(app.problems).toEqual([]);
      } finally {
        await app.close();
      }
    } finally {
      await t.dispose();
    }
  }, 120_000);

  it("shows a switch in place as it runs: what it does and the switch's last line, gone once applied", async () => {
    // The agent's snapshots as an apply sends them, line by line (the switch itself is
    // test/integration/apply-switch.test.ts's).
    const running = vmSnapshot({ name: 'web', spec: testSpec({ name: 'web' }), state: 'running', pid: 4711 });
    const port = new FakePort(agentSnapshot([running]));
    const app = await h.open(port, 'index');
    try {
      await row(app, 'web').waitFor();
      const progress = row(app, 'web').locator('.vm-progress');
      expect(await progress.isHidden()).toBe(true);
      const switching = (lastLine: string | null) => ({
        how: 'switching' as const,
        outPath: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web',
        at: 1,
        reasons: [],
        error: null,
        lastLine,
      });
      port.setVm({ ...running, applied: switching('activating the configuration...') });
      await progress.waitFor({ state: 'visible' });
      expect(await progress.locator('.drv').textContent()).toBe('Switching in place…');
      await progress.locator('.lastline', { hasText: 'activating the configuration...' }).waitFor();
      // No percentage for a switch: no bar.
      expect(await progress.locator('.bar').isVisible()).toBe(false);
      port.setVm({ ...running, applied: switching('setting up /etc...') });
      await progress.locator('.lastline', { hasText: 'setting up /etc...' }).waitFor();
      await app.page.screenshot({ path: path.join(os.tmpdir(), 'nixvm-dropdown-switching.png') });
      port.setVm({ ...running, applied: { ...switching('setting up /etc...'), how: 'switch' } });
      await progress.waitFor({ state: 'hidden' });
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
    }
  }, 60_000);
});
