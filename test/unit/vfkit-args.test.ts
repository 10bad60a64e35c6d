import { describe, expect, it } from 'vitest';
import type { VmSpec } from '../../src/api/types.ts';
import {
  deviceFacts,
  diskDeviceNames,
  guestDeviceName,
  MAX_MOUNT_TAG_BYTES,
  MAX_SOCKET_PATH_BYTES,
  planDisks,
  sameDevices,
  validateSpec,
  VfkitConfigError,
  vfkitArgv,
  type VfkitArgvInput,
} from '../../src/core/vm/vfkit-args.ts';
import type { VmRuntimePaths } from '../../src/core/vm/runtime-paths.ts';
// vfkit's own grammar, as the simulator re-implements it: what vfkit will make of our argv.
import { bootloaderFromCmdLine, deviceFromCmdLine } from '../vfkit-sim/config.ts';
import { parseFlags, checkFlagGroups } from '../vfkit-sim/flags.ts';
import { testSpec } from '../vfkit-sim/harness.ts';

const CLOSURE = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web-24.05';

function spec(over: Partial<VmSpec> = {}): VmSpec {
  return testSpec({
    drvPath: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web-24.05.drv',
    kernelParams: ['console=hvc0', 'loglevel=4'],
    cpus: 2,
    memoryMiB: 2048,
    ssh: { enabled: true, port: 22, user: 'me' },
    ...over,
  });
}

const PATHS: VmRuntimePaths = {
  dir: '/state/vms/web',
  pidfile: '/state/vms/web/vfkit.pid',
  restSocket: '/state/vms/web/rest.sock',
  logDir: '/logs/vms/web',
  consoleLog: '/logs/vms/web/console.log',
  bootRecord: '/state/vms/web/boot.json',
};

function input(over: Partial<VmSpec> = {}, rest: Partial<Omit<VfkitArgvInput, 'spec'>> = {}): VfkitArgvInput {
  return {
    vfkit: '/opt/homebrew/bin/vfkit',
    spec: spec(over),
    closure: CLOSURE,
    mac: '02:94:ef:00:0a:01',
    paths: PATHS,
    ...rest,
  };
}

const FULL: Partial<VmSpec> = {
  mountHostNixStore: true,
  shares: [
    { tag: 'src', source: '/Users/me/src', target: '/mnt/src' },
    { tag: 'data', source: '/Volumes/Data Disk/x=y', target: '/data' },
  ],
  rosetta: true,
  graphics: true,
  resolution: { width: 1920, height: 1080 },
};

/** The error vfkitArgv throws for this input (fails the test if it throws none). */
function refusal(i: VfkitArgvInput): VfkitConfigError {
  try {
    vfkitArgv(i);
  } catch (e) {
    expect(e).toBeInstanceOf(VfkitConfigError);
    const err = e as VfkitConfigError;
    // One sentence: starts with the VM, no line breaks, one final full stop.
    expect(err.message.startsWith(`Cannot start VM ${JSON.stringify(i.spec.name)}: `)).toBe(true);
    expect(err.message).not.toMatch(/\n/);
    expect(err.message.endsWith('.')).toBe(true);
    return err;
  }
  throw new Error('vfkitArgv accepted the input');
}

