/**
 * "Set Up a Linux Builder…" in the first-run checklist, in Chromium over the real Agent: nothing
 * here builds the seed's minimal-vm, so the builder item is open with that action; it shows the
 * download (from a real file:// binary cache holding the stand-in for nixpkgs'
 * darwin.linux-builder-vz) in the dialog before anything changes, and with a yes the
 * linux-builder row appears and becomes this Mac's builder.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import {
  caBundle,
  linuxBuilderStandIn,
  loopbackIp,
  nixConfigWithCache,
  publishToCache,
  seedWithForeignVm,
  sshdReady,
  storeHas,
} from '../helpers/builder-fixture.ts';
import type { FlakeCopy } from '../helpers/fixtures.ts';
import { startHarness, type Harness } from './harness.ts';

let h: Harness;
let t: TestAgent;
let nixpkgs: FlakeCopy;
let cache: string;
let toplevel: string;
const docs = path.join(import.meta.dirname, '..', '..', 'docs');
const oldNixConfig = process.env.NIX_CONFIG;

beforeAll(async () => {
  sshdReady();
  h = await startHarness();
  nixpkgs = await linuxBuilderStandIn(`${process.pid}-${Date.now()}-ui`);
  cache = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-ui-setup-cache-')));
  toplevel = publishToCache(nixpkgs, cache);
  process.env.NIX_CONFIG = nixConfigWithCache(cache);
  const flake = await seedWithForeignVm();
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-ui-setup-')));
  t = await createTestAgent({
    flake,
    root,
    env: { NIX_SSL_CERT_FILE: caBundle(root), HOME: root },
    vmEnv: { NIXVM_SIM_IP: loopbackIp() },
    settings: { builderNixpkgs: nixpkgs.dir },
  });
}, 240_000);
afterAll(async () => {
  if (oldNixConfig === undefined) delete process.env.NIX_CONFIG;
  else process.env.NIX_CONFIG = oldNixConfig;
  await t?.dispose();
  await h?.close();
  nixpkgs?.remove();
  if (cache) fs.rmSync(cache, { recursive: true, force: true });
});

describe('setting up the first builder from the checklist', () => {
  it('shows the download before it starts; with a yes the builder row appears and is the builder', async () => {
    const app = await h.open(t.agent, 'index', { deviceScaleFactor: 2 });
    const setup = app.page.locator('.checklist [data-action="setUpLinuxBuilder"]');
    await setup.waitFor({ timeout: 30_000 });
    expect(await setup.textContent()).toContain('Set Up a Linux Builder…');

    // No: nothing is downloaded, nothing changes.
    app.host.nextConfirm = false;
    await setup.click();
    await expect.poll(() => app.host.confirms.length, { timeout: 60_000 }).toBe(1);
    const asked = app.host.confirms[0]!;
    expect(asked.message).toBe("Set up nixpkgs' prebuilt Linux builder?");
    expect(asked.detail).toMatch(
      /^Setting up the Linux builder downloads \d+ store paths? of nixpkgs' darwin.linux-builder-vz/,
    );
    expect(asked.detail).toContain(`from file://${cache}`);
    expect(asked.button).toBe('Download and Start');
    await expect
      .poll(() => app.page.locator('#toast').textContent(), { timeout: 10_000 })
      .toContain('Nothing was changed');
    expect(storeHas(toplevel)).toBe(false);
    expect(t.agent.snapshot().settings.builderVm).toBeNull();

    app.host.nextConfirm = true;
    await setup.click();
    await t.waitFor((s) => s.agent.builders?.status === 'ready', 180_000, 'the set-up builder to be ready');
    const row = app.page.locator('li.vm[data-vm="linux-builder"]');
    await row.waitFor({ timeout: 10_000 });
    await expect
      .poll(() => row.locator('.vm-note').textContent(), { timeout: 10_000 })
      .toContain("This Mac's Linux builder");
    expect(storeHas(toplevel)).toBe(true);
    // The checklist's builder item follows (the doctor is asked again when the builders change).
    await expect
      .poll(
        async () =>
          (await app.page.locator('.checklist').count()) === 0 ||
          !((await app.page.locator('.checklist').textContent()) ?? '').includes('nothing here builds'),
        { timeout: 30_000 },
      )
      .toBe(true);
    await app.page.setViewportSize({
      width: 380,
      height: Math.max(300, Math.min(680, app.host.heights.at(-1) ?? 540)),
    });
    await row.scrollIntoViewIfNeeded();
    await app.page.screenshot({ path: path.join(docs, 'dropdown-builder-setup.png') });
    await app.close();
  });
});
