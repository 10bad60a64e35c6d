/**
 * The fake guest's readers, against what the real programs do: `nix-store --load-db`'s reading of
 * a registration (Nix's decodeValidPathInfo and registerValidPaths), the copy-builder-keys script
 * of nixpkgs' nix-builder-vz-vm profile, systemd's mount unit names, systemd-makefs on the disks
 * the guest was given, and where a guest path lies through its mounts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  bootStorage,
  locateGuestFile,
  type GuestDisk,
  type GuestStorageConfig,
  type FstabEntry,
} from '../vfkit-sim/guest-fs.ts';
import {
  mountUnitPath,
  parseKeyStaging,
  readRegistration,
  registerNixPaths,
  stageBuilderKeys,
  type Unit,
} from '../vfkit-sim/guest-units.ts';

const P = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}`;
const HASH = 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s';
const A = P('a', 'a');
const B = P('b', 'b');
/** One block as `nix-store --dump-db` writes it. */
const block = (p: string, refs: string[], deriver = '') =>
  `${p}\n${HASH}\n120\n${deriver}\n${refs.length}\n${refs.map((r) => `${r}\n`).join('')}`;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-guest-unit-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('nix-store --load-db, as the guest’s register-nix-paths runs it', () => {
  it('counts the paths of well-formed blocks, a path given twice once', () => {
    expect(readRegistration(block(A, []) + block(B, [A, B], P('d', 'b.drv')))).toEqual({ paths: 2 });
    expect(readRegistration(block(A, []) + block(A, []))).toEqual({ paths: 1 });
    expect(readRegistration('')).toEqual({ paths: 0 });
    // A path line that meets the end of the input ends it; a blank line there is a path, and no hash follows.
    expect(readRegistration(`${block(A, [])}${B}`)).toEqual({ paths: 1 });
    expect(readRegistration(`${block(A, [])}\n`)).toEqual({ error: "invalid SHA-256 hash ''" });
  });

  it('refuses what Nix refuses: a missing final newline, bad numbers, a reference it does not register', () => {
    expect(readRegistration(block(A, []).replace(/\n$/, ''))).toEqual({ error: 'missing input' });
    expect(readRegistration(`${A}\n${HASH}\n12x\n\n0\n`)).toEqual({ error: 'number expected' });
    expect(readRegistration(`${A}\n${HASH}\n12\n\nnone\n`)).toEqual({ error: 'number expected' });
    // Fewer references than it says: the next one read is the end of the input, not a store path.
    expect(readRegistration(`${A}\n${HASH}\n12\n\n2\n${A}\n`)).toEqual({ error: "path '' is not in the Nix store" });
    expect(readRegistration(block(A, [B]))).toEqual({ error: `path '${B}' is not valid` });
    expect(readRegistration(block('/tmp/x', []))).toEqual({ error: "path '/tmp/x' is not in the Nix store" });
    expect(readRegistration(`${A}\nmd5:abc\n12\n\n0\n`)).toMatchObject({ error: expect.stringContaining('hash') });
  });

  it('says what came of regInfo=, the way the console shows it', () => {
    const unit = { description: 'register-nix-paths.service' } as Unit;
    const reg = `${P('c', 'closure-info')}/registration`;
    expect(registerNixPaths(unit, 'console=hvc0', () => ({ text: '' }))).toEqual([
      "register-nix-paths: no regInfo= on the kernel command line; the store's paths are not registered in the guest's Nix database",
      '[  OK  ] Finished register-nix-paths.service.',
    ]);
    expect(registerNixPaths(unit, `console=hvc0 regInfo=${reg} quiet`, () => ({ text: block(A, []) }))).toEqual([
      `register-nix-paths: registered 1 store path from ${reg}`,
      '[  OK  ] Finished register-nix-paths.service.',
    ]);
    expect(registerNixPaths(unit, `regInfo=${reg}`, () => ({ missing: 'not in the image' }))).toEqual([
      `register-nix-paths: regInfo=${reg}: no such file in the guest (not in the image); the store's paths are not registered in the guest's Nix database`,
      '[FAILED] Failed to start register-nix-paths.service.',
    ]);
  });
});