describe('vfkitArgv', () => {
  it('composes the exact argv for a VM with every device', () => {
    expect(vfkitArgv(input(FULL))).toEqual([
      '/opt/homebrew/bin/vfkit',
      '--cpus',
      '2',
      '--memory',
      '2048',
      '--bootloader',
      `linux,kernel=${CLOSURE}/kernel,initrd=${CLOSURE}/initrd,cmdline="console=hvc0 loglevel=4 init=${CLOSURE}/init"`,
      '--device',
      'virtio-net,nat,mac=02:94:ef:00:0a:01',
      '--device',
      'virtio-serial,pty',
      '--device',
      'virtio-rng',
      '--device',
      'virtio-fs,sharedDir=/nix/store,mountTag=nix-store',
      '--device',
      'virtio-fs,sharedDir=/Users/me/src,mountTag=src',
      '--device',
      'virtio-fs,sharedDir=/Volumes/Data Disk/x=y,mountTag=data',
      '--device',
      'rosetta,mountTag=rosetta',
      '--device',
      'virtio-gpu,width=1920,height=1080',
      '--device',
      'virtio-input,keyboard',
      '--device',
      'virtio-input,pointing',
      '--gui',
      '--restful-uri',
      'unix:///state/vms/web/rest.sock',
      '--pidfile',
      '/state/vms/web/vfkit.pid',
    ]);
  });

  it('leaves out what the VM does not use', () => {
    const argv = vfkitArgv(input());
    expect(
      argv.filter(
        (a) =>
          a.startsWith('virtio-fs') ||
          a.startsWith('rosetta') ||
          a.startsWith('virtio-gpu') ||
          a.startsWith('virtio-input'),
      ),
    ).toEqual([]);
    expect(argv).not.toContain('--gui');
    expect(argv.filter((a) => a === '--device')).toHaveLength(3);
  });

  it('is stable: same input, same argv; shares keep their configured order', () => {
    const a = vfkitArgv(input(FULL));
    expect(vfkitArgv(input(FULL))).toEqual(a);
    const swapped = vfkitArgv(input({ ...FULL, shares: [...FULL.shares!].reverse() }));
    expect(swapped.indexOf('virtio-fs,sharedDir=/Users/me/src,mountTag=src')).toBeGreaterThan(
      swapped.indexOf('virtio-fs,sharedDir=/Volumes/Data Disk/x=y,mountTag=data'),
    );
  });

  it('writes the MAC in the form Go parses: lower case, colons', () => {
    expect(vfkitArgv(input({}, { mac: '52-54-00-AB-0C-01' }))).toContain('virtio-net,nat,mac=52:54:00:ab:0c:01');
  });

  it('uses NixOS’s default resolution when graphics is on without one', () => {
    expect(vfkitArgv(input({ graphics: true }))).toContain('virtio-gpu,width=1024,height=768');
  });

  it('puts an empty kernelParams list down as just init=', () => {
    expect(vfkitArgv(input({ kernelParams: [] }))).toContain(
      `linux,kernel=${CLOSURE}/kernel,initrd=${CLOSURE}/initrd,cmdline="init=${CLOSURE}/init"`,
    );
  });

  it('produces values vfkit parses back to what was meant', () => {
    const argv = vfkitArgv(input({ ...FULL, kernelParams: ['console=hvc0', 'a=b,c', 'x=1'] }));
    const o = parseFlags(argv.slice(1));
    checkFlagGroups(o);
    expect(o.cpus).toBe(2);
    expect(o.memoryMiB).toBe(2048);
    expect(o.gui).toBe(true);
    expect(o.restfulUri).toBe('unix:///state/vms/web/rest.sock');
    expect(o.pidfile).toBe('/state/vms/web/vfkit.pid');
    expect(bootloaderFromCmdLine(o.bootloader)).toEqual({
      kind: 'linux',
      vmlinuzPath: `${CLOSURE}/kernel`,
      initrdPath: `${CLOSURE}/initrd`,
      // A comma inside the quoted command line survives vfkit's comma split.
      kernelCmdLine: `console=hvc0 a=b,c x=1 init=${CLOSURE}/init`,
    });
    const devs = o.devices.map(deviceFromCmdLine);
    expect(devs).toContainEqual({ type: 'virtio-fs', sharedDir: '/Volumes/Data Disk/x=y', mountTag: 'data' });
    expect(devs).toContainEqual({
      type: 'virtio-serial',
      logFile: '',
      usesStdio: false,
      usesPty: true,
      ptyName: '',
    });
    expect(devs).toContainEqual({ type: 'rosetta', mountTag: 'rosetta', install: false, ignoreIfMissing: false });
    expect(devs.find((d) => d.type === 'virtio-net')).toMatchObject({ nat: true, mac: '02:94:ef:00:0a:01' });
  });
});

