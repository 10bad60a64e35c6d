/** The settings window in Chromium over the real Agent: every change reaches the agent live. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError } from '../../src/api/errors.ts';
import { createTestAgent } from '../helpers/agent.ts';
import { copyFixture } from '../helpers/fixtures.ts';
import { GatedPort } from './gated-port.ts';
import { RecordingAppHost, startHarness, type AppPage, type Harness } from './harness.ts';
import fs, { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Where the screenshots of new views go, to be looked at. */
const SHOTS = process.env.NIXVM_SHOTS_DIR ?? path.join(os.tmpdir(), 'nixvm-shots');

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('settings window', () => {
  it('edits settings live: rebuild mode, terminal, timeout, per-VM autostart and ssh user, flakes, login item', async () => {
    const t = await createTestAgent({ fixture: 'ui' });
    const second = await copyFixture('seed');
    const app = await h.open(t.agent, 'settings');
    const settings = () => t.agent.call('getSettings', {});
    try {
      const page = app.page;
      await page.locator('#vms tr[data-vm="dev"]').waitFor();
      // The ssh user placeholder is the one the config implies.
      expect(await page.getByLabel('ssh user for dev').getAttribute('placeholder')).toBe('alice');

      await page.locator('#autoRebuild').selectOption('apply');
      await expect.poll(async () => (await settings()).autoRebuild).toBe('apply');

      await page.locator('#terminal').selectOption('other');
      await page.locator('#terminal-other').fill('Ghostty');
      await page.locator('#terminal-other').press('Enter');
      await page.locator('#stopTimeout').fill('12');
      await page.locator('#stopTimeout').press('Tab');
      await expect
        .poll(async () => [(await settings()).terminalApp, (await settings()).stopTimeoutSec])
        .toEqual(['Ghostty', 12]);

      // Per VM: autostart, and an ssh user that the ssh command then uses.
      await page.locator('#vms tr[data-vm="dev"] input[type="checkbox"]').check();
      const user = page.getByLabel('ssh user for dev');
      await user.fill('root');
      await user.press('Enter');
      await expect
        .poll(async () => [(await settings()).autostart.dev, (await settings()).sshUser.dev])
        .toEqual([true, 'root']);

      // A bad value is refused with the reason, and the form shows the saved value again.
      await user.fill('no spaces allowed');
      await user.press('Enter');
      await page.locator('#status.error').waitFor();
      expect(await page.locator('#status').textContent()).toContain('must be a user name');
      expect((await settings()).sshUser.dev).toBe('root');
      expect(await user.inputValue()).toBe('root');

      // The shared folder ${SHARED_DIR:-…} shares use; a relative one is refused with the reason.
      const shared = page.getByLabel('shared folder for dev');
      await shared.fill('/Users/me/share');
      await shared.press('Enter');
      await expect.poll(async () => (await settings()).sharedDir.dev).toBe('/Users/me/share');
      await shared.fill('relative/dir');
      await shared.press('Enter');
      await page.locator('#status.error').waitFor();
      expect(await page.locator('#status').textContent()).toContain('must be an absolute path');
      expect((await settings()).sharedDir.dev).toBe('/Users/me/share');

      // Flakes: add one through the folder chooser, remove the other.
      app.host.nextFolder = second.dir;
      await page.locator('#add-flake').click();
      await page.locator(`#flakes li[data-dir="${second.dir}"]`).waitFor();
      await page.locator(`#flakes li[data-dir="${t.flake.dir}"] button`).click();
      await expect.poll(async () => (await settings()).flakes).toEqual([second.dir]);
      // The seed flake's VMs replace the UI fixture's in the per-VM table.
      await page.locator('#vms tr[data-vm="minimal-vm"]').waitFor({ timeout: 20_000 });

      // The ssh config Include line, as the agent reports it, one click from the clipboard.
      const { sshConfig } = (await t.agent.call('snapshot', {})).agent;
      expect(await page.locator('#ssh-include').textContent()).toBe(sshConfig.includeLine);
      await page.locator('#copy-include').click();
      await expect.poll(() => app.host.clipboard).toEqual([sshConfig.includeLine]);

      await page.locator('#launchAtLogin').check();
      await expect.poll(() => app.host.launchAtLogin).toBe(true);
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
      second.remove();
    }
  });

  it('keeps what the user chose while snapshots stream in until the agent answers; a refused edit reverts and says why', async () => {
    const t = await createTestAgent({ fixture: 'ui' });
    // The agent's own snapshots at a build's 10 Hz, and edits held back as a busy agent would.
    const port = new GatedPort(t.agent);
    const app = await h.open(port, 'settings');
    const settings = () => t.agent.call('getSettings', {});
    try {
      const page = app.page;
      const box = page.locator('#vms tr[data-vm="dev"] input[type="checkbox"]');
      await box.waitFor();
      const afterSnapshots = await snapshotCounter(app);
      port.pump(100);

      // A checkbox: checked it stays, while the edit waits and after the agent took it.
      port.hold('setSettings');
      await box.click();
      await port.held('setSettings');
      await afterSnapshots(3);
      expect(await box.isChecked(), 'the autostart box flipped back before the agent answered').toBe(true);
      expect((await settings()).autostart.dev).toBeUndefined();
      port.release('setSettings');
      await expect.poll(async () => (await settings()).autostart.dev).toBe(true);
      await afterSnapshots(3);
      expect(await box.isChecked()).toBe(true);

      // A menu, the same.
      port.hold('setSettings');
      await page.locator('#autoRebuild').selectOption('apply');
      await port.held('setSettings');
      await afterSnapshots(3);
      expect(await page.locator('#autoRebuild').inputValue()).toBe('apply');
      port.release('setSettings');
      await expect.poll(async () => (await settings()).autoRebuild).toBe('apply');

      // An edit the agent refuses: shown until the agent says no, then the saved value and why.
      port.hold('setSettings');
      await box.click();
      await port.held('setSettings');
      await afterSnapshots(3);
      expect(await box.isChecked()).toBe(false);
      port.refuse('setSettings', new AgentError('failed', 'Could not save the settings: the disk is full.'));
      await page.locator('#status.error', { hasText: 'Could not save the settings: the disk is full.' }).waitFor();
      expect(await box.isChecked(), 'the refused edit was not undone').toBe(true);
      await afterSnapshots(3);
      expect(await box.isChecked()).toBe(true);
      expect(await page.locator('#status').textContent()).toBe('Could not save the settings: the disk is full.');

      // A value refused on its way in: the saved value comes back, with the reason, and stays.
      await page.locator('#stopTimeout').fill('0');
      await page.locator('#stopTimeout').press('Tab');
      await page.locator('#status.error', { hasText: 'stopTimeoutSec must be at least 1' }).waitFor();
      expect(await page.locator('#stopTimeout').inputValue()).toBe('30');
      await afterSnapshots(3);
      expect(await page.locator('#stopTimeout').inputValue()).toBe('30');
      expect((await settings()).stopTimeoutSec).toBe(30);
      expect((await settings()).autostart.dev).toBe(true);
      expect(app.problems).toEqual([]);
    } finally {
      port.stop();
      await app.close();
      await t.dispose();
    }
  });

  it('shows per flake folder which configurations are hidden and edits the include and exclude lists live, by the schema', async () => {
    mkdirSync(SHOTS, { recursive: true });
    // A flake like a Nix user's own: three VMs beside a laptop and a server.
    const t = await createTestAgent({ fixture: 'mixed' });
    const dir = t.flake.dir;
    const port = new GatedPort(t.agent);
    const app = await h.open(port, 'settings');
    const settings = () => t.agent.call('getSettings', {});
    const page = app.page;
    const item = page.locator(`#flakes li[data-dir="${dir}"]`);
    const include = item.getByLabel(`Configurations shown as VMs in ${dir}`);
    const exclude = item.getByLabel(`Configurations never shown as VMs in ${dir}`);
    const hidden = item.locator('.flake-hidden');
    const vmRows = () =>
      page.locator('#vms tr[data-vm]').evaluateAll((els) => els.map((e) => e.getAttribute('data-vm')));
    try {
      await page.locator('#vms tr[data-vm="dev"]').waitFor();
      // What is hidden, in the words `nixvm ls` uses.
      expect(await hidden.textContent()).toBe(
        '2 other configurations hidden: "laptop", "server" (not VMs, or excluded in the settings).',
      );
      expect([await include.inputValue(), await exclude.inputValue()]).toEqual(['', '']);
      await page.screenshot({ path: path.join(SHOTS, 'settings-configurations-light.png'), fullPage: true });

      // Show the laptop: saved, applied by the agent (it evaluates the flake again), and listed.
      await include.fill('laptop');
      await include.press('Enter');
      await expect.poll(async () => (await settings()).includeConfigurations).toEqual({ [dir]: ['laptop'] });
      await page.locator('#vms tr[data-vm="laptop"]').waitFor({ timeout: 20_000 });
      await hidden.filter({ hasText: '1 other configuration hidden: "server"' }).waitFor();

      // Hide dev: gone from the VMs, counted as hidden.
      await exclude.fill('dev');
      await exclude.press('Tab');
      await expect.poll(async () => (await settings()).excludeConfigurations).toEqual({ [dir]: ['dev'] });
      await expect.poll(vmRows, { timeout: 20_000 }).toEqual(['disk-vm', 'grub-vm', 'laptop']);
      await hidden.filter({ hasText: '2 other configurations hidden: "dev", "server"' }).waitFor();

      // A name on one list leaves the other: dev shown again, its "never" entry gone.
      await include.fill('laptop, dev');
      await include.press('Enter');
      await expect
        .poll(async () => {
          const s = await settings();
          return [s.includeConfigurations, s.excludeConfigurations];
        })
        .toEqual([{ [dir]: ['laptop', 'dev'] }, {}]);
      await expect.poll(() => exclude.inputValue()).toBe('');
      await page.locator('#vms tr[data-vm="dev"]').waitFor({ timeout: 20_000 });

      // The schema refuses a name given twice: the reason shown, the saved list back in the field.
      await include.fill('laptop, dev, laptop');
      await include.press('Enter');
      await page.locator('#status.error', { hasText: 'lists "laptop" twice' }).waitFor();
      expect(await include.inputValue()).toBe('laptop, dev');
      expect((await settings()).includeConfigurations).toEqual({ [dir]: ['laptop', 'dev'] });

      // While the agent has not answered, the edit stays in the field through every snapshot.
      const afterSnapshots = await snapshotCounter(app);
      port.pump(100);
      port.hold('setSettings');
      await exclude.fill('server');
      await exclude.press('Tab');
      await port.held('setSettings');
      await afterSnapshots(3);
      expect(await exclude.inputValue(), 'the exclude field went back before the agent answered').toBe('server');
      expect((await settings()).excludeConfigurations).toEqual({});
      port.release('setSettings');
      await expect.poll(async () => (await settings()).excludeConfigurations).toEqual({ [dir]: ['server'] });
      await afterSnapshots(3);
      expect(await exclude.inputValue()).toBe('server');
      // Clearing a field puts the flake back to nixvm's own choice.
      await include.fill('');
      await include.press('Enter');
      await expect.poll(async () => (await settings()).includeConfigurations).toEqual({});
      await hidden
        .filter({ hasText: '2 other configurations hidden: "laptop", "server"' })
        .waitFor({ timeout: 20_000 });
      expect(app.problems).toEqual([]);
    } finally {
      port.stop();
      await app.close();
    }
    // The same window in dark mode, for the eye.
    const dark = await h.open(t.agent, 'settings', { colorScheme: 'dark' });
    try {
      await dark.page.locator(`#flakes li[data-dir="${dir}"] .flake-hidden:not([hidden])`).waitFor();
      await dark.page.screenshot({ path: path.join(SHOTS, 'settings-configurations-dark.png'), fullPage: true });
    } finally {
      await dark.close();
      await t.dispose();
    }
  }, 120_000);

  it('installs the command-line tool after consent, asks for an administrator only where needed, and says once that the build is unsigned', async () => {
    const t = await createTestAgent({ fixture: 'ui' });
    const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-clitool-')));
    // The app's launcher (a real file), and a ~/.local/bin that is on the user's PATH.
    const launcher = path.join(tmp, 'NixVM.app', 'Contents', 'Resources', 'cli', 'nixvm');
    fs.mkdirSync(path.dirname(launcher), { recursive: true });
    fs.writeFileSync(launcher, '#!/bin/sh\necho nixvm 0.1.0\n', { mode: 0o755 });
    const home = path.join(tmp, 'home');
    const localBin = path.join(home, '.local', 'bin');
    const noWrite = path.join(tmp, 'usr-local-bin');
    fs.mkdirSync(noWrite);
    const appHost = new RecordingAppHost({
      launcher,
      home,
      candidates: [noWrite, localBin],
      pathDirs: [noWrite, localBin, '/usr/bin'],
      writable: (d) => d !== noWrite && fs.existsSync(d),
    });
    let app: AppPage | null = null;
    try {
      app = await h.open(t.agent, 'settings', { appHost });
      const page = app.page;
      await page.locator('#cli-status', { hasText: `Not installed. It goes to ${localBin}/nixvm.` }).waitFor();
      // Unsigned on macOS: said once, in its own note.
      expect(await page.locator('#unsigned-note').isVisible()).toBe(true);
      expect(await page.getByText('not signed').count()).toBe(1);

      // Declined: nothing runs, nothing is linked.
      appHost.answer = false;
      await page.locator('#install-cli').click();
      await expect.poll(() => appHost.consents.length).toBe(1);
      expect(appHost.ran).toEqual([]);
      expect(fs.existsSync(path.join(localBin, 'nixvm'))).toBe(false);

      // Accepted: ~/.local/bin is made and the link put there, no password asked.
      appHost.answer = true;
      await page.locator('#install-cli').click();
      await page.locator('#cli-status', { hasText: `nixvm is installed: ${localBin}/nixvm` }).waitFor();
      expect(appHost.consents[1]).toMatchObject({ message: 'Install the nixvm command-line tool?', button: 'Install' });
      expect(appHost.ran).toEqual([
        ['/bin/mkdir', '-p', localBin],
        ['/bin/ln', '-sfn', launcher, path.join(localBin, 'nixvm')],
      ]);
      expect(fs.readlinkSync(path.join(localBin, 'nixvm'))).toBe(launcher);
      expect(await page.locator('#install-cli').isHidden()).toBe(true);
      await app.close();

      // Nowhere writable on PATH: /usr/local/bin through macOS's administrator prompt (recorded,
      // never run here); the user cancels it, and the window says it is still not installed.
      fs.rmSync(path.join(localBin, 'nixvm'));
      const admin = new RecordingAppHost({ launcher, home, candidates: [localBin], pathDirs: ['/usr/bin'] });
      app = await h.open(t.agent, 'settings', { appHost: admin });
      await app.page
        .locator('#cli-status', {
          hasText: 'Not installed. It goes to /usr/local/bin/nixvm (asks for an administrator password).',
        })
        .waitFor();
      await app.page.locator('#install-cli').click();
      await expect.poll(() => admin.ran.length).toBe(1);
      expect(admin.ran[0]!.slice(0, 2)).toEqual(['/usr/bin/osascript', '-e']);
      expect(admin.ran[0]!.slice(-3)).toEqual(['/usr/local/bin', launcher, '/usr/local/bin/nixvm']);
      expect(admin.consents[0]!.detail).toContain("macOS will ask for an administrator's password");
      expect(await app.page.locator('#install-cli').isVisible()).toBe(true);
      expect(await app.page.locator('#status').textContent()).not.toContain('Installed');
      expect(app.problems).toEqual([]);
    } finally {
      await app?.close();
      await t.dispose();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('settings window, hostile input (issue 16)', () => {
  it('treats VMs named after Object.prototype members as plain names: nothing shown set, edits saved as theirs', async () => {
    const t = await createTestAgent({ fixture: 'hostile-names' });
    const app = await h.open(t.agent, 'settings');
    const settings = () => t.agent.call('getSettings', {});
    const rowOf = (vm: string) => app.page.locator(`#vms tr[data-vm="${vm}"]`);
    try {
      await rowOf('plain').waitFor();
      for (const vm of ['__proto__', 'constructor', 'hasOwnProperty', 'toString']) {
        expect(await rowOf(vm).locator('input[type="checkbox"]').isChecked(), `${vm} shown as autostart`).toBe(false);
        expect(await rowOf(vm).locator('input[aria-label^="ssh user for"]').inputValue(), `${vm}'s ssh user`).toBe('');
      }
      // (The harness carries messages through playwright's serializer, which drops a key named
      // __proto__ on its own; the agent and the dispatcher are tested with it in hostile-names.test.ts.)
      await rowOf('constructor').locator('input[type="checkbox"]').check();
      const user = rowOf('toString').locator('input[aria-label^="ssh user for"]');
      await user.fill('zoe');
      await user.press('Enter');
      // The shared folder is saved the same way (withEntry: a prototype-free copy).
      const shared = rowOf('hasOwnProperty').locator('input[aria-label^="shared folder for"]');
      await shared.fill('/tmp/hop-share');
      await shared.press('Enter');
      await expect
        .poll(async () => {
          const s = await settings();
          return [
            Object.hasOwn(s.autostart, 'constructor') && s.autostart.constructor,
            Object.hasOwn(s.sshUser, 'toString') && s.sshUser.toString,
            Object.hasOwn(s.sharedDir, 'hasOwnProperty') && s.sharedDir.hasOwnProperty,
          ];
        })
        .toEqual([true, 'zoe', '/tmp/hop-share']);
      expect(Object.keys((await settings()).autostart)).toEqual(['constructor']);
      expect(await rowOf('constructor').locator('input[type="checkbox"]').isChecked()).toBe(true);
      expect(await rowOf('hasOwnProperty').locator('input[type="checkbox"]').isChecked()).toBe(false);
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
    }
  });

  it('refuses the ssh users the agent refuses (a leading -, . or @), with the reason, keeping the saved one', async () => {
    const t = await createTestAgent({ fixture: 'ui' });
    const app = await h.open(t.agent, 'settings');
    try {
      const user = app.page.locator('#vms tr[data-vm="dev"] input[aria-label^="ssh user for"]');
      await user.waitFor();
      for (const bad of ['-oProxyCommand=id', '.hidden', '@host', '-l']) {
        await user.fill(bad);
        await user.press('Enter');
        await app.page.locator('#status.error', { hasText: 'must be a user name' }).waitFor();
        expect(await user.inputValue(), bad).toBe('');
        expect(Object.hasOwn((await t.agent.call('getSettings', {})).sshUser, 'dev')).toBe(false);
      }
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
    }
  });
});

/**
 * Counts the snapshots the page has handled (this listener runs after the window's own); the
 * function returned waits until `n` more have been.
 */
async function snapshotCounter(app: AppPage): Promise<(n: number) => Promise<void>> {
  type Counted = { __snapshots: number; nixvm: { onEvent(fn: (ev: { type: string }) => void): void } };
  await app.page.evaluate(() => {
    const w = window as unknown as Counted;
    w.__snapshots = 0;
    w.nixvm.onEvent((ev) => {
      if (ev.type === 'snapshot') w.__snapshots++;
    });
  });
  return async (n) => {
    const seen = await app.page.evaluate(() => (window as unknown as Counted).__snapshots);
    await app.page.waitForFunction((want) => (window as unknown as Counted).__snapshots >= want, seen + n);
  };
}
