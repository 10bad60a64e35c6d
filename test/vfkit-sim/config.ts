/**
 * vfkit's pkg/config, re-learned: the bootloader and every device it knows, parsed from the command
 * line with its rules (device values split on every comma, no quoting; `key=value` split on the
 * first `=`; empty elements skipped) and its exact error texts, plus the JSON each one becomes in
 * `GET /vm/inspect` (field names, order and omitempty as Go's encoding/json writes them).
 */
import fs from 'node:fs';
import { atoi, parseIntGo, parseUintGo } from './strconv.ts';

export interface Option {
  key: string;
  value: string;
}

/** A configuration error: the message is vfkit's. */
export class ConfigError extends Error {}

function fail(msg: string): never {
  throw new ConfigError(msg);
}

/** Go's `%s` of a []option. */
function fmtOptions(opts: Option[]): string {
  return `[${opts.map((o) => `{${o.key} ${o.value}}`).join(' ')}]`;
}

export function strvToOptions(strv: string[]): Option[] {
  return strv
    .filter((s) => s.length > 0)
    .map((s) => {
      const i = s.indexOf('=');
      return i < 0 ? { key: s, value: '' } : { key: s.slice(0, i), value: s.slice(i + 1) };
    });
}

/** Go's os error text, e.g. "open /x: no such file or directory". */
export function goPathError(op: string, p: string, e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const text: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    ENOTDIR: 'not a directory',
    EISDIR: 'is a directory',
    ELOOP: 'too many levels of symbolic links',
    ENAMETOOLONG: 'file name too long',
  };
  return `${op} ${p}: ${(code && text[code]) ?? (e as Error).message}`;
}

/**
 * net.ParseMAC: 6, 8 or 20 octets (EUI-48, EUI-64, IP over InfiniBand), as xx:xx:…, xx-xx-… or
 * xxxx.xxxx.…; returned as HardwareAddr.String() writes it (lowercase, colons).
 */
export function parseMac(s: string): string {
  // AddrError: "address <s>: invalid MAC address", without the "address" part for an empty one.
  const bad = () => fail(s === '' ? 'invalid MAC address' : `address ${s}: invalid MAC address`);
  const hex2 = (t: string) => /^[0-9a-fA-F]{2}$/.test(t);
  const octets: string[] = [];
  if (s.length < 14) return bad();
  if (s[2] === ':' || s[2] === '-') {
    if ((s.length + 1) % 3 !== 0) return bad();
    const n = (s.length + 1) / 3;
    if (n !== 6 && n !== 8 && n !== 20) return bad();
    for (let i = 0, x = 0; i < n; i++, x += 3) {
      // Every separator must be the first one.
      if (!hex2(s.slice(x, x + 2)) || (x + 2 < s.length && s[x + 2] !== s[2])) return bad();
      octets.push(s.slice(x, x + 2));
    }
  } else if (s[4] === '.') {
    if ((s.length + 1) % 5 !== 0) return bad();
    const n = (2 * (s.length + 1)) / 5;
    if (n !== 6 && n !== 8 && n !== 20) return bad();
    for (let i = 0, x = 0; i < n; i += 2, x += 5) {
      if (!hex2(s.slice(x, x + 2)) || !hex2(s.slice(x + 2, x + 4))) return bad();
      if (x + 4 < s.length && s[x + 4] !== '.') return bad();
      octets.push(s.slice(x, x + 2), s.slice(x + 2, x + 4));
    }
  } else return bad();
  return octets.map((o) => o.toLowerCase()).join(':');
}

// ---------------------------------------------------------------- bootloaders

export interface LinuxBootloader {
  kind: 'linux';
  vmlinuzPath: string;
  kernelCmdLine: string;
  initrdPath: string;
}
export interface EfiBootloader {
  kind: 'efi';
  efiVariableStorePath: string;
  createVariableStore: boolean;
}
export interface MacosBootloader {
  kind: 'macos';
  machineIdentifierPath: string;
  hardwareModelPath: string;
  auxImagePath: string;
}
export type Bootloader = LinuxBootloader | EfiBootloader | MacosBootloader;

const trimQuotes = (s: string) => (s.startsWith('"') && s.endsWith('"') ? s.replace(/^"+|"+$/g, '') : s);

