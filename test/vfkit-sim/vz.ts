/**
 * The checks that happen after vfkit has parsed its command line: pkg/vf turning the config into
 * Virtualization.framework objects (files opened and stat'ed, mount tags validated, Rosetta
 * availability), the framework's own configuration validation, and pkg/rest's --restful-uri rules.
 *
 * The simulated host is an Apple-silicon Mac (the one Rosetta needs): the kernel is opened and
 * sniffed like vfkit does on arm64. Texts marked "approximated" are Apple's, which vfkit passes
 * through and which are not in any source we can read; the rest are vfkit's and Go's own.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { SimPty } from './pty.ts';
import { ConfigError, goPathError, type Bootloader, type Device, type Rosetta } from './config.ts';
import { goQuote } from './flags.ts';
import { log } from './log.ts';

function fail(msg: string): never {
  throw new ConfigError(msg);
}

/** vz's NSError.Error(): "Error Domain=… Code=… Description=%q UserInfo=…". */
export function nsError(domain: string, code: number, failure: string, reason: string): string {
  const plist = (s: string) =>
    JSON.stringify(s).replace(/[^\x00-\x7f]/g, (c) => `\\U${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const description = reason ? `${failure} ${reason}` : failure;
  const info = [
    `    NSLocalizedFailure = ${plist(failure)};`,
    ...(reason ? [`    NSLocalizedFailureReason = ${plist(reason)};`] : []),
  ];
  return `Error Domain=${domain} Code=${code} Description=${goQuote(description)} UserInfo={\n${info.join('\n')}\n}`;
}

const invalidConfig = (reason: string) => nsError('VZErrorDomain', 2, 'Invalid virtual machine configuration.', reason);

/** [VZVirtioFileSystemDeviceConfiguration validateTag:] (the over-long text is Apple's, seen in the wild). */
function validateTag(tag: string): void {
  if (Buffer.byteLength(tag, 'utf8') > 36) {
    fail(
      invalidConfig(
        `The Virtio file system device “tag” cannot exceed 36 bytes when encoded in UTF-8. The tag “${tag}” is invalid`,
      ),
    );
  }
  // approximated
  if (tag === '') fail(invalidConfig('The Virtio file system device “tag” cannot be empty.'));
}

export interface HostFaults {
  /** NIXVM_SIM_FAIL=rosetta: Rosetta is not installed on this Mac. */
  rosettaMissing: boolean;
  /** NIXVM_SIM_FAIL=compressed-kernel: the kernel is a compressed image. */
  compressedKernel: boolean;
}

/** pkg/vf toVzBootloader on arm64. */
export function checkBootloader(b: Bootloader, faults: HostFaults): void {
  switch (b.kind) {
    case 'linux': {
      // isKernelUncompressed: open, read 2048 bytes, look for the arm64 Image magic.
      let fd: number;
      try {
        fd = fs.openSync(b.vmlinuzPath, 'r');
      } catch (e) {
        fail(goPathError('open', b.vmlinuzPath, e));
      }
      try {
        if (fs.readSync(fd, Buffer.alloc(2048), 0, 2048, 0) === 0) fail('EOF');
      } catch (e) {
        if (e instanceof ConfigError) throw e;
        fail(goPathError('read', b.vmlinuzPath, e));
      } finally {
        fs.closeSync(fd);
      }
      if (faults.compressedKernel) fail(`kernel must be uncompressed, ${b.vmlinuzPath} is a compressed file`);
      // vz.NewLinuxBootLoader and WithInitrd stat their files.
      try {
        fs.statSync(b.vmlinuzPath);
      } catch (e) {
        fail(`invalid linux kernel path: ${goPathError('stat', b.vmlinuzPath, e)}`);
      }
      try {
        fs.statSync(b.initrdPath);
      } catch (e) {
        fail(`invalid initial RAM disk path: ${goPathError('stat', b.initrdPath, e)}`);
      }
      return;
    }
    case 'efi':
      if (!b.createVariableStore && !fs.existsSync(b.efiVariableStorePath)) {
        // approximated
        fail(
          nsError(
            'NSCocoaErrorDomain',
            260,
            `The file “${path.basename(b.efiVariableStorePath)}” couldn’t be opened because there is no such file.`,
            '',
          ),
        );
      }
      return;
    case 'macos':
      for (const p of [b.hardwareModelPath, b.auxImagePath, b.machineIdentifierPath]) {
        try {
          fs.statSync(p);
        } catch (e) {
          fail(`hardwareModel error: ${goPathError('open', p, e)}`);
        }
      }
      return;
  }
}

/** What the device checks hand back to the running machine. */
export interface Attached {
  /** Open console files, by device index (logFilePath, truncated like VZFileSerialPortAttachment with append=false). */
  consoleFds: Map<number, number>;
  /** Rosetta shares left out because installing Rosetta failed and ignore-if-missing was set. */
  skipped: Set<number>;
  /** The pty of each `virtio-serial,pty` device, by device index. */
  ptys: Map<number, SimPty>;
}

function checkRosetta(d: Rosetta, faults: HostFaults): boolean {
  if (d.mountTag === '') fail("missing mandatory 'mountTage' option for rosetta share");
  if (faults.rosettaMissing) {
    if (!d.install) fail('rosetta is not installed');
    // approximated: the installer's refusal.
    const err = nsError(
      'VZErrorDomain',
      9,
      'The operation was cancelled.',
      'Rosetta installation was cancelled or failed.',
    );
    if (d.ignoreIfMissing) {
      log('info', 'Rosetta installation failed. Continuing without Rosetta.');
      try {
        fs.writeSync(2, `${err}\n`);
      } catch {
        /* stderr gone */
      }
      return false;
    }
    fail(`failed to install rosetta: ${err}`);
  }
  try {
    validateTag(d.mountTag);
  } catch (e) {
    fail(`failed to create a new virtio file system configuration for rosetta: ${(e as Error).message}`);
  }
  return true;
}

/** pkg/vf AddToVirtualMachineConfig for every device, in command-line order. */
export function attachDevices(devices: Device[], faults: HostFaults, ptys: SimPty[] = []): Attached {
  const out: Attached = { consoleFds: new Map(), skipped: new Set(), ptys: new Map() };
  const freePtys = [...ptys];
  try {
    for (const [i, d] of devices.entries()) {
      switch (d.type) {
        case 'virtio-net':
          log('info', `Adding virtio-net device (nat: ${d.nat} macAddress: [${d.mac}])`);
          if (d.unixSocketPath) {
            log('info', `Using unix socket ${d.unixSocketPath}`);
            let isSocket = false;
            try {
              isSocket = fs.statSync(d.unixSocketPath).isSocket();
            } catch {
              /* reported below */
            }
            if (!isSocket)
              fail(
                `dial unixgram ${d.unixSocketPath}: connect: ${fs.existsSync(d.unixSocketPath) ? 'connection refused' : 'no such file or directory'}`,
              );
          }
          continue;
        case 'virtio-serial':
          if (d.logFile) {
            log('info', `Adding virtio-serial device (logFile: ${d.logFile})`);
            try {
              out.consoleFds.set(i, fs.openSync(d.logFile, 'w', 0o644));
            } catch {
              // approximated
              fail(nsError('NSCocoaErrorDomain', 4, `The file “${path.basename(d.logFile)}” doesn’t exist.`, ''));
            }
          } else if (d.usesStdio) {
            log('info', 'Adding stdio console');
            // vfkit puts stdin in raw mode; without a terminal tcgetattr fails.
            if (!process.stdin.isTTY) fail('inappropriate ioctl for device');
          } else {
            // Opened before the configuration (it takes a helper process); one per pty device, in order.
            const pty = freePtys.shift();
            if (!pty) fail('could not open a pty for the virtio-serial device');
            out.ptys.set(i, pty);
            d.ptyName = pty.name;
            log('info', `Using PTY (pty path: ${d.ptyName})`);
          }
          continue;
        case 'virtio-rng':
          log('info', 'Adding virtio-rng device');
          continue;
        case 'virtio-balloon':
          log('info', 'Adding virtio-balloon device');
          continue;
        case 'virtio-fs': {
          if (d.sharedDir === '') fail("missing mandatory 'sharedDir' option for virtio-fs device");
          const tag = d.mountTag || path.basename(d.sharedDir);
          try {
            fs.statSync(d.sharedDir);
          } catch (e) {
            fail(goPathError('stat', d.sharedDir, e));
          }
          validateTag(tag);
          log('info', 'Adding virtio-fs device');
          continue;
        }
        case 'rosetta':
          if (checkRosetta(d, faults)) log('info', 'Adding virtio-fs device');
          else out.skipped.add(i);
          continue;
        case 'virtio-blk':
        case 'nvme':
        case 'usb-mass-storage':
          if (d.diskType === 'dev') {
            let st: fs.Stats;
            try {
              st = fs.lstatSync(d.imagePath);
            } catch (e) {
              fail(`error stating file: ${goPathError('lstat', d.imagePath, e)}`);
            }
            if (!st.isBlockDevice()) fail(`file ${d.imagePath} is not a block device`);
          } else {
            if (d.imagePath === '') fail(`missing mandatory 'path' option for ${d.type} device`);
            let st: fs.Stats;
            try {
              st = fs.statSync(d.imagePath);
            } catch (e) {
              fail(goPathError('stat', d.imagePath, e));
            }
            // VZDiskImageStorageDeviceAttachment opens the image, read-write unless readonly.
            const file = path.basename(d.imagePath);
            // approximated
            if (st.isDirectory()) fail(nsError('NSPOSIXErrorDomain', 21, 'Is a directory', ''));
            if (!d.readOnly) {
              try {
                fs.accessSync(d.imagePath, fs.constants.W_OK);
              } catch {
                // approximated
                fail(
                  nsError(
                    'NSCocoaErrorDomain',
                    513,
                    `The file “${file}” couldn’t be opened because you don’t have permission to access it.`,
                    '',
                  ),
                );
              }
            }
          }
          log(
            'info',
            d.type === 'usb-mass-storage'
              ? `Adding USB mass storage device (imagePath: ${d.imagePath})`
              : `Adding ${d.type} device (imagePath: ${d.imagePath}, type: ${d.diskType || 'image'})`,
          );
          continue;
        case 'nbd': {
          let scheme = '';
          if (d.uri === '') fail("invalid NBD device 'uri': 'uri' must be specified");
          const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(d.uri);
          scheme = m ? m[1]!.toLowerCase() : '';
          if (!['nbd', 'nbds', 'nbd+unix', 'nbds+unix'].includes(scheme)) {
            fail(
              `invalid NBD device 'uri': invalid scheme: ${scheme}. Expected one of: 'nbd', 'nbds', 'nbd+unix', or 'nbds+unix'`,
            );
          }
          if (d.deviceId === '') fail("invalid NBD device 'deviceId': 'deviceId' must be specified");
          if (d.deviceId.includes('/'))
            fail("invalid NBD device 'deviceId': invalid 'deviceId': it cannot contain any forward slash");
          if (d.deviceId.length > 255)
            fail("invalid NBD device 'deviceId': invalid 'deviceId': exceeds maximum length");
          log('info', `Adding NBD device (uri: ${d.uri}, deviceId: ${d.deviceId})`);
          continue;
        }
        case 'virtio-gpu':
          log('info', 'Adding virtio-gpu device');
          continue;
        case 'virtio-input':
          log('info', `Adding virtio-input ${d.inputType} device`);
          continue;
        case 'virtio-vsock':
          log('info', 'Adding virtio-vsock device');
          continue;
      }
    }
  } catch (e) {
    for (const fd of out.consoleFds.values()) fs.closeSync(fd);
    throw e;
  }
  return out;
}

/** [VZVirtualMachineConfiguration validateWithError:] for what a command line can get wrong. */
export function validateConfiguration(cpus: number, memoryMiB: number, devices: Device[], skipped: Set<number>): void {
  // approximated
  if (cpus < 1) fail(invalidConfig(`The number of CPUs (${cpus}) is less than the minimum allowed (1).`));
  // approximated: maximumAllowedCPUCount of the simulated Mac
  if (cpus > 64) fail(invalidConfig(`The number of CPUs (${cpus}) exceeds the maximum allowed (64).`));
  // approximated
  if (memoryMiB < 4)
    fail(invalidConfig(`The memory size (${memoryMiB} MiB) is less than the minimum allowed (4 MiB).`));
  const seen = new Set<string>();
  devices.forEach((d, i) => {
    if (skipped.has(i)) return;
    const tag =
      d.type === 'virtio-fs' ? d.mountTag || path.basename(d.sharedDir) : d.type === 'rosetta' ? d.mountTag : null;
    if (tag === null) return;
    // approximated
    if (seen.has(tag))
      fail(invalidConfig(`The Virtio file system device tag “${tag}” is used by more than one device.`));
    seen.add(tag);
  });
}

/** Go's url unescape: %xx are bytes, the result read as UTF-8. */
function percentDecode(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; ) {
    if (s[i] === '%') {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      const cp = s.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      bytes.push(...Buffer.from(ch, 'utf8'));
      i += ch.length;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

export type Endpoint =
  | { scheme: 'unix'; path: string }
  | { scheme: 'tcp'; host: string; port: number; hostname: string }
  | { scheme: 'none' };

type Escaping = 'host' | 'zone' | 'userPassword' | 'path';

/** net/url shouldEscape for a host or zone: what may stand unescaped in one (besides alphanumerics). */
const HOST_CHARS = new Set('-_.~!$&\'()*+,;=:[]<>"');

/**
 * net/url unescape: the error a malformed %-escape or (in a host) a forbidden character gives, or
 * the unescaped text. Hosts may %-encode only non-ASCII bytes (and %25 in a zone).
 */
function urlUnescape(s: string, mode: Escaping): { error: string } | { value: string } {
  const isHex = (c: string | undefined) => c !== undefined && /^[0-9a-fA-F]$/.test(c);
  for (let i = 0; i < s.length; ) {
    const c = s[i]!;
    if (c === '%') {
      if (i + 2 >= s.length || !isHex(s[i + 1]) || !isHex(s[i + 2])) {
        return { error: `invalid URL escape ${goQuote(s.slice(i, i + 3))}` };
      }
      const v = Number.parseInt(s.slice(i + 1, i + 3), 16);
      const esc = s.slice(i, i + 3);
      if (mode === 'host' && v < 0x80 && esc !== '%25') return { error: `invalid URL escape ${goQuote(esc)}` };
      if (mode === 'zone' && esc !== '%25' && v !== 0x20 && v < 0x80 && shouldEscapeInHost(String.fromCharCode(v)))
        return { error: `invalid URL escape ${goQuote(esc)}` };
      i += 3;
      continue;
    }
    if ((mode === 'host' || mode === 'zone') && c.charCodeAt(0) < 0x80 && shouldEscapeInHost(c)) {
      return { error: `invalid character ${goQuote(c)} in host name` };
    }
    i++;
  }
  return { value: percentDecode(s) };
}

function shouldEscapeInHost(c: string): boolean {
  return !/^[A-Za-z0-9]$/.test(c) && !HOST_CHARS.has(c);
}

/** ":" followed by digits, or nothing. */
const validOptionalPort = (p: string) => p === '' || /^:\d*$/.test(p);

/**
 * net/url parseHost as of Go 1.25.2+ (vfkit builds with 1.25): a bracketed host must be an IPv6
 * address (CVE-2025-47912); otherwise the part after the last colon must be a port.
 */
function parseHost(host: string): { error: string } | { value: string } {
  if (host.startsWith('[')) {
    const i = host.lastIndexOf(']');
    if (i < 0) return { error: "missing ']' in host" };
    const colonPort = host.slice(i + 1);
    if (!validOptionalPort(colonPort)) return { error: `invalid port ${goQuote(colonPort)} after host` };
    const inner = host.slice(1, i);
    const zone = inner.indexOf('%25');
    const parts =
      zone >= 0
        ? [urlUnescape(inner.slice(0, zone), 'host'), urlUnescape(inner.slice(zone), 'zone')]
        : [urlUnescape(inner, 'host')];
    let name = '';
    for (const r of parts) {
      if ('error' in r) return r;
      name += r.value;
    }
    // netip.ParseAddr: the first '.', ':' or '%' decides what it tries to read.
    const first = /[.:%]/.exec(name)?.[0];
    const bad = (msg: string) => ({ error: `invalid host: ParseAddr(${goQuote(name)}): ${msg}` });
    if (first === undefined) return bad('unable to parse IP');
    if (first === '%') return bad('missing IPv6 address');
    if (first === '.') return net.isIPv4(name) ? { error: 'invalid IP-literal' } : bad('unable to parse IP'); // approximated: netip says which field is wrong
    if (!net.isIPv6(name)) return bad('unable to parse IP'); // approximated, as above
    return { value: `[${name}]${colonPort}` };
  }
  const colon = host.lastIndexOf(':');
  if (colon >= 0 && !validOptionalPort(host.slice(colon))) {
    return { error: `invalid port ${goQuote(host.slice(colon))} after host` };
  }
  return urlUnescape(host, 'host');
}

/** net/url parseAuthority: [userinfo@]host[:port]. */
function parseAuthority(authority: string): { error: string } | { value: string } {
  const at = authority.lastIndexOf('@');
  const host = parseHost(at < 0 ? authority : authority.slice(at + 1));
  if ('error' in host || at < 0) return host;
  const userinfo = authority.slice(0, at);
  if (!/^[A-Za-z0-9\-._:~!$&'()*+,;=%@]*$/.test(userinfo)) return { error: 'net/url: invalid userinfo' };
  const colon = userinfo.indexOf(':');
  for (const part of colon < 0 ? [userinfo] : [userinfo.slice(0, colon), userinfo.slice(colon + 1)]) {
    const r = urlUnescape(part, 'userPassword');
    if ('error' in r) return r;
  }
  return host;
}

/** URL.Port(): after the first colon, or after "]:" for a bracketed host. */
function portOnly(hostport: string): string {
  const colon = hostport.indexOf(':');
  if (colon < 0) return '';
  const b = hostport.indexOf(']:');
  if (b >= 0) return hostport.slice(b + 2);
  if (hostport.includes(']')) return '';
  return hostport.slice(colon + 1);
}

/** pkg/rest parseRestfulURI: Go's url.ParseRequestURI plus vfkit's rules for each scheme. */
export function parseRestfulUri(input: string): Endpoint {
  const urlErr = (msg: string) => fail(`parse ${goQuote(input)}: ${msg}`);
  if (/[\u0000-\u001f\u007f]/.test(input)) urlErr('net/url: invalid control character in URL');
  if (input === '') urlErr('empty url');
  // getScheme
  let scheme = '';
  let rest = input;
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (/[A-Za-z]/.test(c)) continue;
    if (/[0-9+.-]/.test(c)) {
      if (i === 0) break;
      continue;
    }
    if (c === ':') {
      if (i === 0) urlErr('missing protocol scheme');
      scheme = input.slice(0, i).toLowerCase();
      rest = input.slice(i + 1);
    }
    break;
  }
  const qi = rest.indexOf('?');
  if (qi >= 0) rest = rest.slice(0, qi);
  let host = '';
  let p = '';
  if (!rest.startsWith('/')) {
    // An opaque URI ("unix:foo") has no path; one without a scheme is no request URI.
    if (scheme === '') urlErr('invalid URI for request');
  } else {
    // Only a URI with a scheme has an authority: without one, "//x" is a path.
    if (scheme !== '' && rest.startsWith('//')) {
      const slash = rest.indexOf('/', 2);
      const authority = slash < 0 ? rest.slice(2) : rest.slice(2, slash);
      rest = slash < 0 ? '' : rest.slice(slash);
      const a = parseAuthority(authority);
      if ('error' in a) return urlErr(a.error);
      host = a.value;
    }
    const r = urlUnescape(rest, 'path');
    if ('error' in r) return urlErr(r.error);
    p = r.value;
  }
  let kind: Endpoint['scheme'];
  if (scheme === 'none') kind = 'none';
  else if (scheme === 'unix') kind = 'unix';
  else if (scheme === 'tcp' || scheme === 'http') kind = 'tcp';
  else return fail(`invalid scheme ${scheme}`);
  if (kind === 'tcp') {
    if (host.length < 1) fail('invalid TCP uri: missing host');
    if (p.length > 0) fail('invalid TCP uri: path is forbidden');
    const portStr = portOnly(host);
    if (portStr === '') fail('invalid TCP uri: missing port');
    const colon = host.lastIndexOf(':');
    const hostname = host.slice(0, colon).replace(/^\[|\]$/g, '');
    return { scheme: 'tcp', host, hostname, port: Number(host.slice(colon + 1)) };
  }
  if (kind === 'unix') {
    if (p.length < 1) fail('invalid unix uri: missing path');
    if (host.length > 0) fail('invalid unix uri: host is forbidden');
    if (Buffer.byteLength(p) > 103) fail('invalid unix uri: socket path length exceeds macOS limits');
    return { scheme: 'unix', path: p };
  }
  return { scheme: 'none' };
}