describe('copy-builder-keys', () => {
  const script =
    'install -d -m 0755 -o root -g root /run/builder-keys\nfor key in /var/keys/*.pub; do\n  [ -e "$key" ] || continue\n  install -m 0444 -o root -g root "$key" /run/builder-keys/\ndone\n';
  const unit: Unit = {
    name: 'copy-builder-keys.service',
    description: 'Stage builder SSH keys where sshd will accept them',
    requires: ['var-keys.mount'],
    execStart: '/x',
    script,
    keys: new Map(),
  };

  it('reads the profile’s script and systemd’s mount unit names', () => {
    expect(parseKeyStaging(script)).toEqual({ source: '/var/keys', dest: '/run/builder-keys' });
    expect(parseKeyStaging('cp /var/keys/* /run/builder-keys/')).toBeNull();
    expect(mountUnitPath('var-keys.mount')).toBe('/var/keys');
    expect(mountUnitPath('nix-.rw\\x2dstore.mount')).toBe('/nix/.rw-store');
    expect(mountUnitPath('-.mount')).toBe('/');
    expect(mountUnitPath('sshd.service')).toBeNull();
  });

  it('copies the *.pub files of the share, read-only, and nothing else', () => {
    const share = fs.mkdtempSync(path.join(tmp, 'share-'));
    const run = fs.mkdtempSync(path.join(tmp, 'run-'));
    fs.writeFileSync(path.join(share, 'builder_ed25519.pub'), 'ssh-ed25519 AAAA builder\n');
    fs.writeFileSync(path.join(share, 'builder_ed25519'), 'PRIVATE\n');
    fs.writeFileSync(path.join(share, '.hidden.pub'), 'x\n');
    fs.symlinkSync('/nowhere/x.pub', path.join(share, 'dangling.pub'));
    const r = stageBuilderKeys(
      unit,
      (d) => (d === '/var/keys' ? share : null),
      () => true,
      run,
    );
    expect(r.lines).toEqual([
      'copy-builder-keys: copied builder_ed25519.pub from /var/keys to /run/builder-keys',
      '[  OK  ] Finished Stage builder SSH keys where sshd will accept them.',
    ]);
    expect(r.staged).toEqual({ guest: '/run/builder-keys', host: path.join(run, 'run', 'builder-keys') });
    expect(fs.readdirSync(r.staged!.host)).toEqual(['builder_ed25519.pub']);
    expect(fs.statSync(path.join(r.staged!.host, 'builder_ed25519.pub')).mode & 0o777).toBe(0o444);
  });

  it('does not start without its mount, and stops at a directory named *.pub (install refuses it, set -e)', () => {
    const run = fs.mkdtempSync(path.join(tmp, 'run-'));
    expect(
      stageBuilderKeys(
        unit,
        () => null,
        () => false,
        run,
      ),
    ).toEqual({
      lines: ['[DEPEND] Dependency failed for Stage builder SSH keys where sshd will accept them.'],
      staged: null,
    });
    const share = fs.mkdtempSync(path.join(tmp, 'share-'));
    fs.mkdirSync(path.join(share, 'a.pub'));
    fs.writeFileSync(path.join(share, 'b.pub'), 'key\n');
    const r = stageBuilderKeys(
      unit,
      () => share,
      () => true,
      run,
    );
    expect(r.lines).toEqual([
      "install: omitting directory '/var/keys/a.pub'",
      '[FAILED] Failed to start Stage builder SSH keys where sshd will accept them.',
    ]);
    expect(fs.readdirSync(r.staged!.host)).toEqual([]);
  });
});

