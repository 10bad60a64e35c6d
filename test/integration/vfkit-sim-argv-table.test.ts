/**
 * A table of tricky command lines, each with what vfkit does with it, worked out by reading
 * vfkit's code (pkg/cmdline, pkg/config, pkg/rest) and the Go it calls (pflag 1.0.10's uint
 * flags = strconv.ParseUint(s, 0, 64); net.ParseMAC; strconv.Atoi; net/url; gin's RunUnix =
 * net.Listen). The whole simulator executable runs each one: it must start the VM, or refuse with
 * exactly vfkit's last line and exit 1.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeClosure, spawnSim, VFKIT_SIM, type SimProcess } from '../vfkit-sim/harness.ts';

const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-simtable-')));
const closure = makeClosure(root, 'table');
const spawned: SimProcess[] = [];
afterAll(() => {
  for (const s of spawned) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

const RUNS = 'runs';
const disk = path.join(root, 'disk.img');
fs.writeFileSync(disk, Buffer.alloc(1 << 16));
const emptyDisk = path.join(root, 'empty.img');
fs.writeFileSync(emptyDisk, '');
const qcow = path.join(root, 'disk.qcow2');
fs.writeFileSync(qcow, Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(508)]));
const noDisk = path.join(root, 'no-such.img');
const twenty = '00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01';
const missingDirSocket = path.join(root, 'no-such-dir', 'rest.sock');
const cpus = (v: string, cause: string) =>
  `invalid argument "${v}" for "-c, --cpus" flag: strconv.ParseUint: parsing "${v}": ${cause}`;
const memory = (v: string, cause: string) =>
  `invalid argument "${v}" for "-m, --memory" flag: strconv.ParseUint: parsing "${v}": ${cause}`;

/** [what, extra argv, what vfkit does: RUNS or its last line]. */
const TABLE: [string, string[], string | RegExp][] = [
  ['cpus in binary', ['--cpus', '0b10'], RUNS],
  ['as many cpus as Virtualization.framework allows', ['--cpus', '64'], RUNS],
  ['cpus with an underscore', ['-c', '1_0'], RUNS],
  ['memory in hex with an underscore after the prefix', ['--memory', '0x_800'], RUNS],
  ['memory in octal, both spellings', ['-m', '0o2000', '-m=02000'], RUNS],
  ['memory with digit groups', ['--memory', '1_024'], RUNS],
  ['cpus with a leading underscore', ['--cpus', '_2'], cpus('_2', 'invalid syntax')],
  ['cpus with a trailing underscore', ['--cpus', '2_'], cpus('2_', 'invalid syntax')],
  ['cpus with doubled underscores', ['--cpus', '1__0'], cpus('1__0', 'invalid syntax')],
  ['cpus as a bare prefix', ['--cpus', '0x'], cpus('0x', 'invalid syntax')],
  ['cpus with an 8 in octal', ['--cpus', '08'], cpus('08', 'invalid syntax')],
  ['cpus with a sign', ['--cpus', '+2'], cpus('+2', 'invalid syntax')],
  ['memory past uint64', ['--memory', '18446744073709551616'], memory('18446744073709551616', 'value out of range')],
  ['an EUI-48 MAC with hyphens, upper case', ['--device', 'virtio-net,nat,mac=02-04-00-0A-00-01'], RUNS],
  ['an EUI-48 MAC with dots', ['--device', 'virtio-net,nat,mac=0204.000a.0001'], RUNS],
  ['an EUI-64 MAC', ['--device', 'virtio-net,nat,mac=02:00:5e:10:00:00:00:01'], RUNS],
  ['an EUI-64 MAC with dots', ['--device', 'virtio-net,nat,mac=0200.5e10.0000.0001'], RUNS],
  ['a 20-octet InfiniBand MAC', ['--device', `virtio-net,nat,mac=${twenty}`], RUNS],
  [
    'a 20-octet InfiniBand MAC with dots',
    ['--device', 'virtio-net,nat,mac=0000.0000.fe80.0000.0000.0000.0200.5e10.0000.0001'],
    RUNS,
  ],
  ['an nvme disk, read-only', ['--device', `nvme,path=${disk},readonly`], RUNS],
  [
    'two nvme disks and a virtio-blk one with a device id',
    [
      '--device',
      `nvme,path=${disk},readonly`,
      '--device',
      `nvme,path=${disk}`,
      '--device',
      `virtio-blk,path=${disk},deviceId=store`,
    ],
    RUNS,
  ],
  [
    'an nvme disk that does not exist',
    ['--device', `nvme,path=${noDisk}`],
    `stat ${noDisk}: no such file or directory`,
  ],
  ['an nvme disk without a path', ['--device', 'nvme,readonly'], "missing mandatory 'path' option for nvme device"],
  [
    'a virtio-blk disk that does not exist (vfkit opens it while parsing)',
    ['--device', `virtio-blk,path=${noDisk}`],
    `failed to open file ${noDisk}: open ${noDisk}: no such file or directory`,
  ],
  [
    'an empty virtio-blk image',
    ['--device', `virtio-blk,path=${emptyDisk}`],
    `failed to read the header of file ${emptyDisk}: EOF`,
  ],
  ['a qcow2 image on virtio-blk', ['--device', `virtio-blk,path=${qcow}`], 'vfkit does not support qcow2 image format'],
  [
    'readonly with a value (the message says virtio-blk for every disk)',
    ['--device', `nvme,path=${disk},readonly=yes`],
    "unexpected value for virtio-blk 'readonly' option: yes",
  ],
  [
    'a deviceId on nvme, which only virtio-blk takes',
    ['--device', `nvme,path=${disk},deviceId=x`],
    'unknown option for nvme devices: deviceId',
  ],
  [
    'a disk type vfkit does not know',
    ['--device', `nvme,path=${disk},type=raw`],
    "unexpected value for disk 'type' option: raw",
  ],
  ['an empty MAC', ['--device', 'virtio-net,nat,mac='], 'invalid MAC address'],
  [
    'a MAC with mixed separators',
    ['--device', 'virtio-net,nat,mac=02:04-00:0a:00:01'],
    'address 02:04-00:0a:00:01: invalid MAC address',
  ],
  [
    'a 7-octet MAC',
    ['--device', 'virtio-net,nat,mac=02:04:00:0a:00:01:02'],
    'address 02:04:00:0a:00:01:02: invalid MAC address',
  ],
  ['a gpu wider than 2^53', ['--device', 'virtio-gpu,width=9007199254740993,height=1080'], RUNS],
  ['a gpu with a plus sign', ['--device', 'virtio-gpu,width=+1920,height=1080'], RUNS],
  [
    'a gpu wider than int64',
    ['--device', 'virtio-gpu,width=9223372036854775808,height=1080'],
    'invalid value for virtio-gpu width: 9223372036854775808',
  ],
  [
    'a gpu height with an underscore',
    ['--device', 'virtio-gpu,width=1920,height=1_080'],
    'invalid value for virtio-gpu height: 1_080',
  ],
  ['an fd with an underscore', ['--device', 'virtio-net,fd=1_0'], 'strconv.Atoi: parsing "1_0": invalid syntax'],
  [
    'a REST host with a space',
    ['--restful-uri', 'tcp://local host:8080'],
    'parse "tcp://local host:8080": invalid character " " in host name',
  ],
  [
    'a REST host missing its bracket',
    ['--restful-uri', 'tcp://[::1:8080'],
    `parse "tcp://[::1:8080": missing ']' in host`,
  ],
  [
    'a REST host that is IPv4 in brackets',
    ['--restful-uri', 'tcp://[127.0.0.1]:8080'],
    'parse "tcp://[127.0.0.1]:8080": invalid IP-literal',
  ],
  [
    'a REST host with an ASCII escape',
    ['--restful-uri', 'tcp://local%68ost:8080'],
    'parse "tcp://local%68ost:8080": invalid URL escape "%68"',
  ],
  [
    'a REST port with letters',
    ['--restful-uri', 'tcp://localhost:80x'],
    'parse "tcp://localhost:80x": invalid port ":80x" after host',
  ],
  ['a REST unix socket with a host', ['--restful-uri', 'unix://host/x.sock'], 'invalid unix uri: host is forbidden'],
  [
    'a REST socket in a directory that does not exist',
    ['--restful-uri', `unix://${missingDirSocket}`],
    // logrus.Fatal(err) from the server goroutine: net.Listen's OpError, bind(2)'s ENOENT.
    new RegExp(
      `^time="[^"]+" level=fatal msg="listen unix ${missingDirSocket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: bind: no such file or directory"$`,
    ),
  ],
];

