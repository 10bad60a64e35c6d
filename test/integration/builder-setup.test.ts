/**
 * The first Linux builder, with no builder at all: `builderSetup` takes nixpkgs'
 * darwin.linux-builder-vz (here the seed-exact fixture's stand-in, whose guest is nixpkgs' vz-vm
 * layout) from a binary cache, runs its system on the simulator with nixvm's own devices, and
 * makes it the builder; then a VM nothing here builds builds through it. The builder's system is
 * built for aarch64-linux, which this machine cannot build, so it can only have come from the
 * cache (a real `file://` binary cache that `nix copy` filled; the paths are deleted here after).
 * The state folder has a space, as "Application Support" does: nixvm's flake goes to ~/.config.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentSnapshot } from '../../src/api/types.ts';
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
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';

let nixpkgs: FlakeCopy;
let uncached: FlakeCopy;
let flake: FlakeCopy;
let root: string;
let home: string;
let cache: string;
let toplevel: string;
let ip: string;
let t: TestAgent;
const oldNixConfig = process.env.NIX_CONFIG;
const builders = (s: AgentSnapshot) => s.agent.builders!;
const setupFlake = () => path.join(home, '.config', 'nixvm', 'linux-builder');

beforeAll(async () => {
  sshdReady();
  const run = `${process.pid}-${Date.now()}`;
  nixpkgs = await linuxBuilderStandIn(run);
  uncached = await linuxBuilderStandIn(`${run}-not-cached`);
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm setup ')));
  home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-setup-home-')));
  // A substituter's URL cannot hold a space (nix.conf lists them space-separated).
  cache = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-setup-cache-')));
  toplevel = publishToCache(nixpkgs, cache);
  // The cache is this machine's only substituter (unsigned, as `nix copy` wrote it).
  process.env.NIX_CONFIG = nixConfigWithCache(cache);
  flake = await seedWithForeignVm();
  ip = loopbackIp();
  t = await createTestAgent({
    flake,
    root,
    env: { NIX_SSL_CERT_FILE: caBundle(root), HOME: home },
    vmEnv: { NIXVM_SIM_IP: ip },
  });
}, 240_000);

afterAll(async () => {
  if (oldNixConfig === undefined) delete process.env.NIX_CONFIG;
  else process.env.NIX_CONFIG = oldNixConfig;
  if (process.env.NIXVM_KEEP_TEST_ROOT) return;
  await t?.dispose();
  for (const f of [nixpkgs, uncached]) f?.remove();
  for (const d of [home, cache]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

describe('setting up the first builder', () => {
  it('refuses bad input in one sentence, and a builder the cache does not have', async () => {
    await expect(t.agent.call('builderSetup', { nixpkgs: 'x";builtins.abort"' })).rejects.toThrow(
      /^Cannot set up a Linux builder: nixpkgs reference .* has a character a flake reference cannot hold\.$/,
    );
    await expect(t.agent.call('builderSetup', { nixpkgs: uncached.dir })).rejects.toThrow(
      new RegExp(
        `^Cannot set up a Linux builder: the system of nixpkgs' darwin.linux-builder-vz from ${uncached.dir} is not in file://${cache}, and building it needs a Linux builder; take it from a nixpkgs revision Hydra has built`,
      ),
    );
    const plain = await copyFixture('seed');
    try {
      await expect(t.agent.call('builderSetup', { nixpkgs: plain.dir })).rejects.toThrow(
        /has no darwin.linux-builder-vz \(it is in nixpkgs-unstable and NixOS 26.11 on\)/,
      );
    } finally {
      plain.remove();
    }
    expect(t.agent.snapshot().settings.flakes).toEqual([flake.dir]);
  });

  it('says what it downloads before anything is fetched, and changes nothing else', async () => {
    const r = await t.agent.call('builderSetup', { nixpkgs: nixpkgs.dir });
    expect(r.done).toBe(false);
    expect(r.setup).toMatchObject({
      flake: setupFlake(),
      vm: 'linux-builder',
      toplevel,
      substituter: `file://${cache}`,
    });
    // At least the toplevel, whose size the cache's narinfo says.
    expect(r.setup.paths).toBeGreaterThanOrEqual(1);
    expect(r.setup.downloadBytes).toBeGreaterThan(0);
    expect(r.setup.unpackedBytes).toBeGreaterThan(0);
    expect(r.sentence).toMatch(
      new RegExp(
        `^Setting up the Linux builder downloads ${r.setup.paths} store paths? of nixpkgs' darwin.linux-builder-vz \\(path:${nixpkgs.dir}\\) from file://${cache} \\(\\d[\\d.]* (B|KiB) download, \\d[\\d.]* (B|KiB) unpacked\\)\\.$`,
      ),
    );
    // nixvm's flake is written and locked; nothing is downloaded, the settings are as they were.
    expect(fs.readFileSync(path.join(setupFlake(), 'flake.nix'), 'utf8')).toContain(
      `inputs.nixpkgs.url = "path:${nixpkgs.dir}";`,
    );
    expect(fs.existsSync(path.join(setupFlake(), 'flake.lock'))).toBe(true);
    expect(storeHas(toplevel)).toBe(false);
    const s = t.agent.snapshot();
    expect(s.settings.flakes).toEqual([flake.dir]);
    expect(s.settings.builderVm).toBeNull();
    // Root is trusted here: nixvm's own builds will pass the builder; no system file changes.
    expect(r.plan).toMatchObject({ mode: 'agent', system: null });
  });

  it('with consent: fetches it from the cache, boots it with nixvm’s devices, and makes it the builder', async () => {
    const r = await t.agent.call('builderSetup', { nixpkgs: nixpkgs.dir, consent: true });
    expect(r.done).toBe(true);
    expect(t.agent.snapshot().settings.flakes).toEqual([flake.dir, setupFlake()]);
    const s = await t.waitFor(
      (x) => builders(x).status === 'ready' || builders(x).status === 'failed',
      180_000,
      'the set-up builder to be ready',
    );
    const consoleLog = () => {
      const f = path.join(root, 'logs', 'vms', 'linux-builder', 'console.log');
      return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').slice(-4000) : '(no console log)';
    };
    expect(builders(s).status, `${builders(s).note}\n${consoleLog()}`).toBe('ready');
    expect(builders(s).vm).toBe('linux-builder');
    // Only the cache could have given it: nothing here builds aarch64-linux.
    expect(storeHas(toplevel)).toBe(true);
    const vm = s.vms.find((v) => v.name === 'linux-builder')!;
    expect(vm.state).toBe('running');
    // vz-vm's layout: the store image first on virtio-blk, the writable store second (/dev/vdb),
    // console=hvc0 and the image's regInfo= as vz-vm's runner passes them.
    const { argv } = await t.agent.call('inspect', { vm: 'linux-builder' });
    const disks = argv.filter((a) => /^(virtio-blk|nvme),/.test(a));
    expect(
      disks.map((d) => d.split(',')[0]),
      argv.join(' '),
    ).toEqual(['virtio-blk', 'virtio-blk']);
    expect(disks[0]).toMatch(/images\/.*\.img,readonly$/);
    const boot = argv.find((a) => a.startsWith('linux,'))!;
    expect(boot).toContain('console=hvc0');
    expect(boot).toMatch(/regInfo=\/nix\/store\/[a-z0-9]{32}-closure-info\/registration/);
    // nixvm's key in $KEYS, where the profile's copy-builder-keys takes it from for root.
    const keys = path.join(root, 'state', 'vms', 'linux-builder', 'keys');
    expect(fs.readdirSync(keys)).toContain('root_ed25519.pub');
    expect(consoleLog()).toMatch(/register-nix-paths: registered \d+ store paths/);

    // And now the VM nothing here builds builds there.
    const built = await t.agent.call('build', { vm: 'minimal-vm' });
    expect(built.build.status, built.build.error ?? '').toBe('succeeded');
    expect(built.build.progress?.remote ?? '').toContain(`root@${ip}`);
  });

  it('is not set up twice', async () => {
    await expect(t.agent.call('builderSetup', {})).rejects.toThrow(
      /^"linux-builder" is this machine's builder already; run `nixvm builder off` first to set up another\.$/,
    );
  });
});
