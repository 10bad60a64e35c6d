/**
 * The seed's own two VMs, option for option (test/fixtures/seed-exact), run as a user would: a
 * `nixvm daemon` and the `nixvm` CLI as real processes, real nix, Debian's real mkfs.erofs behind
 * the flake's virtualisation.host.pkgs.erofs-utils, and the vfkit simulator, whose guest reads the
 * closure's fstab and stops in emergency mode if a share or disk it mounts is missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiskListing, VmSnapshot } from '../../src/api/types.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { SIMULATOR } from '../helpers/agent.ts';
import { killVfkitsUnder } from '../helpers/reap.ts';
import { settles, waitFor, watchChild, type Watched } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));
const MAC = 'f6:25:e2:48:58:1e';
const MIB = 1024 * 1024;
/** Where the test writes its marker into the writable store image (as the guest's writes would land). */
const MARKER_AT = 64 * MIB;
const MARKER = Buffer.from(`nixvm marker ${process.pid} ${Date.now()}\n`);

let flake: FlakeCopy;
let root: string;
let env: NodeJS.ProcessEnv;
let certs: string;
/** mkfs.erofs of the fixture's erofs-utils waits while this file is missing (pkgs/erofs-utils.nix). */
let gate: string;
let daemon: ChildProcess | null = null;
let daemonW: Watched;

async function startDaemon(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'daemon', '--flake', flake.dir], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  daemonW = watchChild(child, 'the daemon', { stdout: true });
  await waitFor(() => daemonW.output().includes('listening on'), { what: 'the daemon to listen', process: daemonW });
  return child;
}

async function nixvm(...args: string[]) {
  return execa(process.execPath, [BIN, ...args], { env, reject: false, timeout: 120_000 });
}

async function ok(...args: string[]) {
  const r = await nixvm(...args);
  expect(r.exitCode, `nixvm ${args.join(' ')}:\n${r.stderr}\n${r.stdout}`).toBe(0);
  return r;
}

async function status(vm: string): Promise<VmSnapshot> {
  return JSON.parse((await ok('status', vm, '--json')).stdout) as VmSnapshot;
}

async function argvOf(vm: string): Promise<string[]> {
  return (JSON.parse((await ok('inspect', vm, '--json')).stdout) as { argv: string[] }).argv;
}

async function diskLs(): Promise<DiskListing[]> {
  return JSON.parse((await ok('disk', 'ls', '--json')).stdout) as DiskListing[];
}

/** Runs `f` until `pred` holds for its result, racing the daemon. */
async function until<T>(what: string, f: () => Promise<T>, pred: (v: T) => boolean): Promise<T> {
  let last: T | undefined;
  return waitFor(
    async () => {
      last = await f();
      return pred(last) ? { v: last } : null;
    },
    { what, process: daemonW, intervalMs: 200, detail: () => `Last: ${JSON.stringify(last)?.slice(0, 3000)}` },
  ).then((r) => r.v);
}

function vmDir(vm: string): string {
  return path.join(root, 'state', 'vms', vm);
}

function consoleOf(vm: string): string {
  return fs.readFileSync(path.join(root, 'logs', 'vms', vm, 'console.log'), 'utf8');
}

function readAt(file: string, at: number, n: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(n);
    fs.readSync(fd, b, 0, n, at);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

function writeAt(file: string, at: number, data: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, at);
  } finally {
    fs.closeSync(fd);
  }
}

function editHost(vm: string, edit: (text: string) => string): void {
  const f = flake.file(`hosts/${vm}.nix`);
  fs.writeFileSync(f, edit(fs.readFileSync(f, 'utf8')));
}

