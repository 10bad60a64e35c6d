/**
 * The menubar dropdown in Chromium over the real Agent (fixture flakes, real nix, the vfkit
 * simulator). See harness.ts for how the page is wired.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { copyFixture } from '../helpers/fixtures.ts';
import { startHarness, type AppPage, type Harness, type OpenOptions } from './harness.ts';

/** Where the screenshots of new views go, to be looked at. */
const SHOTS = process.env.NIXVM_SHOTS_DIR ?? path.join(os.tmpdir(), 'nixvm-shots');

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

/** Opens the dropdown over a test agent; both are cleaned up by the returned function. */
async function dropdown(t: TestAgent, opts: OpenOptions = {}): Promise<AppPage> {
  return h.open(t.agent, 'index', opts);
}

const row = (app: AppPage, vm: string) => app.page.locator(`li.vm[data-vm="${vm}"]`);

async function expand(app: AppPage, vm: string): Promise<void> {
  const r = row(app, vm);
  if (!(await r.evaluate((el) => el.classList.contains('expanded')))) await r.locator('.vm-main').click();
}

/** Opens the row's "…" menu (it closes after each choice). */
async function openMenu(app: AppPage, vm: string): Promise<void> {
  await expand(app, vm);
  const more = row(app, vm).locator('[data-action="more"]');
  if ((await more.getAttribute('aria-expanded')) !== 'true') await more.click();
  await row(app, vm).locator('.vm-menu:not([hidden])').waitFor();
}