export function bootloaderFromCmdLine(strv: string[]): Bootloader {
  if (strv.length < 1) fail('empty option list in --bootloader command line argument');
  const type = strv[0]!;
  const opts = strvToOptions(strv.slice(1));
  switch (type) {
    case 'linux': {
      const b: LinuxBootloader = { kind: 'linux', vmlinuzPath: '', kernelCmdLine: '', initrdPath: '' };
      for (const o of opts) {
        if (o.key === 'kernel') b.vmlinuzPath = o.value;
        else if (o.key === 'cmdline') b.kernelCmdLine = trimQuotes(o.value);
        else if (o.key === 'initrd') b.initrdPath = o.value;
        else fail(`unknown option for Linux bootloaders: ${o.key}`);
      }
      return b;
    }
    case 'efi': {
      const b: EfiBootloader = { kind: 'efi', efiVariableStorePath: '', createVariableStore: false };
      for (const o of opts) {
        if (o.key === 'variable-store') b.efiVariableStorePath = o.value;
        else if (o.key === 'create') {
          if (o.value !== '') fail(`unexpected value for EFI bootloader 'create' option: ${o.value}`);
          b.createVariableStore = true;
        } else fail(`unknown option for EFI bootloaders: ${o.key}`);
      }
      return b;
    }
    case 'macos': {
      const b: MacosBootloader = { kind: 'macos', machineIdentifierPath: '', hardwareModelPath: '', auxImagePath: '' };
      for (const o of opts) {
        if (o.key === 'machineIdentifierPath') b.machineIdentifierPath = o.value;
        else if (o.key === 'hardwareModelPath') b.hardwareModelPath = o.value;
        else if (o.key === 'auxImagePath') b.auxImagePath = o.value;
        else fail(`unknown option for macOS bootloaders: ${o.key}`);
      }
      return b;
    }
    default:
      return fail(`unknown bootloader type: ${type}`);
  }
}

export function bootloaderJson(b: Bootloader): Record<string, unknown> {
  switch (b.kind) {
    case 'linux':
      return {
        kind: 'linuxBootloader',
        vmlinuzPath: b.vmlinuzPath,
        kernelCmdLine: b.kernelCmdLine,
        initrdPath: b.initrdPath,
      };
    case 'efi':
      return {
        kind: 'efiBootloader',
        efiVariableStorePath: b.efiVariableStorePath,
        createVariableStore: b.createVariableStore,
      };
    case 'macos':
      // No MarshalJSON for this one in vfkit: plain fields, no "kind".
      return {
        machineIdentifierPath: b.machineIdentifierPath,
        hardwareModelPath: b.hardwareModelPath,
        auxImagePath: b.auxImagePath,
      };
  }
}

// ---------------------------------------------------------------- devices

export interface VirtioNet {
  type: 'virtio-net';
  nat: boolean;
  mac: string;
  fd: number | null;
  unixSocketPath: string;
  vfkitMagic: boolean;
}
export interface VirtioSerial {
  type: 'virtio-serial';
  logFile: string;
  usesStdio: boolean;
  usesPty: boolean;
  ptyName: string;
}
export interface VirtioRng {
  type: 'virtio-rng';
}
export interface VirtioBalloon {
  type: 'virtio-balloon';
}
export interface VirtioFs {
  type: 'virtio-fs';
  sharedDir: string;
  mountTag: string;
}
export interface Rosetta {
  type: 'rosetta';
  mountTag: string;
  install: boolean;
  ignoreIfMissing: boolean;
}
/** virtio-blk, nvme and usb-mass-storage: a disk image. */
export interface Disk {
  type: 'virtio-blk' | 'nvme' | 'usb-mass-storage';
  imagePath: string;
  diskType: '' | 'image' | 'dev';
  readOnly: boolean;
  deviceId: string;
}
export interface Nbd {
  type: 'nbd';
  uri: string;
  readOnly: boolean;
  deviceId: string;
  timeoutMs: number;
  sync: 'full' | 'none';
}
export interface VirtioGpu {
  type: 'virtio-gpu';
  /** Go ints: BigInt, since they may exceed 2^53. */
  width: bigint;
  height: bigint;
  usesGUI: boolean;
}
export interface VirtioInput {
  type: 'virtio-input';
  inputType: string;
}
export interface VirtioVsock {
  type: 'virtio-vsock';
  port: number;
  socketURL: string;
  listen: boolean;
}
export type Device =
  | VirtioNet
  | VirtioSerial
  | VirtioRng
  | VirtioBalloon
  | VirtioFs
  | Rosetta
  | Disk
  | Nbd
  | VirtioGpu
  | VirtioInput
  | VirtioVsock;