beforeAll(async () => {
  flake = await copyFixture('seed-exact');
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-seedvms-')));
  certs = path.join(root, 'host-ca-bundle.crt');
  gate = path.join(root, 'mkfs-gate');
  fs.writeFileSync(gate, '');
  fs.writeFileSync(certs, '-----BEGIN CERTIFICATE-----\nnixvm test bundle\n-----END CERTIFICATE-----\n');
  env = {
    ...process.env,
    NIXVM_STATE_DIR: root,
    NIXVM_VFKIT: SIMULATOR,
    NIXVM_LEASES_FILE: path.join(root, 'dhcpd_leases'),
    NIXVM_SIM_BOOT_MS: '200',
    NIX_SSL_CERT_FILE: certs,
    NIXVM_TEST_MKFS_GATE: gate,
  };
  delete env.SHARED_DIR;
  daemon = await startDaemon();
});

afterAll(async () => {
  for (const vm of ['minimal-vm', 'builder-vm']) await nixvm('stop', vm);
  daemon?.kill('SIGTERM');
  killVfkitsUnder(path.join(root, 'state', 'vms'));
  fs.rmSync(root, { recursive: true, force: true });
  flake.remove();
});

describe("the seed's minimal-vm and builder-vm", () => {
  it('lists both with the values they evaluate to, and warns that they share one MAC', async () => {
    const { vms } = JSON.parse((await ok('ls', '--json')).stdout) as { vms: VmSnapshot[] };
    const min = vms.find((v) => v.name === 'minimal-vm')!;
    const bld = vms.find((v) => v.name === 'builder-vm')!;
    expect(min).toMatchObject({ cpus: 4, memoryMiB: 4096, mac: MAC, macShared: ['builder-vm'] });
    expect(min.spec).toMatchObject({ mountHostNixStore: true, storeImage: false, writableStore: null, rosetta: true });
    expect(min.shares.map((s) => s.tag).sort()).toEqual(['persistent', 'shared', 'xchg']);
    // The runner's words, resolved: the scratch dir, and the shared folder falling back to $TMPDIR/xchg.
    const xchg = path.join(vmDir('minimal-vm'), 'tmp', 'xchg');
    expect(min.shares.find((s) => s.tag === 'xchg')).toMatchObject({ source: xchg, target: '/tmp/xchg' });
    expect(min.shares.find((s) => s.tag === 'shared')).toMatchObject({ source: xchg, target: '/tmp/shared' });

    expect(bld).toMatchObject({ cpus: 8, memoryMiB: 3072, mac: MAC, macShared: ['minimal-vm'] });
    expect(bld.spec).toMatchObject({
      mountHostNixStore: false,
      storeImage: true,
      hostCerts: true,
      diskSizeMiB: 20480,
      writableStore: { sizeMiB: 20480, device: '/dev/nvme1n1' },
      graphics: false,
    });
    expect(bld.shares.map((s) => s.tag).sort()).toEqual(['certs', 'keys', 'persistent', 'shared', 'xchg']);
    expect(bld.shares.find((s) => s.tag === 'keys')).toMatchObject({
      source: path.join(vmDir('builder-vm'), 'keys'),
      target: '/var/keys',
    });

    const table = await ok('ls');
    expect(table.stdout).toContain(
      `warning: builder-vm, minimal-vm have the same MAC address ${MAC}: only one of them can run at a time`,
    );
  });

  it('minimal-vm boots with every tag its guest mounts; builder-vm may not start beside it', async () => {
    await ok('start', 'minimal-vm');
    const argv = await argvOf('minimal-vm');
    const tags = argv.flatMap((a) => /mountTag=([^,]+)/.exec(a)?.[1] ?? []);
    expect(tags.sort()).toEqual(['nix-store', 'persistent', 'rosetta', 'shared', 'xchg']);
    const text = consoleOf('minimal-vm');
    for (const [tag, at] of [
      ['xchg', '/tmp/xchg'],
      ['shared', '/tmp/shared'],
      ['persistent', '/persistent'],
      ['nix-store', '/nix/.ro-store'],
      ['rosetta', '/run/rosetta'],
    ])
      expect(text).toContain(`mounting ${tag} on ${at}...`);
    expect(text).not.toContain('emergency mode');
    expect(fs.statSync(path.join(vmDir('minimal-vm'), 'tmp', 'xchg')).isDirectory()).toBe(true);

    const refused = await nixvm('start', 'builder-vm');
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(
      `Cannot start "builder-vm": "minimal-vm" is running with the same MAC address ${MAC}`,
    );
    expect(refused.stderr).toContain('virtualisation.macAddress');
    expect((await status('builder-vm')).state).toBe('stopped');

    await ok('stop', 'minimal-vm');
    // The run's scratch directory went with the run.
    expect(fs.existsSync(path.join(vmDir('minimal-vm'), 'tmp'))).toBe(false);
  });

  it('builder-vm boots from a store image made just before boot, with its writable store, keys and certs', async () => {
    // Hold mkfs.erofs until the progress has been seen where a user would see it.
    fs.rmSync(gate);
    const starting = nixvm('start', 'builder-vm');
    const preparing = await until(
      'the store image being built',
      () => status('builder-vm'),
      // The phase shows before its first byte is counted: wait for both, as a user watching would.
      (v) => v.disks?.preparing?.phase === 'building the store image' && v.disks.preparing.bytesWritten > 0,
    );
    expect(preparing.state).toBe('stopped');
    expect(preparing.disks!.preparing!.bytesExpected).toBeGreaterThan(0);
    // Every file of the closure taken in (the expected size is the NAR size, a little more).
    const p = preparing.disks!.preparing!;
    expect(p.bytesWritten).toBeGreaterThan(0);
    expect(p.bytesWritten).toBeLessThanOrEqual(p.bytesExpected!);
    const note = (await ok('ls')).stdout;
    expect(note).toMatch(/builder-vm\s+stopped.*building the store image: [\d.]+ (B|KiB) of [\d.]+ (B|KiB) written/);
    // "stopped" until vfkit runs, yet the disks are the start's: reset and grow wait for it.
    for (const cmd of [
      ['disk', 'reset', 'builder-vm', '--yes'],
      ['disk', 'grow', 'builder-vm'],
    ]) {
      const r = await nixvm(...cmd);
      expect(r.exitCode, cmd.join(' ')).toBe(1);
      expect(r.stderr).toMatch(
        /"builder-vm" is starting; wait for it, or stop it, before you (reset|grow) its writable store image\./,
      );
    }
    fs.writeFileSync(gate, '');
    const start = await starting;
    expect(start.exitCode, start.stderr).toBe(0);
    expect(start.stdout).toContain('builder-vm: building the store image');
    const vm = await status('builder-vm');
    expect(vm.state).toBe('running');
    const [image, writable] = vm.disks!.images;
    expect(image).toMatchObject({ role: 'nix-store', readOnly: true });
    expect(writable).toMatchObject({
      role: 'writable-store',
      readOnly: false,
      path: path.join(vmDir('builder-vm'), 'store-writable.img'),
      apparentBytes: 20480 * MIB,
    });
    // Sparse: 20 GiB long, almost nothing on disk.
    expect(writable!.allocatedBytes).toBeLessThan(16 * MIB);

    // The argv: the store image read-only first (nvme0n1, mounted by label), the writable store
    // second (nvme1n1, where the guest's repart expects it), no host store share.
    const argv = await argvOf('builder-vm');
    expect(argv.filter((a) => a.startsWith('nvme,'))).toEqual([
      `nvme,path=${image!.path},readonly`,
      `nvme,path=${writable!.path}`,
    ]);
    expect(argv.some((a) => a.includes('mountTag=nix-store'))).toBe(false);
    const text = consoleOf('builder-vm');
    expect(text).toContain('mounting /dev/nvme0n1 (nix-store, erofs) on /nix/.ro-store...');
    expect(text).toContain(
      'systemd-repart: adding new partition 10-nix-store-writable (nix-store-write) to /dev/nvme1n1',
    );
    for (const [tag, at] of [
      ['keys', '/var/keys'],
      ['certs', '/etc/ssl/certs'],
      ['xchg', '/tmp/xchg'],
    ])
      expect(text).toContain(`mounting ${tag} on ${at}...`);

    // Made from a tar stream where mkfs.erofs reads one (erofs-utils 1.7+), else from a staging directory.
    const help = await execa('/usr/bin/mkfs.erofs', ['--help'], { reject: false });
    const record = JSON.parse(fs.readFileSync(`${image!.path}.json`, 'utf8')) as { mode: string; closure: string };
    expect(record).toMatchObject({
      mode: /--tar\b/.test(help.stdout + help.stderr) ? 'tar' : 'staging',
      closure: vm.bootedOutPath,
    });

    // The image: a valid erofs, labelled nix-store with the seed's UUID, the closure at its root.
    const fsck = await execa('fsck.erofs', [image!.path], { reject: false });
    // fsck.erofs 1.5 exits 0 even when it finds a problem: its words are the verdict.
    expect(fsck.exitCode).toBe(0);
    expect(fsck.stderr).toBe('');
    const blkid = await execa('blkid', ['-o', 'export', image!.path]);
    expect(blkid.stdout).toContain('LABEL=nix-store');
    expect(blkid.stdout).toContain('UUID=eb176051-bd15-49b7-9e6b-462e0b467019');
    expect(blkid.stdout).toContain('TYPE=erofs');
    const closure = (await execa('nix-store', ['--query', '--requisites', vm.bootedOutPath!])).stdout
      .trim()
      .split('\n');
    expect(closure.length).toBeGreaterThan(1);
    const root = (await execa('dump.erofs', ['--ls', '--path=/', image!.path])).stdout;
    for (const p of closure) expect(root).toContain(path.basename(p));
    const extracted = path.join(os.tmpdir(), `nixvm-extract-${process.pid}`);
    try {
      await execa('fsck.erofs', [`--extract=${extracted}`, image!.path]);
      for (const p of closure) expect(fs.existsSync(path.join(extracted, path.basename(p))), p).toBe(true);
      expect(fs.readlinkSync(path.join(extracted, path.basename(vm.bootedOutPath!), 'sw'))).toMatch(
        /^\/nix\/store\/[a-z0-9]{32}-system-path-builder-vm$/,
      );
      // The registration info, as closureInfo makes it, for every path of the closure.
      const info = fs.readdirSync(extracted).find((n) => n.endsWith('-closure-info'));
      expect(info, 'a closure-info path in the image').toBeDefined();
      const reg = fs.readFileSync(path.join(extracted, info!, 'registration'), 'utf8');
      for (const p of closure) expect(reg).toContain(`${p}\n`);
      expect(
        fs
          .readFileSync(path.join(extracted, info!, 'store-paths'), 'utf8')
          .trim()
          .split('\n')
          .sort(),
      ).toEqual([...closure].sort());
    } finally {
      fs.rmSync(extracted, { recursive: true, force: true });
    }

    // $KEYS: the VM's private keys directory; useHostCerts: the host's bundle in the certs share.
    expect(fs.statSync(path.join(vmDir('builder-vm'), 'keys')).mode & 0o777).toBe(0o700);
    expect(fs.readFileSync(path.join(vmDir('builder-vm'), 'tmp', 'certs', 'ca-certificates.crt'), 'utf8')).toBe(
      fs.readFileSync(certs, 'utf8'),
    );
  });

  it('a restart of the unchanged VM reuses its store image', async () => {
    const before = (await status('builder-vm')).disks!.images[0]!;
    const ino = fs.statSync(before.path).ino;
    const restart = await ok('restart', 'builder-vm');
    expect(restart.stdout).not.toContain('building the store image');
    const after = (await status('builder-vm')).disks!.images[0]!;
    expect(after.path).toBe(before.path);
    expect(fs.statSync(after.path).ino).toBe(ino);
    expect((await diskLs()).filter((d) => d.role === 'nix-store')).toHaveLength(1);
  });

  it('disk reset and grow refuse while the VM runs', async () => {
    for (const cmd of [
      ['disk', 'reset', 'builder-vm', '--yes'],
      ['disk', 'grow', 'builder-vm'],
    ]) {
      const r = await nixvm(...cmd);
      expect(r.exitCode, cmd.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/"builder-vm" is running; stop it before you (reset|grow) its writable store image\./);
    }
    expect(fs.existsSync(path.join(vmDir('builder-vm'), 'store-writable.img'))).toBe(true);
  });

  it('keeps the writable store byte for byte across stop/start, an agent SIGKILL and a rebuild', async () => {
    const img = path.join(vmDir('builder-vm'), 'store-writable.img');
    const ino = fs.statSync(img).ino;
    const intact = (when: string) => {
      expect(readAt(img, MARKER_AT, MARKER.length).equals(MARKER), `the marker after ${when}`).toBe(true);
      expect(fs.statSync(img).ino, `the same image file after ${when}`).toBe(ino);
    };
    await ok('stop', 'builder-vm');
    writeAt(img, MARKER_AT, MARKER);

    await ok('start', 'builder-vm');
    intact('stop and start');
    // The guest found its partition: it was not made anew.
    expect(consoleOf('builder-vm')).toContain('/dev/nvme1n1 already has partition 10-nix-store-writable');

    const pid = (await status('builder-vm')).pid!;
    daemon!.kill('SIGKILL');
    await settles(daemonW.exited, { what: 'the SIGKILLed daemon to be gone' });
    expect(() => process.kill(pid, 0), 'the VM outlives the agent').not.toThrow();
    daemon = await startDaemon();
    const adopted = await until(
      'builder-vm to be adopted',
      () => status('builder-vm'),
      (v) => v.state === 'running',
    );
    expect(adopted.pid).toBe(pid);
    // The adopted run keeps its scratch directory; the stop after it removes it.
    expect(fs.existsSync(path.join(vmDir('builder-vm'), 'tmp', 'xchg'))).toBe(true);
    intact('an agent SIGKILL');
    await ok('stop', 'builder-vm');
    expect(fs.existsSync(path.join(vmDir('builder-vm'), 'tmp'))).toBe(false);
    await ok('start', 'builder-vm');
    intact('the adopted run and a new start');

    // A rebuild: a new closure, so a new store image; the old one goes, the writable store stays.
    const oldImage = (await status('builder-vm')).disks!.images[0]!.path;
    editHost('builder-vm', (t) => t.replace('services.getty', 'environment.etc.motd = "rebuilt";\n  services.getty'));
    await until(
      'builder-vm to be stale',
      () => status('builder-vm'),
      (v) => v.stale,
    );
    await ok('restart', 'builder-vm');
    const rebuilt = await status('builder-vm');
    expect(rebuilt).toMatchObject({ state: 'running', stale: false });
    expect(rebuilt.disks!.images[0]!.path).not.toBe(oldImage);
    expect(fs.existsSync(oldImage), 'the image of the closure no VM uses any more').toBe(false);
    intact('a rebuild');
    expect(consoleOf('builder-vm')).toContain('/dev/nvme1n1 already has partition 10-nix-store-writable');
  });

  it('reports a changed diskSize, grows the image (sparse) when stopped, and never shrinks it', async () => {
    const img = path.join(vmDir('builder-vm'), 'store-writable.img');
    editHost('builder-vm', (t) => t.replace('diskSize = 20 * 1024;', 'diskSize = 30 * 1024;'));
    const grew = await until(
      'the grown diskSize',
      () => status('builder-vm'),
      (v) => v.disks?.canGrow === true,
    );
    expect(grew.disks!.notice).toBe(
      'virtualisation.diskSize of "builder-vm" is 30720 MiB, but its writable store image is 20480 MiB; grow it with `nixvm disk grow builder-vm` while it is stopped.',
    );
    expect((await ok('status', 'builder-vm')).stdout).toContain('nixvm disk grow builder-vm');
    await ok('stop', 'builder-vm');
    const g = await ok('disk', 'grow', 'builder-vm');
    expect(g.stdout).toBe('builder-vm: writable store image grown to 30 GiB (sparse).');
    expect(fs.statSync(img).size).toBe(30 * 1024 * MIB);
    expect(fs.statSync(img).blocks * 512).toBeLessThan(16 * MIB);
    expect(readAt(img, MARKER_AT, MARKER.length).equals(MARKER)).toBe(true);
    expect((await status('builder-vm')).disks!.notice).toBeNull();

    editHost('builder-vm', (t) => t.replace('diskSize = 30 * 1024;', 'diskSize = 10 * 1024;'));
    const shrunk = await until(
      'the smaller diskSize',
      () => status('builder-vm'),
      (v) => v.disks?.notice?.includes('cannot shrink') === true,
    );
    expect(shrunk.disks!.notice).toContain('run `nixvm disk reset builder-vm`');
    const refused = await nixvm('disk', 'grow', 'builder-vm');
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(
      'cannot shrink to 10240 MiB without losing data; run `nixvm disk reset builder-vm`',
    );
    expect(fs.statSync(img).size).toBe(30 * 1024 * MIB);
  });

  it('disk reset asks (and needs --yes without a terminal), then the next start makes a fresh image; disk ls shows orphans', async () => {
    const img = path.join(vmDir('builder-vm'), 'store-writable.img');
    const asked = await nixvm('disk', 'reset', 'builder-vm');
    expect(asked.exitCode).toBe(2);
    expect(asked.stderr).toContain('run it in a terminal to be asked, or pass --yes');
    expect(fs.existsSync(img)).toBe(true);
    const reset = await ok('disk', 'reset', 'builder-vm', '--yes');
    expect(reset.stdout).toBe('builder-vm: writable store image deleted; its next start makes a new one of 10240 MiB.');
    expect(fs.existsSync(img)).toBe(false);
    await ok('start', 'builder-vm');
    expect(fs.statSync(img).size).toBe(10 * 1024 * MIB);
    expect(readAt(img, MARKER_AT, MARKER.length).equals(MARKER)).toBe(false);
    expect(consoleOf('builder-vm')).toContain('adding new partition 10-nix-store-writable');
    await ok('stop', 'builder-vm');

    // A VM the flake no longer defines keeps its image, listed as an orphan; nothing deletes it.
    const nix = flake.file('flake.nix');
    fs.writeFileSync(nix, fs.readFileSync(nix, 'utf8').replace(/builder-vm = mkVm[^;]*;/, ''));
    const listed = await until('the orphaned writable store', diskLs, (ds) =>
      ds.some((d) => d.role === 'writable-store' && d.vms[0] === 'builder-vm' && d.orphan),
    );
    expect(listed.find((d) => d.role === 'writable-store' && d.vms[0] === 'builder-vm')).toMatchObject({
      path: img,
      apparentBytes: 10 * 1024 * MIB,
    });
    expect((await ok('disk', 'ls')).stdout).toMatch(
      /writable-store\s+builder-vm\s+10 GiB\s+\S+ \S+\s+no flake defines this VM/,
    );
    expect(fs.existsSync(img)).toBe(true);

    // ... until the user resets it by the name `disk ls` shows, asked first like any other.
    const askedOrphan = await nixvm('disk', 'reset', 'builder-vm');
    expect(askedOrphan.exitCode, askedOrphan.stderr).toBe(2);
    expect(askedOrphan.stderr).toContain('run it in a terminal to be asked, or pass --yes');
    const gone = await ok('disk', 'reset', 'builder-vm', '--yes', '--json');
    expect(JSON.parse(gone.stdout)).toBeNull();
    expect(fs.existsSync(img)).toBe(false);
    expect((await diskLs()).some((d) => d.role === 'writable-store' && d.vms[0] === 'builder-vm')).toBe(false);
    const none = await nixvm('disk', 'reset', 'builder-vm', '--yes');
    expect(none.exitCode).toBe(4);
    expect(none.stderr).toContain('No VM named "builder-vm"');
  });
});