describe('the guest’s mounts', () => {
  const entry = (device: string, target: string, fsType: string, options = 'defaults'): FstabEntry => ({
    device,
    target,
    fsType,
    options: options.split(','),
  });
  const disk = (name: string, o: Partial<GuestDisk> = {}): GuestDisk => ({
    name,
    path: path.join(tmp, `${name}-${Math.random()}.img`),
    readOnly: false,
    bytes: 1 << 20,
    label: null,
    fsType: null,
    ...o,
  });
  const vz: GuestStorageConfig = {
    fstab: [
      entry('tmpfs', '/', 'tmpfs', 'mode=0755'),
      entry('/dev/disk/by-label/nix-store', '/nix/.ro-store', 'erofs', 'ro'),
      entry('/dev/vdb', '/nix/.rw-store', 'ext4', 'x-systemd.makefs,x-initrd.mount'),
      entry('overlay', '/nix/store', 'overlay', 'lowerdir=/nix/.ro-store,upperdir=/nix/.rw-store/upper'),
      entry('keys', '/var/keys', 'virtiofs'),
    ],
    repart: null,
  };

  it('makefs formats a blank writable /dev/vdb, leaves one with a file system, and fails on a read-only one', () => {
    const formatted: string[] = [];
    const fmt = (d: GuestDisk, label: string, f: string) => formatted.push(`${d.name}:${label}:${f}`);
    const store = disk('vda', { readOnly: true, label: 'nix-store', fsType: 'erofs' });
    const blank = disk('vdb');
    const first = bootStorage(vz, [store, blank], ['keys'], fmt);
    expect(first.emergency).toBeNull();
    expect(formatted).toEqual(['vdb::ext4']);
    expect(first.lines).toContain('systemd-makefs: formatting /dev/vdb as ext4...');
    expect(blank).toMatchObject({ fsType: 'ext4', label: null });

    const kept = bootStorage(vz, [store, disk('vdb', { fsType: 'ext4' })], ['keys'], fmt);
    expect(kept.emergency).toBeNull();
    expect(formatted).toHaveLength(1);
    expect(kept.lines).toContain(
      "systemd-makefs: '/dev/vdb' is not empty (contains file system of type ext4), exiting.",
    );

    const ro = bootStorage(vz, [store, disk('vdb', { readOnly: true })], ['keys'], fmt);
    expect(formatted).toHaveLength(1);
    expect(ro.emergency).toEqual(
      expect.arrayContaining([
        '[FAILED] Failed to start Make File System on /dev/vdb.',
        '[DEPEND] Dependency failed for /nix/.rw-store.',
        '[DEPEND] Dependency failed for Local File Systems.',
      ]),
    );
    const missing = bootStorage(
      vz,
      [disk('nvme0n1', { readOnly: true, label: 'nix-store', fsType: 'erofs' }), disk('vda')],
      ['keys'],
      fmt,
    );
    expect(missing.emergency).toContain('[ TIME ] Timed out waiting for device /dev/vdb.');
    expect(formatted).toHaveLength(1);
  });

  it('finds a guest file through the overlay in the store image, a share, or nowhere', () => {
    const store = disk('vda', { readOnly: true, label: 'nix-store', fsType: 'erofs' });
    const disks = [store, disk('vdb', { fsType: 'ext4' })];
    const shares = new Map([['keys', '/host/keys']]);
    expect(locateGuestFile(`${A}/registration`, vz, disks, shares)).toEqual({
      where: 'image',
      image: store.path,
      inner: `/${path.basename(A)}/registration`,
    });
    expect(locateGuestFile('/var/keys/x.pub', vz, disks, shares)).toEqual({ where: 'host', path: '/host/keys/x.pub' });
    expect(locateGuestFile('/etc/x', vz, disks, shares)).toMatchObject({ where: 'nowhere' });
    expect(locateGuestFile('/nix/.rw-store/upper/x', vz, disks, shares)).toMatchObject({ where: 'nowhere' });
    expect(locateGuestFile(`${A}/registration`, null, disks, shares)).toEqual({
      where: 'host',
      path: `${A}/registration`,
    });
  });
});