function diskFromOptions(d: Disk, opts: Option[]): void {
  for (const o of opts) {
    switch (o.key) {
      case 'path':
        d.imagePath = o.value;
        break;
      case 'type':
        if (!['', 'image', 'dev'].includes(o.value)) fail(`unexpected value for disk 'type' option: ${o.value}`);
        d.diskType = o.value as Disk['diskType'];
        break;
      case 'readonly':
        if (o.value !== '') fail(`unexpected value for virtio-blk 'readonly' option: ${o.value}`);
        d.readOnly = true;
        break;
      default:
        fail(`unknown option for ${d.type} devices: ${o.key}`);
    }
  }
}

/** VirtioBlk.validate(): vfkit opens the image at parse time and refuses qcow2. */
function validateBlk(d: Disk): void {
  let fd: number;
  try {
    fd = fs.openSync(d.imagePath, 'r');
  } catch (e) {
    fail(`failed to open file ${d.imagePath}: ${goPathError('open', d.imagePath, e)}`);
  }
  try {
    const header = Buffer.alloc(4);
    let n: number;
    try {
      n = fs.readSync(fd, header, 0, 4, 0);
    } catch (e) {
      fail(`failed to read the header of file ${d.imagePath}: ${goPathError('read', d.imagePath, e)}`);
    }
    if (n === 0) fail(`failed to read the header of file ${d.imagePath}: EOF`);
    if (n === 4 && header.equals(Buffer.from('QFI\xfb', 'latin1'))) fail('vfkit does not support qcow2 image format');
  } finally {
    fs.closeSync(fd);
  }
}

