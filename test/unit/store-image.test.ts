/**
 * The store image's pieces, against the real tools: the tar stream (read back by GNU tar), the
 * mkfs.erofs argv the seed's runner uses, the label written into an old mkfs.erofs's image (read
 * back by blkid and checked by fsck.erofs), the staging path with Debian's mkfs.erofs, the cache.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import {
  capabilitiesFromHelp,
  erofsCrc32c,
  imageName,
  makeErofsImage,
  mkfsArgv,
  mkfsCapabilities,
  readErofsLabel,
  setErofsLabel,
  storeTar,
  STORE_IMAGE_UUID,
} from '../../src/core/erofs-image.ts';
import { narBytesOf } from '../../src/core/nix/closure-info.ts';
import { StoreImages } from '../../src/core/store-image.ts';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-storeimg-')));
afterAll(() => {
  // The staged store copies are read-only like the real one.
  execa('chmod', ['-R', 'u+w', tmp]).finally(() => fs.rmSync(tmp, { recursive: true, force: true }));
});

/** A small stand-in store: two paths, a symlink, an executable, a hard link, a case-hacked name. */
function fakeStore(): { store: string; paths: string[] } {
  const store = fs.mkdtempSync(path.join(tmp, 'store-'));
  const a = path.join(store, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello');
  const b = path.join(store, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-data');
  fs.mkdirSync(path.join(a, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(a, 'bin', 'hello'), '#!/bin/sh\necho hello\n', { mode: 0o555 });
  fs.symlinkSync('bin/hello', path.join(a, 'run'));
  fs.mkdirSync(path.join(b, 'share'), { recursive: true });
  fs.writeFileSync(path.join(b, 'share', 'big'), Buffer.alloc(2 << 20, 7), { mode: 0o444 });
  fs.writeFileSync(path.join(b, 'share', 'README~nix~case~hack~1'), 'case\n', { mode: 0o444 });
  fs.linkSync(path.join(b, 'share', 'big'), path.join(a, 'big-link'));
  return { store, paths: [a, b] };
}

describe('the tar stream of store paths', () => {
  it('names every entry relative to the store, as root, at time 0, with modes, links and hard links', async () => {
    const { store, paths } = fakeStore();
    let bytes = 0;
    const stream = await storeTar(paths, { storeDir: store, onProgress: (p) => (bytes = p.bytes) });
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const listing = await execa('tar', ['-tv', '--numeric-owner', '--full-time'], { input: Buffer.concat(chunks) });
    const lines = listing.stdout.split('\n');
    const entry = (name: string) => lines.find((l) => l.endsWith(` ${name}`) || l.includes(` ${name} `));
    expect(entry('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello')).toMatch(/^drwxr-xr-x 0\/0 +0 1970-01-01 00:00:00 /);
    expect(entry('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello/bin/hello')).toMatch(/^-r-xr-xr-x 0\/0 +21 /);
    expect(entry('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello/run -> bin/hello')).toBeDefined();
    // The hard link: its content once, the second name a link to the first one the archive met.
    expect(
      entry('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-data/share/big link to aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello/big-link'),
    ).toBeDefined();
    // macOS's case hack is undone, as the seed's --transform does.
    expect(entry('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-data/share/README')).toBeDefined();
    expect(listing.stdout).not.toContain('~nix~case~hack');
    expect(listing.stdout).not.toContain(store);
    expect(bytes).toBe(21 + (2 << 20) + 5);
  });

  it('undoes case hacks in every name', () => {
    expect(imageName('abc-x/Makefile~nix~case~hack~2')).toBe('abc-x/Makefile');
    expect(imageName('plain')).toBe('plain');
  });
});

describe('mkfs.erofs', () => {
  it('is asked what it can do: Debian bookworm’s 1.5 reads no tar and has no label, 1.7+ does both', async () => {
    expect(await mkfsCapabilities('/usr/bin/mkfs.erofs')).toEqual({ tar: false, label: false });
    const v18 =
      'usage: [options] FILE SOURCE(s)\n -L volume-label set the volume label (maximum 15)\n --tar=X generate an image from tarball(s)\n';
    expect(capabilitiesFromHelp(v18)).toEqual({ tar: true, label: true });
  });

  it('gets the seed runner’s flags: root-owned, time 0, the fixed UUID, the label, from tar or a directory', () => {
    const caps = { tar: true, label: true };
    expect(mkfsArgv('/m', caps, 'nix-store', '/out.img')).toEqual([
      '/m',
      '--quiet',
      '--force-uid=0',
      '--force-gid=0',
      '-L',
      'nix-store',
      '-U',
      'eb176051-bd15-49b7-9e6b-462e0b467019',
      '-T',
      '0',
      '--tar=f',
      '/out.img',
    ]);
    expect(mkfsArgv('/m', { tar: false, label: false }, 'nix-store', '/out.img', '/staging')).toEqual([
      '/m',
      '--quiet',
      '--force-uid=0',
      '--force-gid=0',
      '-U',
      STORE_IMAGE_UUID,
      '-T',
      '0',
      '/out.img',
      '/staging',
    ]);
  });

  it('makes the image with Debian’s mkfs.erofs from a staging directory, labelled as the guest needs', async () => {
    const { store, paths } = fakeStore();
    const out = path.join(tmp, 'staged.img');
    let bytes = 0;
    const mode = await makeErofsImage({
      mkfs: '/usr/bin/mkfs.erofs',
      caps: await mkfsCapabilities('/usr/bin/mkfs.erofs'),
      paths,
      out,
      workDir: tmp,
      storeDir: store,
      onProgress: (p) => (bytes = p.bytes),
    });
    expect(mode).toBe('staging');
    // Staged name by name: the hard-linked file counts under both.
    expect(bytes).toBe(21 + 2 * (2 << 20) + 5);
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('staging-'))).toEqual([]);
    const fsck = await execa('fsck.erofs', [out], { reject: false });
    expect(fsck.stderr).toBe('');
    expect((await execa('blkid', ['-o', 'export', out])).stdout).toContain('LABEL=nix-store');
    expect(readErofsLabel(out)).toBe('nix-store');
    const x = path.join(tmp, 'extracted');
    await execa('fsck.erofs', [`--extract=${x}`, out]);
    expect(fs.readdirSync(x).sort()).toEqual(paths.map((p) => path.basename(p)).sort());
    expect(fs.readFileSync(path.join(x, path.basename(paths[0]!), 'bin', 'hello'), 'utf8')).toBe(
      '#!/bin/sh\necho hello\n',
    );
    expect(fs.readlinkSync(path.join(x, path.basename(paths[0]!), 'run'))).toBe('bin/hello');
    expect(fs.statSync(path.join(x, path.basename(paths[0]!), 'bin', 'hello')).mode & 0o777).toBe(0o555);
  });

  it('writes a label with the superblock checksum fsck.erofs verifies', async () => {
    const src = fs.mkdtempSync(path.join(tmp, 'src-'));
    fs.writeFileSync(path.join(src, 'f'), 'x');
    const img = path.join(tmp, 'label.img');
    await execa('/usr/bin/mkfs.erofs', ['-T', '0', img, src]);
    expect(readErofsLabel(img)).toBe('');
    setErofsLabel(img, 'nix-store');
    expect((await execa('fsck.erofs', [img], { reject: false })).stderr).toBe('');
    expect(readErofsLabel(img)).toBe('nix-store');
    // Without the checksum fixed, fsck.erofs notices (it is what guards the label).
    const fd = fs.openSync(img, 'r+');
    fs.writeSync(fd, Buffer.from('X'), 0, 1, 1088);
    fs.closeSync(fd);
    expect((await execa('fsck.erofs', [img], { reject: false })).stderr).toContain('chksum');
    expect(() => setErofsLabel(img, 'x'.repeat(17))).toThrow(/longer than 16 bytes/);
    // CRC-32C's check value, without the final inversion erofs-utils leaves out.
    expect((~erofsCrc32c(0xffffffff, Buffer.from('123456789')) >>> 0).toString(16)).toBe('e3069283');
  });
});

describe('registration info', () => {
  it('adds up the NAR sizes of nix-store --dump-db', () => {
    const reg = [
      '/nix/store/a-x',
      'aaaa',
      '100',
      '',
      '1',
      '/nix/store/b-y',
      '/nix/store/b-y',
      'bbbb',
      '23',
      '/nix/store/d.drv',
      '0',
      '',
    ].join('\n');
    expect(narBytesOf(reg)).toBe(123);
  });
});

describe('the store image cache', () => {
  it('finds an image it made without asking nix, and deletes only images no VM uses', async () => {
    const state = fs.mkdtempSync(path.join(tmp, 'state-'));
    const inUse = new Set(['/nix/store/11111111111111111111111111111111-nixos-system-a']);
    const images = new StoreImages({ stateDir: state, inUse: () => inUse, log: () => {} });
    const a = images.pathFor('/nix/store/11111111111111111111111111111111-nixos-system-a');
    const b = images.pathFor('/nix/store/22222222222222222222222222222222-nixos-system-b');
    fs.mkdirSync(images.dir, { recursive: true });
    for (const f of [a, b]) {
      fs.writeFileSync(f, 'img');
      fs.writeFileSync(`${f}.json`, '{}');
    }
    fs.writeFileSync(`${b}.tmp`, 'half made');
    // Cached: no nix needed at all.
    expect(
      await images.ensure(
        null,
        { name: 'a', flake: '/f' },
        '/nix/store/11111111111111111111111111111111-nixos-system-a',
      ),
    ).toBe(a);
    expect(images.prune()).toEqual([b]);
    expect(fs.readdirSync(images.dir).sort()).toEqual([path.basename(a), `${path.basename(a)}.json`]);
    // Not cached and no nix: one sentence naming the VM.
    await expect(images.ensure(null, { name: 'c', flake: '/f' }, '/nix/store/3-c')).rejects.toThrow(
      'The Nix store image of VM "c" cannot be made: nix was not found.',
    );
  });
});
