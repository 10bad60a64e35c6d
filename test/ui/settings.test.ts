/** The settings window in Chromium over the real Agent: every change reaches the agent live. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent } from '../helpers/agent.ts';
import { copyFixture } from '../helpers/fixtures.ts';
import { startHarness, type Harness } from './harness.ts';

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
      expect(await page.locator('#vms tr[data-vm="dev"] input[type="text"]').getAttribute('placeholder')).toBe('alice');

      await page.locator('#autoRebuild').selectOption('restart');
      await expect.poll(async () => (await settings()).autoRebuild).toBe('restart');

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
      const user = page.locator('#vms tr[data-vm="dev"] input[type="text"]');
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
});