export function deviceFromCmdLine(value: string): Device {
  const strv = value.split(',');
  const type = strv[0]!;
  const opts = strvToOptions(strv.slice(1));
  switch (type) {
    case 'virtio-net': {
      const d: VirtioNet = { type, nat: false, mac: '', fd: null, unixSocketPath: '', vfkitMagic: false };
      let hasType = false;
      const typeOnly: string[] = [];
      if (opts.some((o) => o.key === 'path' || o.key === 'unixSocketPath')) d.vfkitMagic = true;
      for (const o of opts) {
        switch (o.key) {
          case 'nat':
            if (o.value !== '') fail(`unexpected value for virtio-net 'nat' option: ${o.value}`);
            d.nat = true;
            break;
          case 'mac':
            d.mac = parseMac(o.value);
            break;
          case 'fd': {
            const r = atoi(o.value);
            if ('error' in r) return fail(r.error);
            if (r.value < 0n || r.value > 2147483647n) fail(`invalid file descriptor: ${r.value}`);
            d.fd = Number(r.value);
            break;
          }
          case 'unixSocketPath':
            d.unixSocketPath = o.value;
            break;
          case 'type':
            if (o.value !== 'unixgram') fail(`unsupported virtio-net type: ${o.value} (only 'unixgram' is supported)`);
            hasType = true;
            break;
          case 'path':
            d.unixSocketPath = o.value;
            typeOnly.push(o.key);
            break;
          case 'vfkitMagic':
            if (o.value !== 'on' && o.value !== 'off')
              fail(`invalid value for vfkitMagic: ${o.value} (expected on/off)`);
            d.vfkitMagic = o.value === 'on';
            break;
          case 'offloading':
            if (o.value !== 'off') fail(`invalid value for offloading: ${o.value} (only 'off' is supported)`);
            typeOnly.push(o.key);
            break;
          default:
            fail(`unknown option for virtio-net devices: ${o.key}`);
        }
      }
      if (hasType && d.unixSocketPath === '') fail("'type' option requires 'path' to be specified");
      if (!hasType && typeOnly.length > 0) fail(`'${typeOnly[0]}' option requires 'type' to be specified`);
      if (d.nat && d.fd !== null) fail("'nat' and 'fd' cannot be set at the same time");
      if (d.nat && d.unixSocketPath !== '') fail("'nat' and 'unixSocketPath' cannot be set at the same time");
      if (d.fd !== null && d.unixSocketPath !== '') fail("'fd' and 'unixSocketPath' cannot be set at the same time");
      if (!d.nat && d.fd === null && d.unixSocketPath === '')
        fail("one of 'nat' or 'fd' or 'unixSocketPath' must be set");
      return d;
    }
    case 'virtio-serial': {
      const d: VirtioSerial = { type, logFile: '', usesStdio: false, usesPty: false, ptyName: '' };
      for (const o of opts) {
        if (o.key === 'logFilePath') d.logFile = o.value;
        else if (o.key === 'stdio') {
          if (o.value !== '') fail(`unexpected value for virtio-serial 'stdio' option: ${o.value}`);
          d.usesStdio = true;
        } else if (o.key === 'pty') d.usesPty = true;
        else fail(`unknown option for virtio-serial devices: ${o.key}`);
      }
      if (d.logFile !== '' && d.usesStdio) fail("'logFilePath' and 'stdio' cannot be set at the same time");
      if (d.logFile !== '' && d.usesPty) fail("'logFilePath' and 'pty' cannot be set at the same time");
      if (d.usesStdio && d.usesPty) fail("'stdio' and 'pty' cannot be set at the same time");
      if (d.logFile === '' && !d.usesStdio && !d.usesPty) fail("one of 'logFilePath', 'stdio' or 'pty' must be set");
      return d;
    }
    case 'virtio-rng':
      if (opts.length !== 0) fail(`unknown options for virtio-rng devices: ${fmtOptions(opts)}`);
      return { type };
    case 'virtio-balloon':
      if (opts.length !== 0) fail(`unknown options for virtio-balloon devices: ${fmtOptions(opts)}`);
      return { type };
    case 'virtio-fs': {
      const d: VirtioFs = { type, sharedDir: '', mountTag: '' };
      for (const o of opts) {
        if (o.key === 'sharedDir') d.sharedDir = o.value;
        else if (o.key === 'mountTag') d.mountTag = o.value;
        else fail(`unknown option for virtio-fs devices: ${o.key}`);
      }
      return d;
    }
    case 'rosetta': {
      const d: Rosetta = { type, mountTag: '', install: false, ignoreIfMissing: false };
      for (const o of opts) {
        if (o.key === 'mountTag') d.mountTag = o.value;
        else if (o.key === 'install') d.install = true;
        else if (o.key === 'ignore-if-missing') d.ignoreIfMissing = true;
        else fail(`unknown option for rosetta share: ${o.key}`);
      }
      return d;
    }
    case 'virtio-blk': {
      const d: Disk = { type, imagePath: '', diskType: '', readOnly: false, deviceId: '' };
      const rest: Option[] = [];
      for (const o of opts) {
        if (o.key === 'deviceId') d.deviceId = o.value;
        else rest.push(o);
      }
      diskFromOptions(d, rest);
      validateBlk(d);
      return d;
    }
    case 'nvme':
    case 'usb-mass-storage': {
      const d: Disk = { type, imagePath: '', diskType: '', readOnly: false, deviceId: '' };
      diskFromOptions(d, opts);
      return d;
    }
    case 'nbd': {
      const d: Nbd = { type, uri: '', readOnly: false, deviceId: '', timeoutMs: 15000, sync: 'full' };
      for (const o of opts) {
        switch (o.key) {
          case 'deviceId':
            d.deviceId = o.value;
            break;
          case 'timeout': {
            const r = parseIntGo(o.value, 10, 32);
            if ('error' in r) return fail(r.error);
            d.timeoutMs = Number(r.value);
            break;
          }
          case 'sync':
            if (o.value !== 'full' && o.value !== 'none')
              fail(`invalid sync mode: ${o.value}, must be 'full' or 'none'`);
            d.sync = o.value as Nbd['sync'];
            break;
          case 'uri':
            d.uri = o.value;
            break;
          case 'readonly':
            if (o.value !== '') fail(`unexpected value for virtio-blk 'readonly' option: ${o.value}`);
            d.readOnly = true;
            break;
          default:
            fail(`unknown option for nbd devices: ${o.key}`);
        }
      }
      return d;
    }
    case 'virtio-gpu': {
      const d: VirtioGpu = { type, width: 0n, height: 0n, usesGUI: false };
      for (const o of opts) {
        if (o.key === 'width' || o.key === 'height') {
          // strconv.Atoi: a Go int (int64), so far past 2^53.
          const r = atoi(o.value);
          if ('error' in r || r.value < 1n) return fail(`invalid value for virtio-gpu ${o.key}: ${o.value}`);
          d[o.key] = r.value;
        } else fail(`unknown option for virtio-gpu devices: ${o.key}`);
      }
      if (d.width === 0n && d.height === 0n) [d.width, d.height] = [800n, 600n];
      if (d.width < 1n || d.height < 1n)
        fail(`invalid dimensions for virtio-gpu device resolution: ${d.width}x${d.height}`);
      return d;
    }
    case 'virtio-input': {
      const d: VirtioInput = { type, inputType: '' };
      for (const o of opts) {
        if (o.key === 'pointing' || o.key === 'keyboard') {
          if (o.value !== '') fail(`unexpected value for virtio-input ${o.key} option: ${o.value}`);
          d.inputType = o.key;
        } else fail(`unknown option for virtio-input devices: ${o.key}`);
      }
      if (d.inputType !== 'pointing' && d.inputType !== 'keyboard')
        fail(`unknown option for virtio-input devices: ${d.inputType}`);
      return d;
    }
    case 'virtio-vsock': {
      // Listens by default, for backwards compatibility.
      const d: VirtioVsock = { type, port: 0, socketURL: '', listen: true };
      for (const o of opts) {
        if (o.key === 'socketURL') d.socketURL = o.value;
        else if (o.key === 'port') {
          const r = parseUintGo(o.value, 10, 32);
          if ('error' in r) fail(r.error);
          else d.port = Number(r.value);
        } else if (o.key === 'listen') d.listen = true;
        else if (o.key === 'connect') d.listen = false;
        else fail(`unknown option for virtio-vsock devices: ${o.key}`);
      }
      return d;
    }
    default:
      return fail(`unknown device type: ${type}`);
  }
}

