import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VmSpec } from '../../src/api/types.ts';
import { rotateLogs } from '../../src/core/nix/build.ts';
import { vmDirName } from '../../src/host/names.ts';
import { changedVms, resolveShareSource, respeccedVms, toVmSpec, VM_DEFAULTS } from '../../src/core/nix/inventory.ts';
import { nixString } from '../../src/core/nix/inventory-expr.ts';
import { flakeInstallable, toplevelInstallable } from '../../src/core/nix/nix.ts';
import { isIgnoredPath } from '../../src/core/nix/watcher.ts';

const FLAKE = '/Users/me/vms';
const DRV = '/nix/store/xxpl0fgqvw558n23r93nrdaj4srqkaz4-nixos-system-web.drv';

describe('resolveShareSource', () => {
  it('reads "$PWD/…" the way the seed writes it, relative to the flake directory', () => {
    for (const raw of ['"$PWD/persistent"', '$PWD/persistent', '"${PWD}/persistent"', '"$PWD"/persistent']) {
      expect(resolveShareSource(raw, FLAKE)).toEqual({ ok: true, path: '/Users/me/vms/persistent' });
    }
    expect(resolveShareSource('"$PWD"', FLAKE)).toEqual({ ok: true, path: FLAKE });
    expect(resolveShareSource('$PWD/a/../b/', FLAKE)).toEqual({ ok: true, path: '/Users/me/vms/b' });
  });

  it('takes absolute paths as they are, quoted or not', () => {
    expect(resolveShareSource('/Volumes/data', FLAKE)).toEqual({ ok: true, path: '/Volumes/data' });
    expect(resolveShareSource('"/Volumes/My Data"', FLAKE)).toEqual({ ok: true, path: '/Volumes/My Data' });
    expect(resolveShareSource("'/Volumes/My Data'", FLAKE)).toEqual({ ok: true, path: '/Volumes/My Data' });
  });

  it("reads the seed runner's words: the run's $TMPDIR, $KEYS, and the shared folder with its default", () => {
    expect(resolveShareSource('"$TMPDIR"/xchg', FLAKE)).toEqual({ ok: true, word: { word: 'TMPDIR', rel: 'xchg' } });
    expect(resolveShareSource('"$TMPDIR"/certs', FLAKE)).toEqual({ ok: true, word: { word: 'TMPDIR', rel: 'certs' } });
    expect(resolveShareSource('"$KEYS"', FLAKE)).toEqual({ ok: true, word: { word: 'KEYS', rel: '' } });
    expect(resolveShareSource('"${SHARED_DIR:-$TMPDIR/xchg}"', FLAKE)).toEqual({
      ok: true,
      word: { word: 'SHARED_DIR', fallback: { word: 'TMPDIR', rel: 'xchg' } },
    });
    // qemu-vm.nix's own spelling, unquoted.
    expect(resolveShareSource('${SHARED_DIR:-$TMPDIR/xchg}', FLAKE)).toEqual({
      ok: true,
      word: { word: 'SHARED_DIR', fallback: { word: 'TMPDIR', rel: 'xchg' } },
    });
    expect(resolveShareSource('"${SHARED_DIR:-/tmp}"', FLAKE)).toEqual({
      ok: true,
      word: { word: 'SHARED_DIR', fallback: { path: '/tmp' } },
    });
    expect(resolveShareSource('"${SHARED_DIR:-$PWD/share}"', FLAKE)).toEqual({
      ok: true,
      word: { word: 'SHARED_DIR', fallback: { path: '/Users/me/vms/share' } },
    });
  });

  it('refuses, with the reason, anything else a shell would have to resolve, and relative paths', () => {
    const cases: [string, RegExp][] = [
      ['$HOME/data', /uses the word \$HOME, which nixvm does not know \(it knows \$PWD, \$TMPDIR, \$KEYS/],
      ['data', /not an absolute path/],
      ['./data', /not an absolute path/],
      ['$PWDX/data', /the word \$PWDX/],
      ['"$PWD/$USER"', /not \$USER further on/],
      ['`pwd`/x', /runs a command/],
      ['$(pwd)/x', /runs a command/],
      ["'$PWD/persistent'", /single quotes keep a shell from expanding/],
      ['"$TMPDIR"/../escape', /only a plain path below \$TMPDIR/],
      ['"$SHARED_DIR"', /without a default/],
      ['"${SHARED_DIR:-~/x}"', /its default "~\/x" cannot be used/],
      ['"${TMPDIR:-/tmp}"', /a default .* only for SHARED_DIR/],
      ['/data/*', /treat its "\*" specially/],
      ['"/unclosed', /quote is not closed/],
      ['', /it is empty/],
    ];
    for (const [raw, why] of cases) {
      const r = resolveShareSource(raw, FLAKE);
      expect(r.ok, raw).toBe(false);
      expect(!r.ok && r.reason, raw).toMatch(why);
    }
  });
});

describe('toVmSpec', () => {
  it("reads the seed's store options: the store image, the persistent writable store, host certs", () => {
    const r = toVmSpec(
      'builder',
      {
        drvPath: DRV,
        useNixStoreImage: true,
        hostErofsUtils: true,
        mountHostNixStore: false,
        writableStore: true,
        writableStoreUseTmpfs: false,
        useHostCerts: true,
        diskSize: 20480,
        repartDevice: '/dev/nvme1n1',
        fileSystems: { '/nix/.ro-store': { device: '/dev/disk/by-label/nix-store', fsType: 'erofs' } },
      },
      FLAKE,
    );
    if (!('spec' in r)) throw new Error(r.error);
    expect(r.spec).toMatchObject({
      storeImage: true,
      mountHostNixStore: false,
      writableStore: { sizeMiB: 20480, device: '/dev/nvme1n1' },
      hostCerts: true,
      diskSizeMiB: 20480,
      guestMounts: [{ target: '/nix/.ro-store', device: '/dev/disk/by-label/nix-store', fsType: 'erofs' }],
    });
    // mountHostNixStore's own default is !useNixStoreImage; a tmpfs overlay is no image.
    const d = toVmSpec('b', { drvPath: DRV, useNixStoreImage: true, writableStore: true }, FLAKE);
    expect('spec' in d && d.spec).toMatchObject({ mountHostNixStore: false, writableStore: null });
    // diskSize "auto" (or unset): the seed runner's own 20G.
    const auto = toVmSpec(
      'b',
      { drvPath: DRV, writableStore: true, writableStoreUseTmpfs: false, diskSize: 'auto' },
      FLAKE,
    );
    expect('spec' in auto && auto.spec.writableStore).toEqual({ sizeMiB: 20480, device: null });
  });

  it('refuses a store image without erofs-utils in the host package set, saying what to do', () => {
    const r = toVmSpec('web', { drvPath: DRV, useNixStoreImage: true, hostErofsUtils: false }, FLAKE);
    expect('error' in r && r.error).toMatch(
      /^VM "web" sets virtualisation.useNixStoreImage, but its virtualisation.host.pkgs has no erofs-utils .*; fix it in the flake at/,
    );
  });

  it('applies the documented defaults to a configuration that sets nothing', () => {
    const r = toVmSpec('web', { drvPath: DRV }, FLAKE);
    expect(r).toEqual({
      warnings: [],
      spec: {
        name: 'web',
        flake: FLAKE,
        drvPath: DRV,
        system: null,
        kernelParams: [],
        cpus: 2,
        memoryMiB: 2048,
        macAddress: null,
        rosetta: true,
        shares: [],
        graphics: false,
        resolution: null,
        mountHostNixStore: true,
        ssh: { enabled: false, port: 22, user: 'root', authorizedKeysFiles: [], hostKey: null, keyCredential: false },
        rosettaTag: 'rosetta',
        storeImage: false,
        writableStore: null,
        hostCerts: false,
        diskSizeMiB: null,
        guestMounts: [],
        nix: { enabled: null, trustedUsers: [], systemFeatures: null, extraPlatforms: [] },
      },
    });
    expect(VM_DEFAULTS).toMatchObject({ cpus: 2, memoryMiB: 2048, rosetta: true, mountHostNixStore: true });
  });

  it('picks the first normal user by name, the first ssh port, and a default resolution with graphics', () => {
    const r = toVmSpec(
      'web',
      {
        drvPath: DRV,
        graphics: true,
        ssh: { enable: true, port: 2222, users: ['zoe', 'alice'] },
        macAddress: 'F6:25:E2:48:58:1E',
      },
      FLAKE,
    );
    if (!('spec' in r)) throw new Error(r.error);
    expect(r.spec.ssh).toEqual({
      enabled: true,
      port: 2222,
      user: 'alice',
      authorizedKeysFiles: [],
      hostKey: null,
      keyCredential: false,
    });
    expect(r.spec.resolution).toEqual({ width: 1024, height: 768 });
    expect(r.spec.macAddress).toBe('f6:25:e2:48:58:1e');
  });

  it('names the VM and the share when a share source cannot be used', () => {
    const r = toVmSpec('web', { drvPath: DRV, shares: { data: { source: '$HOME/data', target: '/data' } } }, FLAKE);
    expect(r).toHaveProperty('error');
    expect((r as { error: string }).error).toMatch(
      /^VM "web" has shared directory 'data' with source "\$HOME\/data", which nixvm cannot use: it uses the word \$HOME, which nixvm does not know/,
    );
  });

  it('keeps word shares for the agent to resolve per VM, beside the plain ones', () => {
    const r = toVmSpec(
      'web',
      {
        drvPath: DRV,
        shares: {
          xchg: { source: '"$TMPDIR"/xchg', target: '/tmp/xchg' },
          persistent: { source: '"$PWD/persistent"', target: '/persistent' },
        },
      },
      FLAKE,
    );
    if (!('spec' in r)) throw new Error(r.error);
    expect(r.spec.shares).toEqual([
      { tag: 'xchg', source: '', target: '/tmp/xchg', word: { word: 'TMPDIR', rel: 'xchg' } },
      { tag: 'persistent', source: '/Users/me/vms/persistent', target: '/persistent' },
    ]);
    expect(r.warnings).toEqual([]);
  });

  it('refuses values vfkit could not take', () => {
    expect(toVmSpec('web', { drvPath: DRV, cores: 0 }, FLAKE)).toHaveProperty('error');
    expect(toVmSpec('web', { drvPath: DRV, memorySize: '4G' }, FLAKE)).toHaveProperty('error');
    expect(toVmSpec('web', { drvPath: DRV, macAddress: 'not-a-mac' }, FLAKE)).toHaveProperty('error');
    expect(toVmSpec('web', { drvPath: null }, FLAKE)).toHaveProperty('error');
  });
});

describe('changedVms / respeccedVms', () => {
  const spec = (name: string, drvPath: string, cpus = 2): VmSpec => {
    const r = toVmSpec(name, { drvPath, cores: cpus }, FLAKE);
    if (!('spec' in r)) throw new Error(r.error);
    return r.spec;
  };
  it('lists VMs whose drvPath changed, and new VMs', () => {
    const prev = [spec('a', '/nix/store/a1.drv'), spec('b', '/nix/store/b1.drv')];
    const next = [spec('a', '/nix/store/a1.drv'), spec('b', '/nix/store/b2.drv'), spec('c', '/nix/store/c1.drv')];
    expect(changedVms(prev, next)).toEqual(['b', 'c']);
    expect(changedVms(next, next)).toEqual([]);
  });
  it('lists VMs whose run settings changed while the closure did not', () => {
    const prev = [spec('a', '/nix/store/a1.drv', 2), spec('b', '/nix/store/b1.drv', 2)];
    const next = [spec('a', '/nix/store/a1.drv', 4), spec('b', '/nix/store/b2.drv', 4)];
    expect(respeccedVms(prev, next)).toEqual(['a']);
  });
});

describe('nix argument builders', () => {
  it('quotes names in Nix strings so nothing is interpolated', () => {
    expect(nixString('plain')).toBe('"plain"');
    expect(nixString('a"b\\c${x}\n')).toBe('"a\\"b\\\\c\\${x}\\n"');
  });
  it('builds installables that survive nix URL parsing for odd VM names', () => {
    expect(toplevelInstallable('/f', 'web')).toBe('/f#nixosConfigurations.web.config.system.build.toplevel');
    expect(flakeInstallable('/f', ['nixosConfigurations', 'my.vm'])).toBe('/f#nixosConfigurations."my.vm"');
    expect(flakeInstallable('/f', ['nixosConfigurations', 'a b#c'])).toBe('/f#nixosConfigurations."a%20b%23c"');
  });
});

describe('watcher ignore rules', () => {
  it('skips VCS data, build links, dependencies and share dirs by path alone', () => {
    const ign = (rel: string, extra?: Set<string>) => isIgnoredPath(FLAKE, path.join(FLAKE, rel), extra);
    for (const rel of [
      '.git',
      '.git/index',
      'result',
      'result-dev',
      'node_modules/x/y.nix',
      '.direnv/flake-profile',
      'disk.img',
      '.flake.nix.swp',
      'flake.nix~',
    ]) {
      expect(ign(rel), rel).toBe(true);
    }
    for (const rel of ['flake.nix', 'hosts/web.nix', 'results.nix', 'modules/git.nix']) {
      expect(ign(rel), rel).toBe(false);
    }
    expect(isIgnoredPath(FLAKE, FLAKE)).toBe(false);
    expect(ign('persistent/file', new Set([path.join(FLAKE, 'persistent')]))).toBe(true);
    expect(ign('persistent2/file', new Set([path.join(FLAKE, 'persistent')]))).toBe(false);
  });
});

describe('build logs', () => {
  it('rotates build.log and keeps only as many as asked', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nixvm-rotate-'));
    try {
      for (let i = 1; i <= 5; i++) {
        rotateLogs(dir, 3);
        writeFileSync(path.join(dir, 'build.log'), `run ${i}`);
      }
      expect(readdirSync(dir).sort()).toEqual(['build.1.log', 'build.2.log', 'build.log']);
      expect(readFileSync(path.join(dir, 'build.log'), 'utf8')).toBe('run 5');
      expect(readFileSync(path.join(dir, 'build.2.log'), 'utf8')).toBe('run 3');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('turns VM names into safe directory names', () => {
    expect(vmDirName('web')).toBe('web');
    expect(vmDirName('../etc')).not.toMatch(/^\.|\//);
    expect(vmDirName('a/b')).not.toContain('/');
    // Two VMs never share a build log directory.
    expect(vmDirName('a/b')).not.toBe(vmDirName('a_b'));
    expect(vmDirName('a b')).not.toBe(vmDirName('a_b'));
  });
});