describe('vfkitArgv refusals', () => {
  it('a comma in a shared directory path', () => {
    const e = refusal(input({ shares: [{ tag: 'src', source: '/Users/me/a,b', target: '/mnt' }] }));
    expect(e.message).toBe(
      'Cannot start VM "web": the shared directory "/Users/me/a,b" contains a comma, which vfkit\'s --device option cannot carry (it splits its value on every comma); rename the directory or share one without a comma in its path.',
    );
    expect(e.vm).toBe('web');
    expect(e.value).toBe('/Users/me/a,b');
  });

  it('a comma in a mount tag', () => {
    const e = refusal(input({ shares: [{ tag: 'a,b', source: '/src', target: '/mnt' }] }));
    expect(e.value).toBe('a,b');
    expect(e.message).toContain('the mount tag of the shared directory "/src" "a,b" contains a comma');
  });

  it('a comma in the closure (the console is a pty: its log path is not on the command line)', () => {
    const paths = { ...PATHS, consoleLog: '/logs,old/console.log' };
    expect(() => vfkitArgv(input({}, { paths }))).not.toThrow();
    expect(refusal(input({}, { closure: '/nix/store/x,y' })).message).toContain(
      'the system closure path "/nix/store/x,y" contains a comma, which vfkit\'s --bootloader option',
    );
  });

  it('a double quote in the kernel command line', () => {
    const e = refusal(input({ kernelParams: ['console=hvc0', 'foo="a b"'] }));
    expect(e.message).toBe(
      'Cannot start VM "web": the kernel parameter "foo=\\"a b\\"" contains a double quote, which vfkit\'s --bootloader option cannot carry (the command line is itself quoted there); remove the quotes from boot.kernelParams.',
    );
    expect(e.value).toBe('foo="a b"');
  });

  it('a mount tag over 36 bytes, counted in UTF-8 bytes not characters', () => {
    const ok = 'é'.repeat(18); // 36 bytes
    expect(() => vfkitArgv(input({ shares: [{ tag: ok, source: '/src', target: '/mnt' }] }))).not.toThrow();
    const long = 'é'.repeat(19); // 19 characters, 38 bytes
    const e = refusal(input({ shares: [{ tag: long, source: '/src', target: '/mnt' }] }));
    expect(e.message).toContain(
      `the mount tag "${long}" of the shared directory "/src" is 38 bytes long, more than the ${MAX_MOUNT_TAG_BYTES} bytes Virtualization.framework allows`,
    );
  });

  it('a mount tag used twice, nix-store and rosetta included', () => {
    const twice = refusal(
      input({
        shares: [
          { tag: 'src', source: '/a', target: '/a' },
          { tag: 'src', source: '/b', target: '/b' },
        ],
      }),
    );
    expect(twice.message).toBe(
      'Cannot start VM "web": the mount tag "src" is used by both the shared directory "/a" and the shared directory "/b"; give each share its own tag.',
    );
    const store = refusal(
      input({ mountHostNixStore: true, shares: [{ tag: 'nix-store', source: '/b', target: '/b' }] }),
    );
    expect(store.message).toContain(
      'the mount tag "nix-store" is used by both the host Nix store share and the shared directory "/b"',
    );
    const rosetta = refusal(input({ rosetta: true, shares: [{ tag: 'rosetta', source: '/b', target: '/b' }] }));
    expect(rosetta.message).toContain(
      'the mount tag "rosetta" is used by both the shared directory "/b" and the Rosetta share',
    );
    // Without the host store share the tag is free.
    expect(() => vfkitArgv(input({ shares: [{ tag: 'nix-store', source: '/b', target: '/b' }] }))).not.toThrow();
  });

  it('an empty mount tag', () => {
    expect(refusal(input({ shares: [{ tag: '', source: '/b', target: '/b' }] })).message).toContain(
      'the shared directory "/b" has an empty mount tag',
    );
  });

  it('a REST socket path over 103 bytes, or one Go’s URL parser would misread', () => {
    const long = `/${'x'.repeat(MAX_SOCKET_PATH_BYTES - 10)}/rest.sock`; // 104 bytes
    const e = refusal(input({}, { paths: { ...PATHS, restSocket: long } }));
    expect(e.message).toContain(
      `its REST socket path "${long}" is 104 bytes long, more than the 103 bytes macOS allows for a unix socket`,
    );
    const fits = `/${'x'.repeat(MAX_SOCKET_PATH_BYTES - 11)}/rest.sock`; // 103 bytes
    expect(() => vfkitArgv(input({}, { paths: { ...PATHS, restSocket: fits } }))).not.toThrow();
    expect(refusal(input({}, { paths: { ...PATHS, restSocket: '/state/100%/rest.sock' } })).message).toContain(
      'contains "%", which vfkit\'s --restful-uri would misread',
    );
    expect(refusal(input({}, { paths: { ...PATHS, restSocket: '/state/why?/rest.sock' } })).message).toContain(
      'contains "?"',
    );
  });

  it('fewer than one CPU', () => {
    expect(refusal(input({ cpus: 0 })).message).toBe(
      'Cannot start VM "web": it asks for 0 CPUs; set virtualisation.cores to a whole number of 1 or more.',
    );
    expect(refusal(input({ cpus: 1.5 })).value).toBe('1.5');
  });

  it('less than 128 MiB of memory', () => {
    expect(refusal(input({ memoryMiB: 64 })).message).toBe(
      'Cannot start VM "web": it asks for 64 MiB of memory, below the 128 MiB a NixOS guest needs; set virtualisation.memorySize to a whole number of 128 or more.',
    );
    expect(() => vfkitArgv(input({ memoryMiB: 128 }))).not.toThrow();
  });

  it('relative paths', () => {
    expect(refusal(input({ shares: [{ tag: 'src', source: 'src', target: '/mnt' }] })).message).toBe(
      'Cannot start VM "web": the shared directory "src" is not an absolute path; use an absolute source path in virtualisation.sharedDirectories.',
    );
    expect(refusal(input({}, { closure: 'result' })).message).toContain(
      'the system closure path "result" is not an absolute path',
    );
    expect(refusal(input({}, { paths: { ...PATHS, pidfile: 'vfkit.pid' } })).message).toContain(
      'the pidfile path "vfkit.pid" is not an absolute path',
    );
    expect(refusal(input({}, { paths: { ...PATHS, restSocket: 'rest.sock' } })).message).toContain(
      'the REST socket path "rest.sock" is not an absolute path',
    );
  });

  it('a MAC vfkit cannot parse or a NIC cannot use', () => {
    expect(refusal(input({}, { mac: '52:54:0:1:2:3' })).message).toContain(
      'the MAC address "52:54:0:1:2:3" is not six two-digit hex octets',
    );
    expect(refusal(input({}, { mac: '03:00:00:00:00:01' })).message).toContain('is a multicast address');
  });

  it('a display resolution below 1x1', () => {
    expect(refusal(input({ graphics: true, resolution: { width: 0, height: 768 } })).message).toContain(
      'the display resolution 0x768',
    );
  });

  it('a NUL byte, which no argv can carry', () => {
    expect(refusal(input({ kernelParams: ['a\0b'] })).message).toContain('contains a NUL byte');
  });

  it('names the VM even when its name needs quoting', () => {
    expect(refusal(input({ name: 'my "vm"', cpus: 0 })).message.startsWith('Cannot start VM "my \\"vm\\"": ')).toBe(
      true,
    );
  });
});