/** The device as `GET /vm/inspect` shows it (vfkit's MarshalJSON: "kind" first, then the fields). */
export function deviceJson(d: Device): Record<string, unknown> {
  const j: Record<string, unknown> = {};
  switch (d.type) {
    case 'virtio-net':
      j.kind = 'virtionet';
      j.nat = d.nat;
      if (d.fd !== null) j.socket = {};
      if (d.unixSocketPath) j.unixSocketPath = d.unixSocketPath;
      if (d.vfkitMagic && d.unixSocketPath) j.vfkitMagic = true;
      if (d.mac) j.macAddress = d.mac;
      return j;
    case 'virtio-serial':
      j.kind = 'virtioserial';
      if (d.logFile) j.logFile = d.logFile;
      if (d.usesStdio) j.usesStdio = true;
      if (d.usesPty) j.usesPty = true;
      if (d.ptyName) j.ptyName = d.ptyName;
      return j;
    case 'virtio-rng':
      return { kind: 'virtiorng' };
    case 'virtio-balloon':
      return { kind: 'virtioballoon' };
    case 'virtio-fs':
      return { kind: 'virtiofs', mountTag: d.mountTag, sharedDir: d.sharedDir };
    case 'rosetta':
      return { kind: 'rosetta', mountTag: d.mountTag, installRosetta: d.install, ignoreIfMissing: d.ignoreIfMissing };
    case 'virtio-blk':
    case 'nvme':
    case 'usb-mass-storage':
      j.kind = { 'virtio-blk': 'virtioblk', nvme: 'nvme', 'usb-mass-storage': 'usbmassstorage' }[d.type];
      j.devName = d.type;
      if (d.readOnly) j.readOnly = true;
      if (d.imagePath) j.imagePath = d.imagePath;
      if (d.diskType) j.type = d.diskType;
      if (d.type === 'virtio-blk' && d.deviceId) j.deviceIdentifier = d.deviceId;
      return j;
    case 'nbd':
      j.kind = 'nbd';
      j.devName = 'nbd';
      if (d.readOnly) j.readOnly = true;
      if (d.uri) j.uri = d.uri;
      // These three have no json tags in vfkit, so Go uses the field names; Timeout is nanoseconds.
      j.DeviceIdentifier = d.deviceId;
      j.Timeout = d.timeoutMs * 1_000_000;
      j.SynchronizationMode = d.sync;
      return j;
    case 'virtio-gpu':
      return { kind: 'virtiogpu', usesGUI: d.usesGUI, width: d.width, height: d.height };
    case 'virtio-input':
      return { kind: 'virtioinput', inputType: d.inputType };
    case 'virtio-vsock':
      j.kind = 'virtiosock';
      j.port = d.port;
      j.socketURL = d.socketURL;
      if (d.listen) j.listen = true;
      return j;
  }
}

// ---------------------------------------------------------------- other top-level options

export function timesyncFromCmdLine(s: string): { vsockPort: number } {
  let port = 0;
  for (const o of strvToOptions(s.split(','))) {
    if (o.key !== 'vsockPort') fail(`unknown option for timesync parameter: ${o.key}`);
    const r = parseUintGo(o.value, 10, 32);
    if ('error' in r) fail(r.error);
    else port = Number(r.value);
  }
  if (port === 0) fail("missing 'vsockPort' option for timesync parameter");
  return { vsockPort: port };
}

export function ignitionFromCmdLine(s: string): { configPath: string } {
  const parts = s.split(',');
  if (parts.length !== 1)
    fail('failed to add ignition file: ignition only accepts one option in command line argument');
  return { configPath: parts[0]! };
}
