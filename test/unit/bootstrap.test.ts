import { describe, expect, it } from 'vitest';
import {
  bootstrapFlakeDir,
  bootstrapFlakeText,
  downloadOf,
  nixpkgsInput,
  parsePathInfo,
  planSentence,
} from '../../src/core/builders/bootstrap.ts';
import { stagedKeysOf } from '../../src/core/nix/inventory.ts';
import { authorizedKeyFiles } from '../../src/core/vm/ssh-keys.ts';
import { planDisks, diskDeviceNames } from '../../src/core/vm/vfkit-args.ts';
import type { VmSpec } from '../../src/api/types.ts';

describe('the first builder: nixvm flake and plan', () => {
  it('keeps its flake out of a path with white space, which Nix 2.8 cannot read as a flake', () => {
    expect(bootstrapFlakeDir('/Users/me/Library/Application Support/nixvm', '/Users/me')).toBe(
      '/Users/me/.config/nixvm/linux-builder',
    );
    expect(bootstrapFlakeDir('/var/lib/nixvm', '/home/me')).toBe('/var/lib/nixvm/linux-builder');
  });

  it('takes a flake reference or an absolute path for nixpkgs, and refuses what could break out of the Nix string', () => {
    expect(nixpkgsInput('github:NixOS/nixpkgs/nixpkgs-unstable')).toEqual({
      url: 'github:NixOS/nixpkgs/nixpkgs-unstable',
    });
    expect(nixpkgsInput('/src/nixpkgs')).toEqual({ url: 'path:/src/nixpkgs' });
    expect(nixpkgsInput('nixpkgs')).toEqual({ url: 'nixpkgs' });
    for (const bad of [
      '',
      'x" ; builtins.abort "',
      '${builtins.currentTime}',
      'a b',
      'foo\\bar',
      'not a ref',
      '../rel',
    ]) {
      expect(nixpkgsInput(bad), bad).toHaveProperty('error');
    }
  });

  it('writes one configuration: the host package set’s darwin.linux-builder-vz.nixosConfig', () => {
    const t = bootstrapFlakeText('github:NixOS/nixpkgs/nixpkgs-unstable', 'aarch64-darwin');
    expect(t).toContain('inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";');
    expect(t).toContain('nixosConfigurations.linux-builder.config =');
    expect(t).toContain('nixpkgs.legacyPackages.aarch64-darwin.darwin.linux-builder-vz.nixosConfig;');
    expect(() => bootstrapFlakeText('x', 'aarch64-darwin"; evil')).toThrow();
  });

  it('reads path-info from Nix 2.8 (an array, valid:false) and 2.19+ (an object, null) alike', () => {
    const v28 = parsePathInfo(
      JSON.stringify([
        { path: '/nix/store/a-x', narSize: 100, downloadSize: 40 },
        { path: '/nix/store/b-y', valid: false },
      ]),
    );
    expect([...v28.keys()]).toEqual(['/nix/store/a-x']);
    const v226 = parsePathInfo(
      JSON.stringify({ '/nix/store/a-x': { narSize: 100, downloadSize: 40 }, '/nix/store/b-y': null }),
    );
    expect(v226.get('/nix/store/a-x')).toEqual({ narSize: 100, downloadSize: 40 });
    expect(v226.has('/nix/store/b-y')).toBe(false);
    expect(parsePathInfo('not json').size).toBe(0);
  });

  it('counts only what is not here, and says the sizes in one sentence', () => {
    const closure = new Map([
      ['/nix/store/a', { narSize: 3 * 1024 * 1024, downloadSize: 1024 * 1024 }],
      ['/nix/store/b', { narSize: 1024, downloadSize: 512 }],
    ]);
    const d = downloadOf(closure, new Set(['/nix/store/a']));
    expect(d).toEqual({ paths: 1, downloadBytes: 1024 * 1024, unpackedBytes: 3 * 1024 * 1024 });
    const s = planSentence({ ...d, substituter: 'https://cache.nixos.org', nixpkgs: 'github:NixOS/nixpkgs/abc' });
    expect(s).toBe(
      "Setting up the Linux builder downloads 1 store path of nixpkgs' darwin.linux-builder-vz (github:NixOS/nixpkgs/abc) from https://cache.nixos.org (1 MiB download, 3 MiB unpacked).",
    );
    expect(planSentence({ paths: 0, downloadBytes: 0, unpackedBytes: 0, substituter: 'x', nixpkgs: 'n' })).toContain(
      'nothing is downloaded',
    );
    // A cache that does not say the compressed size: only the unpacked one.
    const unknown = downloadOf(
      new Map([['/nix/store/c', { narSize: 2048, downloadSize: null }]]),
      new Set(['/nix/store/c']),
    );
    expect(unknown.downloadBytes).toBeNull();
    expect(planSentence({ ...unknown, substituter: 'x', nixpkgs: 'n' })).toContain('(2 KiB unpacked)');
  });
});

describe('nixpkgs’ vz-vm guest under vfkit', () => {
  const script = `install -d -m 0755 -o root -g root /run/builder-keys
for key in /var/keys/*.pub; do
  [ -e "$key" ] || continue
  install -m 0444 -o root -g root "$key" /run/builder-keys/
done
`;

  it('reads where nix-builder-vz-vm stages the keys from its copy-builder-keys script', () => {
    expect(stagedKeysOf(script)).toEqual({ from: '/var/keys', to: '/run/builder-keys' });
    expect(stagedKeysOf('echo nothing to see')).toBeNull();
  });

  const spec = {
    name: 'linux-builder',
    shares: [{ tag: 'keys', source: '', target: '/var/keys', word: { word: 'KEYS', rel: '' } }],
    ssh: {
      enabled: true,
      port: 22,
      user: 'builder',
      authorizedKeysFiles: ['/run/builder-keys/%u_ed25519.pub'],
      stagedKeys: { from: '/var/keys', to: '/run/builder-keys' },
    },
    storeImage: true,
    writableStore: { sizeMiB: 20480, device: '/dev/vdb' },
  } as unknown as VmSpec;

  it('writes the key into the share the staging copies from, for root and the builder user', () => {
    expect(authorizedKeyFiles(spec, ['root', 'builder'])).toEqual(['builder_ed25519.pub', 'root_ed25519.pub']);
    // Without the staging service, /run/builder-keys is nothing nixvm can write.
    expect(authorizedKeyFiles({ ...spec, ssh: { ...spec.ssh, stagedKeys: null } }, ['root'])).toEqual([]);
  });

  it('attaches the store image first on virtio-blk, so the writable store is the /dev/vdb the guest mounts', () => {
    const disks = planDisks(spec, { storeImage: '/s/store.img', writable: '/s/rw.img' });
    expect(disks.map((d) => [d.role, d.bus])).toEqual([
      ['nix-store', 'virtio-blk'],
      ['writable-store', 'virtio-blk'],
    ]);
    expect(diskDeviceNames(disks)).toEqual(['/dev/vda', '/dev/vdb']);
    // The seed's repart device /dev/nvme1n1 keeps both on nvme.
    const seed = planDisks(
      { ...spec, writableStore: { sizeMiB: 1024, device: '/dev/nvme1n1' } },
      { storeImage: '/s/store.img', writable: '/s/rw.img' },
    );
    expect(diskDeviceNames(seed)).toEqual(['/dev/nvme0n1', '/dev/nvme1n1']);
  });
});
