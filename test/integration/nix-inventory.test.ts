/** The inventory against real nix, on copies of the fixture flakes. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FlakeError, inventory } from '../../src/core/nix/inventory.ts';
import { Nix } from '../../src/core/nix/nix.ts';
import { onRun, type RunRecord } from '../../src/host/runner.ts';
import { copyFixture, emptyDir, REPO_DIR, type FlakeCopy } from '../helpers/fixtures.ts';

const nix = Nix.locate();
const copies: FlakeCopy[] = [];
afterAll(() => {
  for (const c of copies) c.remove();
});

async function fixture(name: string, opts?: Parameters<typeof copyFixture>[1]): Promise<FlakeCopy> {
  const c = await copyFixture(name, opts);
  copies.push(c);
  return c;
}

/** Run fn and return the nix eval calls it made. */
async function evalsDuring<T>(fn: () => Promise<T>): Promise<{ value: T; evals: RunRecord[] }> {
  const runs: RunRecord[] = [];
  const off = onRun((r) => runs.push(r));
  try {
    const value = await fn();
    return { value, evals: runs.filter((r) => r.argv.includes('eval')) };
  } finally {
    off();
  }
}

async function flakeError(p: Promise<unknown>): Promise<FlakeError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FlakeError);
  return err as FlakeError;
}

