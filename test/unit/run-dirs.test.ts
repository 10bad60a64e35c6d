/**
 * The seed runner's words resolved per VM, the run's scratch directory, the keys directory, the CA
 * bundle, and the persistent writable store image: what is made, kept, grown and never shrunk.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SharedDir, VmSnapshot } from '../../src/api/types.ts';
import { vmActions } from '../../src/api/actions.ts';
import { findCaBundle } from '../../src/host/ca-bundle.ts';
import {
  allWritableImages,
  ensureWritableImage,
  growWritableImage,
  resetWritableImage,
  writableImage,
  writableNotice,
} from '../../src/core/vm/disks.ts';
import {
  ensureKeysDir,
  madeByNixvm,
  prepareScratch,
  removeScratch,
  resolveShares,
  scratchPlan,
} from '../../src/core/vm/run-dirs.ts';
import { formatDiskList, macWarnings, shareSource } from '../../src/cli/format.ts';
import { testSpec } from '../vfkit-sim/harness.ts';
import { vm as makeSnapshot } from './snapshot-factory.ts';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-rundirs-')));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const MIB = 1024 * 1024;

const SHARES: SharedDir[] = [
  { tag: 'xchg', source: '', target: '/tmp/xchg', word: { word: 'TMPDIR', rel: 'xchg' } },
  {
    tag: 'shared',
    source: '',
    target: '/tmp/shared',
    word: { word: 'SHARED_DIR', fallback: { word: 'TMPDIR', rel: 'xchg' } },
  },
  { tag: 'certs', source: '', target: '/etc/ssl/certs', word: { word: 'TMPDIR', rel: 'certs' } },
  { tag: 'keys', source: '', target: '/var/keys', word: { word: 'KEYS', rel: '' } },
  { tag: 'persistent', source: '/flake/persistent', target: '/persistent' },
];

describe('share words', () => {
  const ctx = { scratch: '/s/vms/b/tmp', keys: '/s/vms/b/keys', sharedDir: null };

  it('point at the run’s scratch directory, the keys directory, and the shared folder (else its default)', () => {
    expect(resolveShares(SHARES, ctx).map((s) => [s.tag, s.source])).toEqual([
      ['xchg', '/s/vms/b/tmp/xchg'],
      ['shared', '/s/vms/b/tmp/xchg'],
      ['certs', '/s/vms/b/tmp/certs'],
      ['keys', '/s/vms/b/keys'],
      ['persistent', '/flake/persistent'],
    ]);
    const shared = resolveShares(SHARES, { ...ctx, sharedDir: '/Users/me/share' });
    expect(shared.find((s) => s.tag === 'shared')!.source).toBe('/Users/me/share');
    // Only what nixvm makes is exempt from "does it exist"; a shared folder the user names is not.
    expect(SHARES.map((s) => madeByNixvm(s, ctx))).toEqual([true, true, true, true, false]);
    expect(madeByNixvm(SHARES[1]!, { ...ctx, sharedDir: '/Users/me/share' })).toBe(false);
    expect(SHARES.map(shareSource)).toEqual([
      '$TMPDIR/xchg',
      '${SHARED_DIR:-$TMPDIR/xchg}',
      '$TMPDIR/certs',
      '$KEYS',
      '/flake/persistent',
    ]);
  });

  it('fill the scratch directory afresh for each run: xchg, every $TMPDIR share, the CA bundle', () => {
    const bundle = path.join(tmp, 'bundle.crt');
    fs.writeFileSync(bundle, 'CERTS');
    const spec = testSpec({ shares: SHARES, hostCerts: true });
    const plan = scratchPlan(spec, ctx, bundle);
    expect(plan).toEqual({ dirs: ['certs', 'xchg'], files: [{ rel: 'certs/ca-certificates.crt', from: bundle }] });
    const dir = path.join(tmp, 'scratch');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'left-over'), 'from the last run');
    prepareScratch(dir, plan);
    expect(fs.readdirSync(dir).sort()).toEqual(['certs', 'xchg']);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.readFileSync(path.join(dir, 'certs', 'ca-certificates.crt'), 'utf8')).toBe('CERTS');
    removeScratch(dir);
    expect(fs.existsSync(dir)).toBe(false);
    // A VM without useHostCerts gets no certs.
    expect(scratchPlan(testSpec({ shares: SHARES.slice(0, 2) }), ctx, bundle)).toEqual({ dirs: ['xchg'], files: [] });
  });

  it('keep the keys directory private, whatever it was', () => {
    const keys = path.join(tmp, 'keys');
    fs.mkdirSync(keys, { mode: 0o755 });
    fs.chmodSync(keys, 0o755);
    ensureKeysDir(keys);
    expect(fs.statSync(keys).mode & 0o777).toBe(0o700);
  });
});

describe('the CA bundle for useHostCerts', () => {
  it('is NIX_SSL_CERT_FILE, else the first bundle the Nix installer’s script would pick', () => {
    const a = path.join(tmp, 'a.crt');
    const b = path.join(tmp, 'b.crt');
    fs.writeFileSync(b, 'b');
    expect(findCaBundle({ NIX_SSL_CERT_FILE: a }, [path.join(tmp, 'none'), b])).toEqual({
      path: b,
      tried: [`NIX_SSL_CERT_FILE=${a}`, path.join(tmp, 'none'), b],
    });
    fs.writeFileSync(a, 'a');
    expect(findCaBundle({ NIX_SSL_CERT_FILE: a }, [b]).path).toBe(a);
    expect(findCaBundle({}, [path.join(tmp, 'none')]).path).toBeNull();
  });
});

describe('the writable store image', () => {
  it('is made sparse at diskSize once, then left exactly as it is', () => {
    const vm = { dir: path.join(tmp, 'vms', 'builder') };
    expect(ensureWritableImage(vm, 'builder', 1024)).toBe(true);
    const img = writableImage(vm)!;
    expect(img).toMatchObject({ role: 'writable-store', apparentBytes: 1024 * MIB, readOnly: false });
    expect(img.allocatedBytes).toBeLessThan(MIB);
    const fd = fs.openSync(img.path, 'r+');
    fs.writeSync(fd, Buffer.from('kept'), 0, 4, 100 * MIB);
    fs.closeSync(fd);
    expect(ensureWritableImage(vm, 'builder', 2048)).toBe(false);
    expect(fs.statSync(img.path).size).toBe(1024 * MIB);
    expect(allWritableImages(path.join(tmp, 'vms'))).toEqual([{ ...writableImage(vm)!, vm: 'builder' }]);

    const spec = (sizeMiB: number) => testSpec({ writableStore: { sizeMiB, device: null } });
    expect(writableNotice('builder', spec(1024), writableImage(vm))).toEqual({ notice: null, canGrow: false });
    expect(writableNotice('builder', spec(4096), writableImage(vm))).toEqual({
      notice:
        'virtualisation.diskSize of "builder" is 4096 MiB, but its writable store image is 1024 MiB; grow it with `nixvm disk grow builder` while it is stopped.',
      canGrow: true,
    });
    expect(writableNotice('builder', spec(512), writableImage(vm)).notice).toBe(
      'virtualisation.diskSize of "builder" is 512 MiB, smaller than its 1024 MiB writable store image, which cannot shrink without losing data; to start over at 512 MiB, run `nixvm disk reset builder` (it deletes what the VM keeps in its writable Nix store).',
    );

    expect(growWritableImage(vm, 'builder', 4096)).toBe(true);
    expect(fs.statSync(img.path).size).toBe(4096 * MIB);
    expect(fs.statSync(img.path).blocks * 512).toBeLessThan(MIB);
    const back = Buffer.alloc(4);
    const rd = fs.openSync(img.path, 'r');
    fs.readSync(rd, back, 0, 4, 100 * MIB);
    fs.closeSync(rd);
    expect(back.toString()).toBe('kept');
    expect(growWritableImage(vm, 'builder', 4096)).toBe(false);
    expect(() => growWritableImage(vm, 'builder', 1024)).toThrow(
      'The writable store image of "builder" is 4096 MiB and cannot shrink to 1024 MiB without losing data; run `nixvm disk reset builder` to start over at the new size.',
    );

    expect(resetWritableImage(vm)).toBe(true);
    expect(writableImage(vm)).toBeNull();
    expect(resetWritableImage(vm)).toBe(false);
  });
});

describe('disks and MACs in the faces', () => {
  const disks = {
    images: [
      {
        role: 'writable-store' as const,
        path: '/s/vms/b/store-writable.img',
        apparentBytes: 20 * 1024 * MIB,
        allocatedBytes: 3 * MIB,
        readOnly: false,
      },
    ],
    preparing: null,
    error: null,
    notice: null,
    canGrow: false,
  };

  it('offer reset (asking first) and grow only while the VM is stopped', () => {
    const ctx = { vfkit: { path: '/v', version: '0.6.4' }, nix: '/nix', problems: [] };
    const running: VmSnapshot = makeSnapshot({ name: 'b', state: 'running', disks });
    const reset = vmActions(running, ctx).more.find((a) => a.id === 'resetDisk')!;
    expect(reset).toMatchObject({ enabled: false, reason: 'Stop "b" first' });
    const stopped = makeSnapshot({
      name: 'b',
      state: 'stopped',
      disks: { ...disks, canGrow: true, notice: 'grow it' },
    });
    const acts = vmActions(stopped, ctx).more;
    expect(acts.find((a) => a.id === 'resetDisk')).toMatchObject({
      enabled: true,
      run: { kind: 'agent', method: 'diskReset', params: { vm: 'b' } },
      confirm:
        'Delete the writable store image of "b"? Everything it keeps in its writable Nix store is lost; its next start makes a new, empty one.',
    });
    expect(acts.find((a) => a.id === 'growDisk')).toMatchObject({ enabled: true, run: { method: 'diskGrow' } });
    expect(vmActions(makeSnapshot({ name: 'c' }), ctx).more.some((a) => a.id === 'resetDisk')).toBe(false);
  });

  it('list every image, and warn once per group of VMs that share a MAC', () => {
    expect(
      formatDiskList([
        { ...disks.images[0]!, vms: ['b'], closure: null, orphan: true },
        {
          role: 'nix-store',
          path: '/s/images/x.img',
          apparentBytes: 300 * MIB,
          allocatedBytes: 300 * MIB,
          readOnly: true,
          vms: [],
          closure: '/nix/store/x',
          orphan: true,
        },
      ]),
    ).toBe(
      [
        'ROLE            VM  SIZE     ON DISK  NOTE                      PATH',
        'writable-store  b   20 GiB   3 MiB    no flake defines this VM  /s/vms/b/store-writable.img',
        'nix-store       -   300 MiB  300 MiB  no VM uses it             /s/images/x.img',
      ].join('\n'),
    );
    const a = makeSnapshot({ name: 'a', mac: 'f6:25:e2:48:58:1e', macShared: ['b'] });
    const b = makeSnapshot({ name: 'b', mac: 'f6:25:e2:48:58:1e', macShared: ['a'] });
    expect(macWarnings([a, b, makeSnapshot({ name: 'c' })])).toEqual([
      'warning: a, b have the same MAC address f6:25:e2:48:58:1e: only one of them can run at a time (give one another virtualisation.macAddress).',
    ]);
  });
});
