/**
 * The builder VM in the dropdown, in Chromium over the real Agent (the simulated builder-vm on a
 * loopback address, a real `sshd -i`, real nix): a VM nothing here builds says so on its row
 * before anyone clicks Start; "Use as Linux Builder…" in builder-vm's "…" menu makes it the
 * builder (a trusted user: no dialog), the rows say so, and "Stop Using as Linux Builder" undoes it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { caBundle, FOREIGN, loopbackIp, seedWithForeignVm, sshdReady } from '../helpers/builder-fixture.ts';
import { startHarness, type Harness } from './harness.ts';

let h: Harness;
let t: TestAgent;
const docs = path.join(import.meta.dirname, '..', '..', 'docs');

beforeAll(async () => {
  sshdReady();
  h = await startHarness();
  const flake = await seedWithForeignVm();
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-ui-builder-')));
  t = await createTestAgent({
    flake,
    root,
    env: { NIX_SSL_CERT_FILE: caBundle(root) },
    vmEnv: { NIXVM_SIM_IP: loopbackIp() },
  });
}, 180_000);
afterAll(async () => {
  await t?.dispose();
  await h?.close();
});

describe('the builder VM in the dropdown', () => {
  it('a row says nothing builds it; Use as Linux Builder… makes builder-vm the builder; Stop Using undoes it', async () => {
    const app = await h.open(t.agent, 'index', { deviceScaleFactor: 2 });
    const row = (vm: string) => app.page.locator(`li.vm[data-vm="${vm}"]`);
    await row('minimal-vm').waitFor();
    // Known before a start, on the row itself.
    await expect
      .poll(() => row('minimal-vm').locator('.vm-note').innerText(), { timeout: 10_000 })
      .toContain(`nothing here builds ${FOREIGN}`);

    // Two VMs: their actions show without expanding a row.
    await row('builder-vm').locator('[data-action="more"]').click();
    const use = row('builder-vm').locator('[data-action="useAsBuilder"]');
    expect(await use.innerText()).toBe('Use as Linux Builder…');
    expect(await use.isEnabled()).toBe(true);
    // minimal-vm runs no nix store of its own: it is not offered as a builder.
    expect(await row('minimal-vm').locator('[data-action="useAsBuilder"]').count()).toBe(0);
    await use.click();

    await t.waitFor((s) => s.agent.builders?.status === 'ready', 120_000, 'the builder VM to be ready');
    await expect
      .poll(() => row('builder-vm').locator('.vm-note').innerText(), { timeout: 10_000 })
      .toContain("This Mac's Linux builder");
    await expect.poll(() => row('minimal-vm').locator('.vm-note').isVisible(), { timeout: 10_000 }).toBe(false);
    // The first-run checklist's builder item follows (it asks the doctor again when builders change).
    await expect
      .poll(
        async () =>
          (await app.page.locator('.checklist').count()) === 0 ||
          !(await app.page.locator('.checklist').innerText()).includes('nothing here builds'),
        {
          timeout: 30_000,
        },
      )
      .toBe(true);
    // A trusted user: nothing to consent to, no dialog.
    expect(app.host.confirms).toEqual([]);
    await app.page.setViewportSize({
      width: 380,
      height: Math.max(300, Math.min(680, app.host.heights.at(-1) ?? 540)),
    });
    await app.page.screenshot({ path: path.join(docs, 'dropdown-builder.png') });

    await row('builder-vm').locator('[data-action="more"]').click();
    const stop = row('builder-vm').locator('[data-action="stopUsingAsBuilder"]');
    expect(await stop.innerText()).toBe('Stop Using as Linux Builder');
    await stop.click();
    await t.waitFor((s) => s.agent.builders?.status === 'off', 30_000, 'the builder to be off');
    expect(t.agent.snapshot().settings.builderVm).toBeNull();
    await expect
      .poll(() => row('minimal-vm').locator('.vm-note').innerText(), { timeout: 10_000 })
      .toContain(`nothing here builds ${FOREIGN}`);
    await app.close();
  });
});