describe('inventory', () => {
  it('reads every field of the seed-shaped flake with one nix eval', async () => {
    const f = await fixture('seed');
    const { value: inv, evals } = await evalsDuring(() => inventory(nix, f.dir));
    expect(evals).toHaveLength(1);
    expect(evals[0]?.argv).toContain('--no-write-lock-file');
    expect(inv.flake).toBe(f.dir);
    expect(inv.failures).toEqual([]);
    expect(inv.warnings).toEqual([]);
    expect(inv.vms.map((v) => v.name)).toEqual(['builder-vm', 'minimal-vm']);
    const [builder, minimal] = inv.vms;
    expect(minimal).toEqual({
      name: 'minimal-vm',
      flake: f.dir,
      drvPath: expect.stringMatching(/^\/nix\/store\/[0-9a-z]{32}-nixos-system-minimal-vm\.drv$/),
      system: 'x86_64-linux',
      kernelParams: ['console=hvc0'],
      cpus: 4,
      memoryMiB: 4096,
      macAddress: 'f6:25:e2:48:58:1e',
      rosetta: true,
      shares: [{ tag: 'persistent', source: path.join(f.dir, 'persistent'), target: '/persistent' }],
      graphics: false,
      resolution: null,
      mountHostNixStore: true,
      ssh: { enabled: true, port: 22, user: 'alice', authorizedKeysFiles: [], hostKey: null, keyCredential: false },
      rosettaTag: 'rosetta',
      storeImage: false,
      writableStore: null,
      hostCerts: false,
      diskSizeMiB: null,
      guestMounts: [],
      nix: { enabled: null, trustedUsers: [], systemFeatures: null, extraPlatforms: [] },
    });
    expect(builder).toEqual({
      name: 'builder-vm',
      flake: f.dir,
      drvPath: expect.stringMatching(/^\/nix\/store\/[0-9a-z]{32}-nixos-system-builder-vm\.drv$/),
      system: 'x86_64-linux',
      kernelParams: ['console=hvc0', 'quiet'],
      cpus: 8,
      memoryMiB: 8192,
      macAddress: null,
      rosetta: false,
      shares: [
        { tag: 'cache', source: '/var/tmp/nixvm-builder-cache', target: '/cache' },
        { tag: 'persistent', source: path.join(f.dir, 'persistent'), target: '/persistent' },
      ],
      graphics: true,
      resolution: { width: 1280, height: 800 },
      mountHostNixStore: false,
      ssh: {
        enabled: true,
        port: 2222,
        user: 'builder',
        authorizedKeysFiles: [],
        hostKey: null,
        keyCredential: false,
      },
      rosettaTag: 'rosetta',
      storeImage: false,
      writableStore: null,
      hostCerts: false,
      diskSizeMiB: null,
      guestMounts: [],
      nix: { enabled: null, trustedUsers: [], systemFeatures: null, extraPlatforms: [] },
    });
    // The drvPath is the real one: nix instantiated it.
    expect(existsSync(minimal!.drvPath)).toBe(true);
  });

  it("reads the seed's store options, the guest's fileSystems and its repart device in the same one eval", async () => {
    const f = await fixture('seed-exact');
    const { value: inv, evals } = await evalsDuring(() => inventory(nix, f.dir));
    expect(evals).toHaveLength(1);
    expect(inv.failures).toEqual([]);
    const builder = inv.vms.find((v) => v.name === 'builder-vm')!;
    expect(builder).toMatchObject({
      system: 'aarch64-linux',
      // The fixture's stand-in closure is built for this machine (a real one: its hostPlatform).
      buildSystem: 'x86_64-linux',
      cpus: 8,
      memoryMiB: 3072,
      storeImage: true,
      mountHostNixStore: false,
      hostCerts: true,
      diskSizeMiB: 20480,
      writableStore: { sizeMiB: 20480, device: '/dev/nvme1n1' },
    });
    expect(builder.guestMounts).toContainEqual({ target: '/var/keys', device: 'keys', fsType: 'virtiofs' });
    // The guest's nix as nix-builder-vm sets it (what makes it a builder).
    expect(builder.nix).toEqual({
      enabled: null,
      trustedUsers: ['builder'],
      systemFeatures: ['nixos-test', 'benchmark', 'big-parallel', 'kvm'],
      extraPlatforms: [],
    });
    expect(builder.guestMounts).toContainEqual({
      target: '/nix/.ro-store',
      device: '/dev/disk/by-label/nix-store',
      fsType: 'erofs',
    });
    const minimal = inv.vms.find((v) => v.name === 'minimal-vm')!;
    expect(minimal).toMatchObject({
      storeImage: false,
      mountHostNixStore: true,
      writableStore: null,
      diskSizeMiB: 1024,
    });
    expect(minimal.guestMounts).toContainEqual({ target: '/nix/.ro-store', device: 'nix-store', fsType: 'virtiofs' });
  });

  it('reads 25 VMs with exactly one nix eval, defaults included', async () => {
    const f = await fixture('many');
    const { value: inv, evals } = await evalsDuring(() => inventory(nix, f.dir));
    expect(evals).toHaveLength(1);
    expect(inv.vms).toHaveLength(25);
    expect(new Set(inv.vms.map((v) => v.drvPath)).size).toBe(25);
    const vm03 = inv.vms.find((v) => v.name === 'vm03')!;
    expect(vm03).toMatchObject({
      cpus: 2,
      memoryMiB: 2048,
      rosetta: true,
      mountHostNixStore: true,
      macAddress: null,
      shares: [],
      ssh: { enabled: false, port: 22, user: 'root' },
    });
    expect(inv.vms.find((v) => v.name === 'vm07')).toMatchObject({
      cpus: 4,
      memoryMiB: 2048,
      macAddress: 'f6:25:e2:48:58:07',
      ssh: { enabled: true, user: 'user7' },
    });
  });

  it("loads the good VMs of a flake with broken ones, each broken one with nix's message", async () => {
    const f = await fixture('broken');
    const { value: inv, evals } = await evalsDuring(() => inventory(nix, f.dir));
    expect(inv.vms.map((v) => v.name)).toEqual(['also-good', 'good']);
    expect(inv.failures.map((x) => x.name)).toEqual(['bad-share', 'throws']);
    const throws = inv.failures.find((x) => x.name === 'throws')!;
    expect(throws.error).toBe(
      'VM "throws" failed to evaluate: services.web.listen must be set for the throws VM; fix it and save.',
    );
    expect(throws.detail).toContain('services.web.listen must be set for the throws VM');
    const badShare = inv.failures.find((x) => x.name === 'bad-share')!;
    expect(badShare.error).toMatch(/^VM "bad-share" has shared directory 'data' with source "\$HOME\/data"/);
    // One batched eval; the VM caught by tryEval is evaluated alone once, for nix's message.
    expect(evals).toHaveLength(2);
  });

  it('finds the broken VMs one by one when the batched eval cannot catch the error', async () => {
    const f = await fixture('broken');
    f.write(
      'extra.nix',
      '{ mkVm }: { aborts = mkVm "aborts" ./hosts/aborts.nix; typo = mkVm "typo" ./hosts/typo.nix; }\n',
    );
    f.write('hosts/aborts.nix', '{ virtualisation.cores = 1; services.web.listen = abort "the aborts VM gave up"; }\n');
    f.write('hosts/typo.nix', '{\n  virtualisation.cores = 2\n}\n');
    const inv = await inventory(nix, f.dir);
    expect(inv.vms.map((v) => v.name)).toEqual(['also-good', 'good']);
    expect(inv.failures.map((x) => x.name)).toEqual(['aborts', 'bad-share', 'throws', 'typo']);
    expect(inv.failures.find((x) => x.name === 'aborts')?.error).toContain("'the aborts VM gave up'");
    expect(inv.failures.find((x) => x.name === 'typo')?.error).toBe(
      "VM \"typo\" has a syntax error in hosts/typo.nix at line 3, column 1 (unexpected '}', expecting ';'); fix it and save.",
    );
  });

  it('says in one sentence what is wrong with a whole flake', async () => {
    const syntax = await fixture('syntax');
    const e1 = await flakeError(inventory(nix, syntax.dir));
    expect(e1.kind).toBe('syntax');
    expect(e1.message).toBe(
      `The flake at ${syntax.dir} has a syntax error in flake.nix at line 11, column 7 (unexpected '}', expecting ';'); fix it and save.`,
    );
    expect(e1.detail).toContain(`${syntax.dir}/flake.nix:11:7`);

    const noConfigs = await fixture('no-configs');
    const e2 = await flakeError(inventory(nix, noConfigs.dir));
    expect(e2.kind).toBe('no-configurations');
    expect(e2.message).toBe(
      `The flake at ${noConfigs.dir} has no nixosConfigurations output; define your VMs as nixosConfigurations.<name> in its flake.nix.`,
    );

    const empty = emptyDir();
    copies.push(empty);
    const e3 = await flakeError(inventory(nix, empty.dir));
    expect(e3.kind).toBe('not-a-flake');
    expect(e3.message).toBe(
      `${empty.dir} is not a flake (it has no flake.nix); point nixvm at the directory that holds your flake.nix.`,
    );

    const e4 = await flakeError(inventory(nix, path.join(empty.dir, 'nope')));
    expect(e4.kind).toBe('no-such-dir');
    expect(e4.message).toContain('does not exist');
  });

  it('explains a file nix cannot see because git does not track it', async () => {
    const f = await fixture('seed', { git: true });
    // A new host, imported by flake.nix but never `git add`ed.
    f.write('hosts/extra-vm.nix', '{ networking.hostName = "extra-vm"; }\n');
    const flake = (await import('node:fs')).readFileSync(f.file('flake.nix'), 'utf8');
    f.write(
      'flake.nix',
      flake.replace(
        'builder-vm = mkVm ./hosts/builder-vm.nix;',
        'builder-vm = mkVm ./hosts/builder-vm.nix;\n        extra-vm = mkVm ./hosts/extra-vm.nix;',
      ),
    );
    const inv = await inventory(nix, f.dir);
    expect(inv.vms.map((v) => v.name)).toEqual(['builder-vm', 'minimal-vm']);
    expect(inv.failures).toHaveLength(1);
    expect(inv.failures[0]?.error).toBe(
      `hosts/extra-vm.nix is not tracked by git, so nix cannot see it; run \`git add -N hosts/extra-vm.nix\` in ${f.dir}.`,
    );
  });

  it("never writes flake.lock into the user's flake, and says the lock is out of date", async () => {
    const dep = await fixture('seed');
    const f = await fixture('seed');
    const flake = (await import('node:fs')).readFileSync(f.file('flake.nix'), 'utf8');
    f.write(
      'flake.nix',
      flake
        .replace('outputs =', `inputs.dep.url = "path:${dep.dir}";\n  outputs =`)
        .replace('{ self }:', '{ self, dep }:'),
    );
    const inv = await inventory(nix, f.dir);
    expect(inv.vms).toHaveLength(2);
    expect(existsSync(f.file('flake.lock'))).toBe(false);
    expect(inv.warnings).toEqual([expect.stringMatching(/has a missing or outdated flake\.lock; .*nix flake lock/)]);
  });

  it('lists only the configurations that are VMs, hides the others unevaluated, keeps a broken one listed', async () => {
    const f = await fixture('mixed');
    const inv = await inventory(nix, f.dir);
    expect(inv.vms.map((v) => v.name)).toEqual(['dev', 'disk-vm', 'grub-vm']);
    // The server's toplevel throws: it was never evaluated, so it is hidden, not failed.
    expect(inv.hidden).toEqual(['laptop', 'server']);
    expect(inv.failures).toEqual([]);
    expect(inv.vms.find((v) => v.name === 'grub-vm')?.boot).toEqual({
      loader: 'grub',
      root: { device: 'tmpfs', fsType: 'tmpfs', label: null },
    });
    expect(inv.vms.find((v) => v.name === 'disk-vm')?.boot?.root?.device).toBe('/dev/disk/by-label/nixos');

    // A configuration whose modules throw before nixvm can tell what it is may be a VM: listed, with its error.
    f.write('broken-host', '');
    const broken = await inventory(nix, f.dir);
    expect(broken.failures.map((x) => [x.name, x.error])).toEqual([
      ['broken-host', 'VM "broken-host" failed to evaluate: broken-host\'s modules do not evaluate; fix it and save.'],
    ]);
  });

  it('includes and excludes configurations as the per-flake settings say', async () => {
    const f = await fixture('mixed');
    const inv = await inventory(nix, f.dir, { filter: { include: ['laptop'], exclude: ['dev'] } });
    expect(inv.vms.map((v) => v.name)).toEqual(['disk-vm', 'grub-vm', 'laptop']);
    expect(inv.hidden).toEqual(['dev', 'server']);
    expect(inv.vms.find((v) => v.name === 'laptop')?.boot?.loader).toBe('systemd-boot');
  });

  it('reads the example flake the README runs', async () => {
    const f = await fixture(path.join(REPO_DIR, 'examples', 'flake'));
    const inv = await inventory(nix, f.dir);
    expect(inv.failures).toEqual([]);
    expect(inv.vms.map((v) => v.name)).toEqual(['builder-vm', 'minimal-vm']);
    expect(inv.vms.every((v) => v.drvPath.endsWith('.drv'))).toBe(true);
    // The seed's shapes: one MAC for both, the scratch shares, builder-vm's store image and disks.
    const [builder, minimal] = inv.vms;
    expect(new Set(inv.vms.map((v) => v.macAddress))).toEqual(new Set(['f6:25:e2:48:58:1e']));
    expect(minimal!.shares.map((s) => s.tag).sort()).toEqual(['persistent', 'shared', 'xchg']);
    expect(minimal!.ssh).toEqual({
      enabled: true,
      port: 22,
      user: 'alice',
      authorizedKeysFiles: [],
      hostKey: null,
      keyCredential: false,
    });
    expect(builder).toMatchObject({ storeImage: true, hostCerts: true, writableStore: { sizeMiB: 20480 } });
  });
});