let seq = 0;
function argvFor(extra: string[]): string[] {
  const sock = path.join(root, `r${++seq}.sock`);
  return [
    VFKIT_SIM,
    '--bootloader',
    `linux,kernel=${closure}/kernel,initrd=${closure}/initrd,cmdline="console=hvc0"`,
    '--restful-uri',
    `unix://${sock}`,
    ...extra,
  ];
}

/** Run it until the VM is running (then kill it) or the simulator exits; what vfkit would show. */
async function outcome(extra: string[]): Promise<{ ran: boolean; code: number | null; last: string | undefined }> {
  const p = spawnSim(argvFor(extra), { NIXVM_SIM_BOOT_MS: '50' });
  spawned.push(p);
  const running = new Promise<'running'>((resolve) => {
    const onData = () => {
      if (p.stderr().includes('msg="virtual machine is running"')) {
        p.child.stderr!.off('data', onData);
        resolve('running');
      }
    };
    p.child.stderr!.on('data', onData);
  });
  const first = await Promise.race([running, p.exited]);
  if (first === 'running') {
    p.child.kill('SIGKILL');
    await p.exited;
    return { ran: true, code: null, last: undefined };
  }
  return { ran: false, code: first.code, last: p.stderr().trimEnd().split('\n').at(-1) };
}

describe.concurrent('tricky command lines, judged by vfkit’s own parser', () => {
  for (const [what, extra, want] of TABLE) {
    it(what, async () => {
      const got = await outcome(extra);
      if (want === RUNS) {
        expect(got, `vfkit accepts ${extra.join(' ')}`).toMatchObject({ ran: true });
      } else {
        expect(got.ran, `vfkit refuses ${extra.join(' ')}`).toBe(false);
        expect(got.code).toBe(1);
        if (typeof want === 'string') expect(got.last).toBe(want);
        else expect(got.last).toMatch(want);
      }
    });
  }
});