describe('validateSpec', () => {
  it('accepts a good spec and explains a bad one before anything is built', () => {
    expect(validateSpec(spec(FULL))).toBeNull();
    const e = validateSpec(spec({ ...FULL, shares: [{ tag: 'x'.repeat(37), source: '/src', target: '/mnt' }] }));
    expect(e).toBeInstanceOf(VfkitConfigError);
    expect(e!.message).toContain('is 37 bytes long');
    expect(validateSpec(spec({ macAddress: 'zz:zz' }))!.message).toContain('the MAC address "zz:zz"');
  });
});

describe('disks', () => {
  const STORE_IMG = '/state/images/abc-nixos-system-web.img';
  const WRITABLE = '/state/vms/web/store-writable.img';
  const seedBuilder: Partial<VmSpec> = {
    storeImage: true,
    writableStore: { sizeMiB: 20480, device: '/dev/nvme1n1' },
    guestMounts: [
      { target: '/nix/.ro-store', device: '/dev/disk/by-label/nix-store', fsType: 'erofs' },
      { target: '/nix/.rw-store', device: '/dev/disk/by-label/nix-store-write', fsType: 'ext4' },
    ],
  };

  it("attaches the store image read-only, then the writable store, in the seed's order and on its buses", () => {
    const s = spec(seedBuilder);
    const disks = planDisks(s, { storeImage: STORE_IMG, writable: WRITABLE });
    const argv = vfkitArgv(input(seedBuilder, { disks }));
    expect(argv.filter((a) => a.startsWith('nvme,') || a.startsWith('virtio-blk,'))).toEqual([
      `nvme,path=${STORE_IMG},readonly`,
      `nvme,path=${WRITABLE}`,
    ]);
    // Before the shares, as the seed's runner orders them.
    const shared = { ...seedBuilder, shares: [{ tag: 'src', source: '/src', target: '/src' }] };
    const withShare = vfkitArgv(input(shared, { disks }));
    expect(withShare.indexOf(`nvme,path=${WRITABLE}`)).toBeLessThan(
      withShare.indexOf('virtio-fs,sharedDir=/src,mountTag=src'),
    );
    expect(diskDeviceNames(disks)).toEqual(['/dev/nvme0n1', '/dev/nvme1n1']);
    // A guest whose repart names a virtio disk gets the writable store on virtio-blk.
    const vd = spec({ ...seedBuilder, writableStore: { sizeMiB: 1024, device: '/dev/vda' } });
    const vdDisks = planDisks(vd, { storeImage: STORE_IMG, writable: WRITABLE });
    expect(vdDisks.map((d) => `${d.bus}:${d.role}`)).toEqual(['nvme:nix-store', 'virtio-blk:writable-store']);
    expect(vfkitArgv(input(vd, { disks: vdDisks }))).toContain(`virtio-blk,path=${WRITABLE}`);
    expect(diskDeviceNames(vdDisks)).toEqual(['/dev/nvme0n1', '/dev/vda']);
    expect([0, 25, 26, 27].map((i) => guestDeviceName('virtio-blk', i))).toEqual([
      '/dev/vda',
      '/dev/vdz',
      '/dev/vdaa',
      '/dev/vdab',
    ]);
  });

  it('gives vfkit disk values it parses back as meant', () => {
    const disks = planDisks(spec(seedBuilder), { storeImage: STORE_IMG, writable: WRITABLE });
    const o = parseFlags(vfkitArgv(input(seedBuilder, { disks })).slice(1));
    const nvme = o.devices.filter((d) => d.startsWith('nvme,')).map(deviceFromCmdLine);
    expect(nvme).toEqual([
      { type: 'nvme', imagePath: STORE_IMG, diskType: '', readOnly: true, deviceId: '' },
      { type: 'nvme', imagePath: WRITABLE, diskType: '', readOnly: false, deviceId: '' },
    ]);
  });

  it('refuses a comma or a relative path in an image path', () => {
    const s = spec(seedBuilder);
    const comma = planDisks(s, { storeImage: '/state,x/images/a.img', writable: WRITABLE });
    expect(refusal(input(seedBuilder, { disks: comma })).message).toBe(
      'Cannot start VM "web": the Nix store image "/state,x/images/a.img" contains a comma, which vfkit\'s --device option cannot carry (it splits its value on every comma); use a state directory (NIXVM_STATE_DIR) without commas.',
    );
    const rel = planDisks(s, { storeImage: STORE_IMG, writable: 'store-writable.img' });
    expect(refusal(input(seedBuilder, { disks: rel })).message).toContain(
      'the writable store image "store-writable.img" is not an absolute path',
    );
    const rw = [{ role: 'nix-store' as const, bus: 'nvme' as const, path: STORE_IMG, readOnly: false }];
    expect(refusal(input({ storeImage: true }, { disks: rw })).message).toContain('must be attached read-only');
  });

  it('refuses a guest that mounts a tag or disk it would not be given (it would stop in emergency mode)', () => {
    const e = refusal(
      input({
        shares: [{ tag: 'xchg', source: '/tmp/x', target: '/tmp/xchg' }],
        guestMounts: [
          { target: '/tmp/xchg', device: 'xchg', fsType: 'virtiofs' },
          { target: '/tmp/shared', device: 'shared', fsType: 'virtiofs' },
        ],
      }),
    );
    expect(e.message).toBe(
      'Cannot start VM "web": its guest mounts the virtio-fs tag "shared" at /tmp/shared (fileSystems."/tmp/shared"), but the VM has no share with that tag, so the guest would stop in emergency mode; add it to virtualisation.sharedDirectories or remove the mount.',
    );
    // The host store and Rosetta shares count; so does a Rosetta tag of the guest's choosing.
    expect(() =>
      vfkitArgv(
        input({
          mountHostNixStore: true,
          rosetta: true,
          rosettaTag: 'rosetta-x',
          guestMounts: [
            { target: '/nix/.ro-store', device: 'nix-store', fsType: 'virtiofs' },
            { target: '/run/rosetta', device: 'rosetta-x', fsType: 'virtiofs' },
          ],
        }),
      ),
    ).not.toThrow();
    const noImage = refusal(
      input({ guestMounts: [{ target: '/nix/.ro-store', device: '/dev/disk/by-label/nix-store', fsType: 'erofs' }] }),
    );
    expect(noImage.message).toContain('only with virtualisation.useNixStoreImage = true');
    // The seed with the store image off: its repart still names nvme1n1, where there is no disk.
    const plain = spec({ writableStore: { sizeMiB: 1024, device: '/dev/nvme1n1' } });
    const disks = planDisks(plain, { storeImage: null, writable: WRITABLE });
    expect(refusal(input(plain, { disks })).message).toBe(
      'Cannot start VM "web": its guest formats its writable store on /dev/nvme1n1 (boot.initrd.systemd.repart.device), but nixvm attaches the writable store image as /dev/nvme0n1 (after no other disk); set boot.initrd.systemd.repart.device = "/dev/nvme0n1".',
    );
    expect(validateSpec(plain)!.message).toContain('/dev/nvme0n1');
  });

  it('counts the disks among the device facts (a disk change needs a restart), and reads older records', () => {
    const s = spec(seedBuilder);
    const with2 = deviceFacts(s, '02:94:ef:00:0a:01', planDisks(s, { storeImage: STORE_IMG, writable: WRITABLE }));
    expect(with2.disks).toEqual([
      { role: 'nix-store', bus: 'nvme', readOnly: true },
      { role: 'writable-store', bus: 'nvme', readOnly: false },
    ]);
    // The store image's path follows the closure: it is not a fact of its own.
    const other = deviceFacts(s, '02:94:ef:00:0a:01', planDisks(s, { storeImage: '/else.img', writable: WRITABLE }));
    expect(sameDevices(with2, other)).toBe(true);
    const none = deviceFacts(spec(), '02:94:ef:00:0a:01');
    expect(sameDevices(with2, none)).toBe(false);
    // A record written before disks and Rosetta tags were facts compares as none and "rosetta".
    const { disks: _d, rosettaTag: _t, ...old } = none;
    expect(sameDevices(old, none)).toBe(true);
  });
});