describe('dropdown', () => {
  it('renders one row per VM with its state, resources and what ssh allows', async () => {
    const t = await createTestAgent({ fixture: 'ui' });
    const app = await dropdown(t);
    try {
      await app.page.locator('li.vm').nth(3).waitFor();
      const names = await app.page.locator('li.vm .vm-name').allTextContents();
      expect(names.sort()).toEqual(['builder', 'dev', 'scratch', 'web']);
      expect(await row(app, 'dev').locator('.vm-status').textContent()).toBe('Stopped');
      expect(await row(app, 'dev').locator('.vm-res').textContent()).toBe('4 CPUs · 4 GiB');
      expect(await row(app, 'scratch').locator('.vm-res').textContent()).toBe('1 CPU · 1 GiB');
      expect(await row(app, 'dev').locator('[data-action="start"]').isVisible()).toBe(true);
      expect(await row(app, 'dev').locator('.badge.stale').isVisible()).toBe(false);

      // The window fits its rows: expanding one asks for more height.
      await expect.poll(() => app.host.heights.length).toBeGreaterThan(0);
      const before = app.host.heights.at(-1)!;
      await expand(app, 'scratch');
      await expect.poll(() => app.host.heights.at(-1)!).toBeGreaterThan(before + 20);
      const copy = row(app, 'scratch').locator('[data-action="copySshCommand"]');
      expect(await copy.isDisabled()).toBe(true);
      expect(await copy.getAttribute('title')).toBe('sshd is not enabled in this configuration');
      expect(await app.page.locator('#summary').textContent()).toBe('none running');
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it('Start builds the VM with a moving progress bar, then runs it', async () => {
    const flake = await copyFixture('ui', { salt: true });
    flake.write('step-seconds', '0.25');
    const t = await createTestAgent({ flake });
    const app = await dropdown(t);
    try {
      await row(app, 'web').waitFor();
      // Record every progress value and build text the row shows.
      await app.page.evaluate(() => {
        const w = window as unknown as { seen: { pct: string[]; drv: string[]; line: string[] } };
        w.seen = { pct: [], drv: [], line: [] };
        const li = document.querySelector('li.vm[data-vm="web"]')!;
        new MutationObserver(() => {
          const bar = li.querySelector('.vm-progress') as HTMLElement;
          if (bar.hidden) return;
          const v = bar.getAttribute('aria-valuenow');
          if (v && w.seen.pct.at(-1) !== v) w.seen.pct.push(v);
          const d = li.querySelector('.drv')!.textContent!;
          if (d && !w.seen.drv.includes(d)) w.seen.drv.push(d);
          const l = li.querySelector('.lastline')!.textContent!;
          if (l && !w.seen.line.includes(l)) w.seen.line.push(l);
        }).observe(li, { subtree: true, childList: true, attributes: true, characterData: true });
      });
      await row(app, 'web').locator('[data-action="start"]').click();
      await row(app, 'web').locator('.vm-progress:not([hidden])').waitFor({ timeout: 10_000 });
      expect(await row(app, 'web').locator('[data-action="cancelBuild"]').isVisible()).toBe(true);
      await app.page.locator('li.vm[data-vm="web"][data-state="running"]').waitFor({ timeout: 30_000 });

      const seen = await app.page.evaluate(
        () => (window as unknown as { seen: { pct: string[]; drv: string[]; line: string[] } }).seen,
      );
      const pct = seen.pct.map(Number);
      const between = pct.filter((p) => p > 0 && p < 100);
      expect(new Set(between).size, `progress values seen: ${pct.join(', ')}`).toBeGreaterThanOrEqual(2);
      expect(pct).toEqual([...pct].sort((a, b) => a - b));
      expect(seen.drv.join('\n')).toMatch(/openssl-3\.0\.14|python3-3\.12\.4|nginx-1\.26\.1|webapp-0\.9\.2/);
      expect(seen.line.join('\n')).toMatch(/unpacking sources|compiling 12 objects|installing/);
      // Running now: progress gone, Stop offered, the address shown.
      expect(await row(app, 'web').locator('.vm-progress').isHidden()).toBe(true);
      expect(await row(app, 'web').locator('[data-action="stop"]').isVisible()).toBe(true);
      expect(t.vm('web').state).toBe('running');
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it("Copy ssh command puts the agent's ssh command on the clipboard; Terminal gets a .command file that runs it", async () => {
    const t = await createTestAgent({ fixture: 'ui' });
    const app = await dropdown(t);
    try {
      await row(app, 'dev').locator('[data-action="start"]').click();
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running' && v.sshCommand !== null));
      await expand(app, 'dev');
      const copy = row(app, 'dev').locator('[data-action="copySshCommand"]');
      await app.page.waitForFunction(
        () =>
          !document.querySelector<HTMLButtonElement>('li.vm[data-vm="dev"] [data-action="copySshCommand"]')!.disabled,
      );
      await copy.click();
      await app.page.locator('#toast:not([hidden])').waitFor();
      const { command, argv } = await t.agent.call('sshCommand', { vm: 'dev' });
      expect(app.host.clipboard).toEqual([command]);
      expect(command).toMatch(/ -l alice /);
      expect(await app.page.locator('#toast .toast-text').textContent()).toBe('Copied the ssh command');

      // Open ssh in Terminal: `open -a Terminal <file>`, and the file execs exactly that argv.
      await row(app, 'dev').locator('[data-action="openSshInTerminal"]').click();
      await app.page.waitForFunction(
        () =>
          !document.querySelector('li.vm[data-vm="dev"] [data-action="openSshInTerminal"]')!.classList.contains('busy'),
      );
      expect(app.host.terminals).toHaveLength(1);
      const { file, argv: openArgv } = app.host.terminals[0]!;
      expect(openArgv).toEqual(['open', '-a', 'Terminal', file]);
      expect(file).toBe(path.join(t.vm('dev').stateDir, 'ssh.command'));
      const stub = mkdtempSync(path.join(os.tmpdir(), 'nixvm-sshstub-'));
      writeFileSync(path.join(stub, 'ssh'), '#!/bin/sh\nprintf "%s\\n" "$@"\n');
      chmodSync(path.join(stub, 'ssh'), 0o755);
      const r = spawnSync(file, { encoding: 'utf8', env: { PATH: `${stub}:/usr/bin:/bin` } });
      expect(r.status).toBe(0);
      expect(r.stdout.trimEnd().split('\n')).toEqual(argv.slice(1));
      rmSync(stub, { recursive: true });

      // Open Serial Console in Terminal (in the "…" menu): console.command runs this checkout's `nixvm console -- dev`.
      await openMenu(app, 'dev');
      await row(app, 'dev').locator('[data-action="openConsoleInTerminal"]').click();
      await app.page.waitForFunction(
        () =>
          !document
            .querySelector('li.vm[data-vm="dev"] [data-action="openConsoleInTerminal"]')!
            .classList.contains('busy'),
      );
      expect(app.host.terminals).toHaveLength(2);
      const consoleCmd = app.host.terminals[1]!;
      expect(consoleCmd.file).toBe(path.join(t.vm('dev').stateDir, 'console.command'));
      expect(consoleCmd.argv).toEqual(['open', '-a', 'Terminal', consoleCmd.file]);
      expect(consoleCmd.body).toMatch(/^exec .*bin\/nixvm\.js console -- dev$/m);

      // Copy IP copies the address the agent reports.
      await openMenu(app, 'dev');
      await row(app, 'dev').locator('[data-action="copyIpv6"]').click();
      await app.page.waitForFunction(() =>
        document.querySelector('#toast .toast-text')?.textContent?.startsWith('Copied fe80::'),
      );
      expect(app.host.clipboard.at(-1)).toBe(t.vm('dev').ipv6);
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it('a running VM whose config changed shows stale and "Apply", saying why only a restart will do, which boots the new closure', async () => {
    const flake = await copyFixture('ui', { salt: true });
    flake.write('step-seconds', '0');
    const t = await createTestAgent({ flake });
    const app = await dropdown(t);
    try {
      await row(app, 'web').locator('[data-action="start"]').click();
      await app.page.locator('li.vm[data-vm="web"][data-state="running"]').waitFor({ timeout: 30_000 });
      const before = t.vm('web').bootedDrvPath;
      expect(await row(app, 'web').locator('[data-action="apply"]').isVisible()).toBe(false);

      flake.write('motd', 'Hello from a changed config');
      const apply = row(app, 'web').locator('[data-action="apply"]');
      await apply.waitFor({ state: 'visible', timeout: 15_000 });
      // The row's one primary action; its name and tooltip say only a restart applies it.
      expect(await apply.textContent()).toBe('Apply');
      expect(await apply.getAttribute('aria-label')).toBe('Restart to Apply');
      // web's root does not take nixvm's key: no switch in place, and the button says why.
      expect(await apply.getAttribute('title')).toBe(
        "Rebuild, then restart: nixvm's key does not reach root there (no ssh.authorized_keys.root credential, no $KEYS file its sshd reads for root)",
      );
      expect(await row(app, 'web').locator('.badge.stale').isVisible()).toBe(true);
      // Apply took the primary's place: Stop is one click further, in the "…" menu.
      expect(await row(app, 'web').locator('.vm-primary [data-action="stop"]').isVisible()).toBe(false);
      await openMenu(app, 'web');
      expect(await row(app, 'web').locator('.vm-menu [data-action="stop"]').isEnabled()).toBe(true);
      await app.page.keyboard.press('Escape');
      // Only web changed.
      expect(await row(app, 'dev').locator('.badge.stale').isVisible()).toBe(false);

      await apply.click();
      await t.waitFor(
        (s) => s.vms.some((v) => v.name === 'web' && v.state === 'running' && !v.stale && v.bootedDrvPath !== before),
        30_000,
      );
      await apply.waitFor({ state: 'hidden' });
      expect(await row(app, 'web').locator('.badge.stale').isVisible()).toBe(false);
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it("shows a VM's disks in its row, and Reset disk deletes the writable store only once confirmed", async () => {
    const certs = path.join(os.tmpdir(), `nixvm-ui-certs-${process.pid}.crt`);
    writeFileSync(certs, 'certs');
    const t = await createTestAgent({ fixture: 'seed-exact', env: { NIX_SSL_CERT_FILE: certs } });
    // At twice the scale, so that the screenshot below can be read.
    const app = await dropdown(t, { deviceScaleFactor: 2 });
    try {
      await t.agent.call('start', { vm: 'builder-vm' });
      const disks = row(app, 'builder-vm').locator('.vm-disks');
      // One line per image: what it is, its file name (the full path as its tooltip), its sizes.
      const lines = () =>
        disks.locator('.disk').evaluateAll((els) =>
          els.map((el) => ({
            role: el.querySelector('.disk-role')!.textContent,
            file: el.querySelector('.disk-file')!.textContent,
            path: el.querySelector('.disk-file')!.getAttribute('title'),
            size: el.querySelector('.disk-size')!.textContent,
          })),
        );
      await expect.poll(async () => (await lines()).map((l) => l.role)).toEqual(['Store image', 'Writable store']);
      const images = t.vm('builder-vm').disks!.images;
      const store = images.find((i) => i.role === 'nix-store')!;
      const writable = images.find((i) => i.role === 'writable-store')!;
      const [storeLine, writableLine] = await lines();
      expect(storeLine).toEqual({
        role: 'Store image',
        // The closure's hash cut short; the rest of the name says which system it holds.
        file: `${path.basename(store.path).slice(0, 8)}…${path.basename(store.path).slice(32)}`,
        path: store.path,
        size: expect.stringMatching(/^[\d.]+ KiB(, all allocated| \([\d.]+ KiB allocated\))$/),
      });
      expect(storeLine!.file).toMatch(/-nixos-system-builder-vm.*\.img$/);
      // The sparse writable store: what it occupies of the 20 GiB the VM asks for.
      expect(writableLine).toEqual({
        role: 'Writable store',
        file: 'store-writable.img',
        path: writable.path,
        size: expect.stringMatching(/^[\d.]+ KiB of 20 GiB allocated$/),
      });
      // It reads at the dropdown's width: the sizes are whole and inside the row (only a long
      // file name gives way, to an ellipsis).
      const spill = await disks.evaluate((box) => {
        const right = box.getBoundingClientRect().right;
        return Array.from(box.querySelectorAll<HTMLElement>('.disk-role, .disk-size'))
          .filter((el) => el.scrollWidth > el.clientWidth || el.getBoundingClientRect().right > right + 0.5)
          .map((el) => el.textContent);
      });
      expect(spill, 'disk labels cut or outside the row').toEqual([]);
      await app.page.screenshot({ path: path.join(os.tmpdir(), 'nixvm-dropdown-disks.png') });
      await openMenu(app, 'builder-vm');
      const reset = row(app, 'builder-vm').locator('[data-action="resetDisk"]');
      expect(await reset.isDisabled()).toBe(true);
      expect(await reset.getAttribute('title')).toBe('Stop "builder-vm" first');
      await t.agent.call('stop', { vm: 'builder-vm' });
      await expect.poll(() => reset.isDisabled()).toBe(false);

      const img = path.join(t.vm('builder-vm').stateDir, 'store-writable.img');
      const questions: string[] = [];
      app.page.once('dialog', (d) => {
        questions.push(d.message());
        void d.dismiss();
      });
      await openMenu(app, 'builder-vm');
      await reset.click();
      await expect.poll(() => questions.length).toBe(1);
      expect(questions[0]).toBe(
        'Delete the writable store image of "builder-vm"? Everything it keeps in its writable Nix store is lost; its next start makes a new, empty one.',
      );
      expect(existsSync(img)).toBe(true);
      app.page.once('dialog', (d) => void d.accept());
      await openMenu(app, 'builder-vm');
      await reset.click();
      await expect.poll(() => existsSync(img)).toBe(false);
      await expect.poll(async () => (await lines()).map((l) => l.role)).toEqual(['Store image']);
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
      rmSync(certs, { force: true });
    }
  });

  it('with no flake configured it says so and offers to choose a folder', async () => {
    const t = await createTestAgent({ fixture: 'ui', settings: { flakes: [] } });
    const app = await dropdown(t);
    try {
      // The first-run checklist's flake item (the empty state says the same until the doctor answers).
      const item = app.page.locator('section.checklist li.check[data-check="flake"]');
      await item.waitFor();
      expect(await item.locator('.check-summary').textContent()).toContain('No flake folder yet');
      expect(await app.page.getByText('No flake configured').isVisible()).toBe(false);
      const choose = item.locator('[data-action="chooseFlakeFolder"]');
      expect(await choose.textContent()).toBe('Choose Folder…');

      // A folder without flake.nix is refused with what to do.
      app.host.nextFolder = os.tmpdir();
      await choose.click();
      await app.page.locator('#toast.error').waitFor();
      expect(await app.page.locator('#toast .toast-text').textContent()).toContain('has no flake.nix');

      app.host.nextFolder = t.flake.dir;
      await choose.click();
      await app.page.locator('li.vm').nth(3).waitFor({ timeout: 20_000 });
      expect(await app.page.getByText('No flake configured').count()).toBe(0);
      await item.waitFor({ state: 'hidden' });
      expect((await t.agent.call('getSettings', {})).flakes).toEqual([t.flake.dir]);
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it('counts the configurations that are not VMs under their flake, in the words of `nixvm ls`; with no VM left it says why', async () => {
    mkdirSync(SHOTS, { recursive: true });
    // A Nix user's flake (three VMs beside a laptop and a server), and the seed's two VMs beside it.
    const mixed = await copyFixture('mixed');
    const seed = await copyFixture('seed');
    const t = await createTestAgent({ flake: mixed, settings: { flakes: [mixed.dir, seed.dir] } });
    /** The dropdown as it is now, in light and dark mode, once `ready` shows. */
    const shots = async (name: string, ready: string) => {
      for (const colorScheme of ['light', 'dark'] as const) {
        const look = await dropdown(t, { colorScheme, deviceScaleFactor: 2 });
        try {
          await look.page.locator(ready).waitFor();
          await look.page.screenshot({ path: path.join(SHOTS, `dropdown-${name}-${colorScheme}.png`) });
        } finally {
          await look.close();
        }
      }
    };
    const app = await dropdown(t);
    const head = (dir: string) => app.page.locator(`li.group[data-flake="${dir}"]`);
    const order = () =>
      app.page
        .locator('ul.vms > li')
        .evaluateAll((els) =>
          els.map((e) =>
            e.classList.contains('group')
              ? `# ${e.querySelector('.group-name')!.textContent}`
              : e.getAttribute('data-vm'),
          ),
        );
    try {
      await row(app, 'grub-vm').waitFor();
      const note = head(mixed.dir).locator('.group-hidden');
      expect(await head(mixed.dir).locator('.group-name').textContent()).toBe(path.basename(mixed.dir));
      expect(await note.textContent()).toBe('2 other configurations hidden');
      expect(await note.getAttribute('title')).toBe(
        '"laptop", "server": not VMs, or excluded in the settings. Settings chooses which configurations are VMs.',
      );
      // A flake with nothing hidden says nothing more than its name.
      expect(await head(seed.dir).locator('.group-hidden').isHidden()).toBe(true);
      expect(await head(seed.dir).textContent()).toBe(path.basename(seed.dir));
      // The note sits on the header's line, inside the dropdown, after the name.
      const box = await head(mixed.dir).evaluate((li) => {
        const r = (sel: string) => li.querySelector(sel)!.getBoundingClientRect();
        return { name: r('.group-name'), note: r('.group-hidden'), li: li.getBoundingClientRect() };
      });
      expect(box.note.left, 'the note starts after the name').toBeGreaterThan(box.name.right);
      expect(box.note.right, 'the note ends inside the header').toBeLessThanOrEqual(box.li.right + 0.5);
      expect(Math.abs(box.note.bottom - box.name.bottom), 'on one line').toBeLessThan(3);
      await shots('hidden', `li.group[data-flake="${mixed.dir}"] .group-hidden:not([hidden])`);

      // The settings change, and the count follows live.
      await t.agent.call('setSettings', { includeConfigurations: { [mixed.dir]: ['laptop'] } });
      await note.filter({ hasText: /^1 other configuration hidden$/ }).waitFor({ timeout: 20_000 });
      await row(app, 'laptop').waitFor();

      // None of the flake's configurations a VM: its header stays, last, with the count.
      await t.agent.call('setSettings', {
        includeConfigurations: {},
        excludeConfigurations: { [mixed.dir]: ['dev', 'disk-vm', 'grub-vm'] },
      });
      await note.filter({ hasText: /^5 configurations hidden$/ }).waitFor({ timeout: 20_000 });
      expect((await order()).at(-1)).toBe(`# ${path.basename(mixed.dir)}`);
      expect(await row(app, 'grub-vm').count()).toBe(0);
      expect(await row(app, 'minimal-vm').count()).toBe(1);

      // No VM at all: the empty state says why, and where to change it.
      await t.agent.call('setSettings', { flakes: [mixed.dir] });
      const empty = app.page.locator('.empty:not([hidden])');
      await empty.locator('.empty-text', { hasText: 'defines no VMs' }).waitFor({ timeout: 20_000 });
      expect(await empty.locator('.empty-text').textContent()).toBe(
        `${mixed.dir} defines no VMs: 5 configurations hidden (not VMs, or excluded in the settings). Settings chooses which configurations are VMs.`,
      );
      expect(await app.page.locator('li.group').count()).toBe(0);
      await shots('no-vms', '.empty:not([hidden]) [data-action="openSettings"]');
      await empty.locator('[data-action="openSettings"]').click();
      await expect.poll(() => app.host.settingsOpened).toBe(1);
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
      seed.remove();
    }
  }, 120_000);

  it("a flake that does not evaluate is shown in place with nix's message", async () => {
    const t = await createTestAgent({ fixture: 'syntax' });
    const app = await dropdown(t);
    try {
      const card = app.page.locator('.flake-errors .card.error');
      await card.waitFor({ timeout: 20_000 });
      expect(await card.locator('.card-title').textContent()).toBe(`${path.basename(t.flake.dir)} failed to evaluate`);
      const text = (await card.textContent()) ?? '';
      expect(text).toMatch(/syntax error/);
      expect(await card.locator('[data-action="reevaluate"]').isVisible()).toBe(true);
      expect(await app.page.locator('li.vm').count()).toBe(0);
    } finally {
      await app.close();
      await t.dispose();
    }
  });
});
