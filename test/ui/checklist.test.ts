/**
 * The first-run checklist in the dropdown, in Chromium over the real Agent: built from the
 * agent's `doctor` report (real nix, the vfkit simulator) plus the flake folder. A fresh install
 * with no flake shows it; "Use the Example" copies the bundled example flake into the user's
 * folder and adds it; once everything passes it goes away, and a check that breaks later (vfkit's
 * path set to nothing) brings back a badge that opens it, with the commands to copy.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent } from '../helpers/agent.ts';
import { RecordingHost, startHarness, type Harness } from './harness.ts';

// The example's VMs are aarch64-linux: this machine builds them here as a Mac with a Linux builder
// would, so the doctor's builder check passes and the checklist can be done.
process.env.NIX_CONFIG = `${process.env.NIX_CONFIG ?? ''}\nextra-platforms = aarch64-linux\n`;

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('the first-run checklist', () => {
  it('walks a fresh install to a running flake, then turns into a badge when vfkit goes missing', async () => {
    const t = await createTestAgent({ fixture: 'ui', settings: { flakes: [] } });
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-home-'));
    const host = new RecordingHost();
    host.exampleDest = path.join(home, 'NixVM', 'example');
    const app = await h.open(t.agent, 'index', { host });
    const checklist = app.page.locator('section.checklist');
    try {
      await checklist.waitFor();
      expect(await checklist.locator('.checklist-title').textContent()).toBe('Get Started');
      // The flake folder is what is left to do; vfkit (the simulator) and nix pass.
      const flake = checklist.locator('li.check[data-check="flake"]');
      expect(await flake.getAttribute('class')).toContain('open');
      expect(await checklist.locator('li.check[data-check="vfkit"]').getAttribute('class')).toContain('done');
      expect(await checklist.locator('li.check.open').count()).toBe(1);
      // It says what the empty state would, so that one is not shown as well.
      expect(await app.page.locator('.empty').isVisible()).toBe(false);
      await app.page.screenshot({ path: '/tmp/nixvm-checklist-first-run.png' });

      await flake.locator('[data-action="useExampleFlake"]').click();
      // The example is the user's own copy now, and the agent runs it.
      await expect.poll(() => fs.existsSync(path.join(host.exampleDest!, 'flake.nix'))).toBe(true);
      await t.waitFor((s) => s.flakes.some((f) => f.dir === host.exampleDest));
      await app.page.locator('li.vm[data-vm="minimal-vm"]').waitFor();
      await checklist.waitFor({ state: 'hidden' });
      expect(await app.page.locator('[data-action="showChecklist"]').isVisible()).toBe(false);

      // Later vfkit goes missing: no checklist in the way, a badge that says one thing needs doing.
      await t.agent.call('setSettings', { vfkitPath: path.join(home, 'no-such-vfkit') });
      const badge = app.page.locator('[data-action="showChecklist"]');
      await badge.waitFor();
      expect(await badge.textContent()).toBe('1');
      expect(await badge.getAttribute('aria-label')).toBe('1 thing to set up: click to see');
      expect(await checklist.isVisible()).toBe(false);
      await badge.click();
      const vfkit = checklist.locator('li.check[data-check="vfkit"]');
      await vfkit.waitFor();
      expect(await vfkit.getAttribute('class')).toContain('open');
      expect(await vfkit.locator('.check-summary').textContent()).toContain('no-such-vfkit');
      await vfkit.locator('[data-action="copySetupCommand:brew-vfkit"]').click();
      await expect.poll(() => host.clipboard).toEqual(['brew install vfkit']);
      await vfkit.locator('[data-action="openSettings"]').click();
      await expect.poll(() => host.settingsOpened).toBe(1);
      await app.page.screenshot({ path: '/tmp/nixvm-checklist-badge.png' });
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
      await t.dispose();
      fs.rmSync(home, { recursive: true, force: true });
    }
  }, 120_000);
});