// Issue 16 (Low): `cores = 1000000000` reached vfkit.
describe('resources a host can give', () => {
  it('refuses more CPUs or memory than this Mac has, with one sentence saying how much it has', () => {
    const mac = { cpus: 8, memoryMiB: 16384, source: 'host' as const };
    expect(validateSpec(spec({ cpus: 8, memoryMiB: 16384 }), mac)).toBeNull();
    expect(validateSpec(spec({ cpus: 9 }), mac)!.message).toBe(
      'Cannot start VM "web": it asks for 9 CPUs, more than this Mac has (8), and Virtualization.framework gives a VM no more than the Mac has; set virtualisation.cores to 8 or fewer.',
    );
    expect(validateSpec(spec({ memoryMiB: 32768 }), mac)!.message).toBe(
      'Cannot start VM "web": it asks for 32768 MiB of memory, more than this Mac has (16384 MiB), and Virtualization.framework gives a VM no more than the Mac has; set virtualisation.memorySize to 16384 or less.',
    );
  });

  it('refuses what Virtualization.framework never allows wherever the agent runs', () => {
    expect(validateSpec(spec({ cpus: 1_000_000_000 }))!.message).toMatch(
      /^Cannot start VM "web": it asks for 1000000000 CPUs, more than (this Mac has \(\d+\)|Virtualization\.framework allows \(64\)); set virtualisation\.cores to \d+ or fewer\.$/,
    );
    expect(() => vfkitArgv(input({ cpus: 1_000_000_000 }))).toThrow(/1000000000 CPUs/);
  });
});
