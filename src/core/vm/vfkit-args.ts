/**
 * The vfkit command line for a VM, as data: a pure function from (VM spec, closure, MAC, runtime
 * paths) to the exact argv the agent runs, program first. `nixvm inspect` shows the same array.
 *
 * Shaped like vfkit's own pkg/config: one small type per device with its check and its
 * command-line form side by side. The checks refuse up front, with one sentence naming the VM and
 * the value, what vfkit or macOS would only reject later (or silently get wrong):
 * - `--device` values are split on every comma, with no quoting (pkg/config deviceFromCmdLine);
 * - the `--bootloader` value honours double quotes, and the kernel command line sits inside them,
 *   so it cannot itself contain one (pkg/cmdline parseString);
 * - Virtualization.framework caps a virtio-fs mount tag at 36 bytes and wants tags unique;
 * - macOS caps a unix socket path at 103 bytes (vfkit: "socket path length exceeds macOS limits");
 * - vfkit runs detached with an unrelated working directory, so every path must be absolute;
 * - the guest names its disks by position (`/dev/nvme0n1`, `/dev/vda`…) and mounts virtio-fs shares
 *   by tag: a tag or disk it mounts that the argv does not give would drop it into emergency mode.
 */
import path from 'node:path';
import type { VmSpec } from '../../api/types.ts';
import { hostLimits, type HostLimits } from '../../host/resources.ts';
import { MAX_SOCKET_PATH_BYTES, type VmRuntimePaths } from './runtime-paths.ts';

export { MAX_SOCKET_PATH_BYTES };

/** VZVirtioFileSystemDeviceConfiguration's limit on a mount tag, in UTF-8 bytes. */
export const MAX_MOUNT_TAG_BYTES = 36;
/** Our floor for guest memory: a NixOS guest with less does not boot usefully. */
export const MIN_MEMORY_MIB = 128;
/** Mount tag of the host /nix/store share (the guest's nixos-vm modules mount this tag). */
export const NIX_STORE_TAG = 'nix-store';
/** Mount tag of the Rosetta share. */
export const ROSETTA_TAG = 'rosetta';
/** Resolution when graphics is on but the config names none (NixOS's virtualisation.resolution default). */
export const DEFAULT_RESOLUTION = { width: 1024, height: 768 } as const;

/** A configuration vfkit or macOS would refuse: `vm` and the offending `value` are named in the message. */
export class VfkitConfigError extends Error {
  readonly vm: string;
  readonly value: string;
  constructor(vm: string, value: string, problem: string) {
    super(`Cannot start VM ${JSON.stringify(vm)}: ${problem}.`);
    this.name = 'VfkitConfigError';
    this.vm = vm;
    this.value = value;
  }
}

/** A disk image attached to the VM, in argv order (the guest names them by position on each bus). */
export interface DiskAttachment {
  role: 'nix-store' | 'writable-store';
  bus: 'nvme' | 'virtio-blk';
  path: string;
  readOnly: boolean;
}

/** Label of the store image's file system (qemu-vm.nix's nixStoreFilesystemLabel; the guest mounts it by label). */
export const NIX_STORE_LABEL = 'nix-store';
/** Label repart gives the writable store's partition in the seed's base.nix. */
export const NIX_STORE_WRITE_LABEL = 'nix-store-write';

/** The device name Linux gives the `index`-th disk on a bus: /dev/nvme0n1, /dev/vda. */
export function guestDeviceName(bus: DiskAttachment['bus'], index: number): string {
  if (bus === 'nvme') return `/dev/nvme${index}n1`;
  let name = '';
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) name = String.fromCharCode(97 + ((n - 1) % 26)) + name;
  return `/dev/vd${name}`;
}

/**
 * Which disks a VM gets, in argv order: the store image (read-only), then the writable store
 * image on the bus its guest names (/dev/vd… is virtio-blk, anything else nvme). The store image
 * goes on nvme, as the seed's runner attaches it, unless the guest names the writable store as
 * the second disk of the other bus: vz-vm mounts it from /dev/vdb, "the store image is always first".
 */
export function planDisks(spec: VmSpec, paths: { storeImage: string | null; writable: string }): DiskAttachment[] {
  const out: DiskAttachment[] = [];
  const device = spec.writableStore?.device ?? null;
  const writableBus: DiskAttachment['bus'] = device?.startsWith('/dev/vd') ? 'virtio-blk' : 'nvme';
  const storeBus: DiskAttachment['bus'] = device === guestDeviceName(writableBus, 1) ? writableBus : 'nvme';
  if (spec.storeImage && paths.storeImage !== null) {
    out.push({ role: 'nix-store', bus: storeBus, path: paths.storeImage, readOnly: true });
  }
  if (spec.writableStore) {
    out.push({ role: 'writable-store', bus: writableBus, path: paths.writable, readOnly: false });
  }
  return out;
}

/** The guest device name of each attachment, by position on its bus. */
export function diskDeviceNames(disks: readonly DiskAttachment[]): string[] {
  const next = { nvme: 0, 'virtio-blk': 0 };
  return disks.map((d) => guestDeviceName(d.bus, next[d.bus]++));
}

export interface VfkitArgvInput {
  /** The vfkit program (argv[0]). */
  vfkit: string;
  spec: VmSpec;
  /** Disk images, in argv order (planDisks); none when omitted. */
  disks?: DiskAttachment[];
  /** The toplevel's out path: holds `kernel`, `initrd` and `init`. */
  closure: string;
  /** The effective MAC (configured or generated). */
  mac: string;
  paths: VmRuntimePaths;
  /** How many CPUs and how much memory this host allows a VM (default hostLimits()). */
  limits?: HostLimits;
  /** Kernel parameters nixvm adds (the key credential), after the configuration's own. */
  extraKernelParams?: string[];
}

const q = (s: string) => JSON.stringify(s);

/** Collects what the parts have claimed (mount tags) and turns problems into VfkitConfigErrors. */
class Checker {
  readonly vm: string;
  private readonly tags = new Map<string, string>();
  constructor(vm: string) {
    this.vm = vm;
  }

  fail(value: string, problem: string): never {
    throw new VfkitConfigError(this.vm, value, problem);
  }

  /** No NUL: an argv element cannot carry one. */
  passable(what: string, value: string, fix: string): void {
    if (value.includes('\0'))
      this.fail(value, `${what} ${q(value)} contains a NUL byte, which cannot be passed to vfkit; ${fix}`);
  }

  absolute(what: string, value: string, fix: string): void {
    this.passable(what, value, fix);
    if (value === '') this.fail(value, `${what} is empty; ${fix}`);
    if (!path.isAbsolute(value)) this.fail(value, `${what} ${q(value)} is not an absolute path; ${fix}`);
  }

  /** A value that ends up inside one `--device` (or `--bootloader`) value: commas would split it. */
  noComma(what: string, value: string, option: string, fix: string): void {
    if (value.includes(',')) {
      this.fail(
        value,
        `${what} ${q(value)} contains a comma, which vfkit's ${option} option cannot carry (it splits its value on every comma); ${fix}`,
      );
    }
  }

  /** Whether a mount tag was claimed by a part checked so far. */
  hasTag(tag: string): boolean {
    return this.tags.has(tag);
  }

  tag(tag: string, owner: string, fix: string): void {
    this.passable(`the mount tag of ${owner}`, tag, fix);
    if (tag === '') this.fail(tag, `${owner} has an empty mount tag; ${fix}`);
    this.noComma(`the mount tag of ${owner}`, tag, '--device', fix);
    const bytes = Buffer.byteLength(tag, 'utf8');
    if (bytes > MAX_MOUNT_TAG_BYTES) {
      this.fail(
        tag,
        `the mount tag ${q(tag)} of ${owner} is ${bytes} bytes long, more than the ${MAX_MOUNT_TAG_BYTES} bytes Virtualization.framework allows; ${fix}`,
      );
    }
    const other = this.tags.get(tag);
    if (other !== undefined)
      this.fail(tag, `the mount tag ${q(tag)} is used by both ${other} and ${owner}; give each share its own tag`);
    this.tags.set(tag, owner);
  }
}

/** One piece of the command line: its check and its arguments, side by side. */
interface Part {
  check(c: Checker): void;
  args(): string[];
}

class Resources implements Part {
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly limits: HostLimits;
  constructor(cpus: number, memoryMiB: number, limits: HostLimits) {
    this.cpus = cpus;
    this.memoryMiB = memoryMiB;
    this.limits = limits;
  }
  check(c: Checker): void {
    if (!Number.isInteger(this.cpus) || this.cpus < 1) {
      c.fail(
        String(this.cpus),
        `it asks for ${this.cpus} CPUs; set virtualisation.cores to a whole number of 1 or more`,
      );
    }
    if (!Number.isInteger(this.memoryMiB) || this.memoryMiB < MIN_MEMORY_MIB) {
      c.fail(
        String(this.memoryMiB),
        `it asks for ${this.memoryMiB} MiB of memory, below the ${MIN_MEMORY_MIB} MiB a NixOS guest needs; set virtualisation.memorySize to a whole number of ${MIN_MEMORY_MIB} or more`,
      );
    }
    const { cpus, memoryMiB, source } = this.limits;
    const whose = (n: string) =>
      source === 'host'
        ? `more than this Mac has (${n}), and Virtualization.framework gives a VM no more than the Mac has`
        : `more than Virtualization.framework allows (${n})`;
    if (this.cpus > cpus) {
      c.fail(
        String(this.cpus),
        `it asks for ${this.cpus} CPUs, ${whose(String(cpus))}; set virtualisation.cores to ${cpus} or fewer`,
      );
    }
    if (this.memoryMiB > memoryMiB) {
      c.fail(
        String(this.memoryMiB),
        `it asks for ${this.memoryMiB} MiB of memory, ${whose(`${memoryMiB} MiB`)}; set virtualisation.memorySize to ${memoryMiB} or less`,
      );
    }
  }
  args(): string[] {
    return ['--cpus', String(this.cpus), '--memory', String(this.memoryMiB)];
  }
}

/** `--bootloader linux,kernel=…,initrd=…,cmdline="…"`: the closure's kernel, initrd and init. */
class LinuxBootloader implements Part {
  readonly closure: string;
  readonly kernelParams: string[];
  constructor(closure: string, kernelParams: string[]) {
    this.closure = closure;
    this.kernelParams = kernelParams;
  }
  get kernel(): string {
    return `${this.closure}/kernel`;
  }
  get initrd(): string {
    return `${this.closure}/initrd`;
  }
  get cmdline(): string {
    return [...this.kernelParams, `init=${this.closure}/init`].join(' ');
  }
  check(c: Checker): void {
    const fix = 'build the VM into a store path without one';
    c.absolute('the system closure path', this.closure, 'pass the absolute out path of the built toplevel');
    c.noComma('the system closure path', this.closure, '--bootloader', fix);
    if (this.closure.includes('"')) {
      c.fail(
        this.closure,
        `the system closure path ${q(this.closure)} contains a double quote, which vfkit's --bootloader option cannot carry; ${fix}`,
      );
    }
    for (const p of this.kernelParams) {
      c.passable('the kernel parameter', p, 'remove it from boot.kernelParams');
      if (p.includes('"')) {
        c.fail(
          p,
          `the kernel parameter ${q(p)} contains a double quote, which vfkit's --bootloader option cannot carry (the command line is itself quoted there); remove the quotes from boot.kernelParams`,
        );
      }
    }
  }
  args(): string[] {
    return ['--bootloader', `linux,kernel=${this.kernel},initrd=${this.initrd},cmdline="${this.cmdline}"`];
  }
}

/** `virtio-net,nat,mac=…`: NAT through vmnet, so macOS's bootpd hands out (and records) the address. */
class VirtioNet implements Part {
  readonly rawMac: string;
  constructor(mac: string) {
    this.rawMac = mac;
  }
  /** Lower-case, colon-separated, two digits per octet: the form Go's net.ParseMAC accepts and prints. */
  get mac(): string {
    return this.rawMac.toLowerCase().replaceAll('-', ':');
  }
  check(c: Checker): void {
    const fix =
      'set virtualisation.macAddress to six two-digit hex octets such as 02:94:ef:12:34:56, or leave it unset for a generated one';
    c.passable('the MAC address', this.rawMac, fix);
    if (!/^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/.test(this.rawMac)) {
      c.fail(this.rawMac, `the MAC address ${q(this.rawMac)} is not six two-digit hex octets; ${fix}`);
    }
    if (parseInt(this.mac.slice(0, 2), 16) & 1) {
      c.fail(
        this.rawMac,
        `the MAC address ${q(this.rawMac)} is a multicast address (its first octet is odd), which a network card cannot use; ${fix}`,
      );
    }
  }
  args(): string[] {
    return ['--device', `virtio-net,nat,mac=${this.mac}`];
  }
}

/**
 * `virtio-serial,pty`: the guest's console (hvc0) on a pseudo-terminal vfkit makes and names in
 * `/vm/inspect` (`ptyName`). The agent reads it (console-relay.ts): it writes the console log and
 * lets clients type into it. A log file (`logFilePath=`) could only be read.
 */
class VirtioSerial implements Part {
  check(): void {}
  args(): string[] {
    return ['--device', 'virtio-serial,pty'];
  }
}

class VirtioRng implements Part {
  check(): void {}
  args(): string[] {
    return ['--device', 'virtio-rng'];
  }
}

/** `virtio-fs,sharedDir=…,mountTag=…`: a host directory the guest mounts by tag. */
class VirtioFs implements Part {
  readonly sharedDir: string;
  readonly mountTag: string;
  /** How the user knows this share, for messages about its tag ("the shared directory "/src""). */
  readonly owner: string;
  /** How to fix a bad tag. */
  readonly tagFix: string;
  constructor(sharedDir: string, mountTag: string, owner: string, tagFix: string) {
    this.sharedDir = sharedDir;
    this.mountTag = mountTag;
    this.owner = owner;
    this.tagFix = tagFix;
  }
  check(c: Checker): void {
    c.absolute(
      'the shared directory',
      this.sharedDir,
      'use an absolute source path in virtualisation.sharedDirectories',
    );
    c.noComma(
      'the shared directory',
      this.sharedDir,
      '--device',
      'rename the directory or share one without a comma in its path',
    );
    c.tag(this.mountTag, this.owner, this.tagFix);
  }
  args(): string[] {
    return ['--device', `virtio-fs,sharedDir=${this.sharedDir},mountTag=${this.mountTag}`];
  }
}

/** `rosetta,mountTag=…`: Apple's Rosetta for Linux, shared over virtio-fs. */
class Rosetta implements Part {
  readonly mountTag: string;
  constructor(mountTag: string) {
    this.mountTag = mountTag;
  }
  check(c: Checker): void {
    c.tag(this.mountTag, 'the Rosetta share', `rename the shared directory that uses the tag ${q(this.mountTag)}`);
  }
  args(): string[] {
    return ['--device', `rosetta,mountTag=${this.mountTag}`];
  }
}

/**
 * `nvme,path=…[,readonly]` / `virtio-blk,path=…[,readonly]`: a raw disk image (vfkit's
 * DiskStorageConfig; qcow2 is refused by vfkit, and nixvm only makes raw images).
 */
class Disk implements Part {
  readonly d: DiskAttachment;
  constructor(d: DiskAttachment) {
    this.d = d;
  }
  check(c: Checker): void {
    const what = this.d.role === 'nix-store' ? 'the Nix store image' : 'the writable store image';
    const fix = 'use a state directory (NIXVM_STATE_DIR) without commas';
    c.absolute(what, this.d.path, fix);
    c.noComma(what, this.d.path, '--device', fix);
    if (this.d.role === 'nix-store' && !this.d.readOnly) {
      c.fail(this.d.path, `${what} ${q(this.d.path)} must be attached read-only (it is a cache other runs share)`);
    }
  }
  args(): string[] {
    return ['--device', `${this.d.bus},path=${this.d.path}${this.d.readOnly ? ',readonly' : ''}`];
  }
}

/**
 * No argv of its own: checks that what the guest mounts is there (its fileSystems' virtio-fs tags,
 * the store image it mounts by label, the disk its repart formats), since a missing one drops the
 * guest into emergency mode.
 */
class GuestNeeds implements Part {
  readonly spec: VmSpec;
  readonly disks: DiskAttachment[];
  constructor(spec: VmSpec, disks: DiskAttachment[]) {
    this.spec = spec;
    this.disks = disks;
  }
  check(c: Checker): void {
    for (const m of this.spec.guestMounts ?? []) {
      if (m.fsType === 'virtiofs' && m.device && !c.hasTag(m.device)) {
        c.fail(
          m.device,
          `its guest mounts the virtio-fs tag ${q(m.device)} at ${m.target} (fileSystems.${q(m.target)}), but the VM has no share with that tag, so the guest would stop in emergency mode; add it to virtualisation.sharedDirectories or remove the mount`,
        );
      }
      if (m.device === `/dev/disk/by-label/${NIX_STORE_LABEL}` && !this.disks.some((d) => d.role === 'nix-store')) {
        c.fail(
          m.device,
          `its guest mounts ${m.device} at ${m.target}, the store image nixvm makes only with virtualisation.useNixStoreImage = true; set it, or mount the host store (virtualisation.mountHostNixStore)`,
        );
      }
    }
    const want = this.spec.writableStore?.device;
    if (want) {
      const names = diskDeviceNames(this.disks);
      const at = this.disks.findIndex((d) => d.role === 'writable-store');
      if (at >= 0 && names[at] !== want) {
        c.fail(
          want,
          `its guest formats its writable store on ${want} (boot.initrd.systemd.repart.device), but nixvm attaches the writable store image as ${names[at]} (after ${at === 0 ? 'no other disk' : 'the store image'}); set boot.initrd.systemd.repart.device = ${q(names[at]!)}`,
        );
      }
    }
  }
  args(): string[] {
    return [];
  }
}

class VirtioGpu implements Part {
  readonly width: number;
  readonly height: number;
  constructor(width: number, height: number) {
    this.width = width;
    this.height = height;
  }
  check(c: Checker): void {
    for (const v of [this.width, this.height]) {
      if (!Number.isInteger(v) || v < 1) {
        c.fail(
          `${this.width}x${this.height}`,
          `the display resolution ${this.width}x${this.height} is not two whole numbers of 1 or more; fix virtualisation.resolution`,
        );
      }
    }
  }
  args(): string[] {
    return ['--device', `virtio-gpu,width=${this.width},height=${this.height}`];
  }
}

class VirtioInput implements Part {
  readonly kind: 'keyboard' | 'pointing';
  constructor(kind: 'keyboard' | 'pointing') {
    this.kind = kind;
  }
  check(): void {}
  args(): string[] {
    return ['--device', `virtio-input,${this.kind}`];
  }
}

class Gui implements Part {
  check(): void {}
  args(): string[] {
    return ['--gui'];
  }
}

/**
 * `--device virtio-vsock,port=22,socketURL=…,connect`: vfkit listens on the unix socket and joins
 * each connection to the guest's vsock port 22 (where systemd ≥ 256 binds sshd), so ssh needs no IP.
 */
class SshVsock implements Part {
  readonly socket: string;
  constructor(socket: string) {
    this.socket = socket;
  }
  check(c: Checker): void {
    const fix = 'use a shorter state directory (NIXVM_STATE_DIR) without commas';
    c.absolute('the ssh vsock socket path', this.socket, fix);
    const bytes = Buffer.byteLength(this.socket, 'utf8');
    if (bytes > MAX_SOCKET_PATH_BYTES) {
      c.fail(
        this.socket,
        `its ssh vsock socket path ${q(this.socket)} is ${bytes} bytes long, more than the ${MAX_SOCKET_PATH_BYTES} bytes macOS allows for a unix socket; ${fix}`,
      );
    }
  }
  args(): string[] {
    return ['--device', `virtio-vsock,port=${SSH_VSOCK_PORT},socketURL=${this.socket},connect`];
  }
}

/** The guest's vsock port sshd listens on (systemd-ssh-generator's). */
export const SSH_VSOCK_PORT = 22;

/** `--restful-uri unix://…`: the socket the agent talks to (state, stop). */
class RestfulUri implements Part {
  readonly socket: string;
  constructor(socket: string) {
    this.socket = socket;
  }
  check(c: Checker): void {
    const fix = 'use a shorter state directory (NIXVM_STATE_DIR)';
    c.absolute('the REST socket path', this.socket, fix);
    const bytes = Buffer.byteLength(this.socket, 'utf8');
    if (bytes > MAX_SOCKET_PATH_BYTES) {
      c.fail(
        this.socket,
        `its REST socket path ${q(this.socket)} is ${bytes} bytes long, more than the ${MAX_SOCKET_PATH_BYTES} bytes macOS allows for a unix socket; ${fix}`,
      );
    }
    // vfkit parses the URI with Go's url.ParseRequestURI: `%` is decoded, `?` starts a query.
    const bad = /[%?\u0000-\u001f\u007f]/.exec(this.socket);
    if (bad) {
      c.fail(
        this.socket,
        `its REST socket path ${q(this.socket)} contains ${q(bad[0])}, which vfkit's --restful-uri would misread; use a state directory (NIXVM_STATE_DIR) without it`,
      );
    }
  }
  args(): string[] {
    return ['--restful-uri', `unix://${this.socket}`];
  }
}

class PidFile implements Part {
  readonly file: string;
  constructor(file: string) {
    this.file = file;
  }
  check(c: Checker): void {
    c.absolute('the pidfile path', this.file, 'use an absolute state directory (NIXVM_STATE_DIR)');
  }
  args(): string[] {
    return ['--pidfile', this.file];
  }
}

const shareFix = 'give it a tag of at most 36 bytes, unique among the shares, in virtualisation.sharedDirectories';

/** Every part of the command line, in argv order. */
function parts(input: Omit<VfkitArgvInput, 'vfkit'>): Part[] {
  const { spec, closure, mac, paths } = input;
  const disks = input.disks ?? [];
  const list: Part[] = [
    new Resources(spec.cpus, spec.memoryMiB, input.limits ?? hostLimits()),
    new LinuxBootloader(closure, [...spec.kernelParams, ...(input.extraKernelParams ?? [])]),
    new VirtioNet(mac),
    new VirtioSerial(),
    new VirtioRng(),
  ];
  if (spec.mountHostNixStore) {
    list.push(
      new VirtioFs('/nix/store', NIX_STORE_TAG, 'the host Nix store share', 'rename the shared directory that uses it'),
    );
  }
  // The seed's order: the store image, then the writable store image, then the shares.
  for (const d of disks) list.push(new Disk(d));
  for (const s of spec.shares) {
    list.push(new VirtioFs(s.source, s.tag, `the shared directory ${q(s.source)}`, shareFix));
  }
  if (spec.rosetta) list.push(new Rosetta(spec.rosettaTag ?? ROSETTA_TAG));
  if (spec.graphics) {
    const r = spec.resolution ?? DEFAULT_RESOLUTION;
    list.push(new VirtioGpu(r.width, r.height), new VirtioInput('keyboard'), new VirtioInput('pointing'), new Gui());
  }
  if (spec.ssh.enabled && paths.sshSocket) list.push(new SshVsock(paths.sshSocket));
  list.push(new RestfulUri(paths.restSocket), new PidFile(paths.pidfile));
  list.push(new GuestNeeds(spec, disks));
  return list;
}

function checkAll(vm: string, list: Part[]): void {
  const c = new Checker(vm);
  for (const p of list) p.check(c);
}

/**
 * The exact vfkit argv (program first) for a VM. Throws VfkitConfigError, naming the VM and the
 * value, when vfkit or macOS would refuse the configuration.
 */
export function vfkitArgv(input: VfkitArgvInput): string[] {
  if (input.vfkit === '' || input.vfkit.includes('\0')) {
    throw new VfkitConfigError(
      input.spec.name,
      input.vfkit,
      'the vfkit program path is empty or unusable; set the vfkit path in the settings',
    );
  }
  const list = parts(input);
  checkAll(input.spec.name, list);
  return [input.vfkit, ...list.flatMap((p) => p.args())];
}

/**
 * What a VM's vfkit devices are made of, apart from the closure and the runtime paths: the inputs
 * of every `--device` (and `--cpus`, `--memory`, the kernel command line). Recorded when a VM
 * boots; a change in any of them needs a restart to reach the running VM.
 */
export interface DeviceFacts {
  cpus: number;
  memoryMiB: number;
  /** Normalised: lower case, colons. */
  mac: string;
  kernelParams: string[];
  mountHostNixStore: boolean;
  shares: Array<{ tag: string; source: string }>;
  rosetta: boolean;
  /** The resolution when graphics is on, else null. */
  graphics: { width: number; height: number } | null;
  /** The Rosetta share's tag (absent in records from before nixvm kept it: "rosetta"). */
  rosettaTag?: string;
  /** The disks, in argv order, without the store image's path (that follows the closure). Absent: none. */
  disks?: Array<{ role: DiskAttachment['role']; bus: DiskAttachment['bus']; readOnly: boolean }>;
  /** The vsock device for ssh (absent in records from before it: none). */
  sshVsock?: boolean;
  /** nixvm's key on the kernel command line as a systemd credential (absent: no). */
  keyCredential?: boolean;
}

export function deviceFacts(
  spec: VmSpec,
  mac: string,
  disks: readonly DiskAttachment[] = [],
  keyCredential = false,
): DeviceFacts {
  const r = spec.resolution ?? DEFAULT_RESOLUTION;
  return {
    cpus: spec.cpus,
    memoryMiB: spec.memoryMiB,
    mac: new VirtioNet(mac).mac,
    kernelParams: [...spec.kernelParams],
    mountHostNixStore: spec.mountHostNixStore,
    shares: spec.shares.map((s) => ({ tag: s.tag, source: s.source })),
    rosetta: spec.rosetta,
    graphics: spec.graphics ? { width: r.width, height: r.height } : null,
    rosettaTag: spec.rosettaTag ?? ROSETTA_TAG,
    disks: disks.map((d) => ({ role: d.role, bus: d.bus, readOnly: d.readOnly })),
    sshVsock: spec.ssh.enabled,
    keyCredential,
  };
}

/** The facts with every field in a fixed order and the later fields' defaults filled in. */
function normalFacts(f: DeviceFacts): DeviceFacts {
  return {
    cpus: f.cpus,
    memoryMiB: f.memoryMiB,
    mac: f.mac,
    kernelParams: f.kernelParams,
    mountHostNixStore: f.mountHostNixStore,
    shares: f.shares,
    rosetta: f.rosetta,
    graphics: f.graphics,
    rosettaTag: f.rosettaTag ?? ROSETTA_TAG,
    disks: f.disks ?? [],
    sshVsock: f.sshVsock ?? false,
    keyCredential: f.keyCredential ?? false,
  };
}

/** Same devices? (Records from before a field existed compare as its default.) */
export function sameDevices(a: DeviceFacts, b: DeviceFacts): boolean {
  return JSON.stringify(normalFacts(a)) === JSON.stringify(normalFacts(b));
}

// Stand-ins for what validateSpec does not know yet; each passes every check.
const PLACEHOLDER_CLOSURE = '/nix/store/00000000000000000000000000000000-nixos-system';
const PLACEHOLDER_MAC = '02:00:00:00:00:01';
const PLACEHOLDER_STORE_IMAGE = '/nixvm/images/nixos-system.img';
const PLACEHOLDER_WRITABLE = '/nixvm/vm/store-writable.img';
const PLACEHOLDER_PATHS: VmRuntimePaths = {
  dir: '/nixvm/vm',
  pidfile: '/nixvm/vm/vfkit.pid',
  restSocket: '/nixvm/vm/rest.sock',
  sshSocket: '/nixvm/vm/ssh.sock',
  logDir: '/nixvm/log',
  consoleLog: '/nixvm/log/console.log',
  bootRecord: '/nixvm/vm/boot.json',
};

/**
 * What is wrong with a VM's configuration itself (resources, kernel parameters, shares, MAC),
 * before anything is built: null when vfkit would accept it, else the error vfkitArgv would throw.
 * Lets the agent show the problem on the VM's row before the user clicks Start.
 */
export function validateSpec(spec: VmSpec, limits?: HostLimits): VfkitConfigError | null {
  try {
    const disks = planDisks(spec, { storeImage: PLACEHOLDER_STORE_IMAGE, writable: PLACEHOLDER_WRITABLE });
    checkAll(
      spec.name,
      parts({
        spec,
        closure: PLACEHOLDER_CLOSURE,
        mac: spec.macAddress ?? PLACEHOLDER_MAC,
        paths: PLACEHOLDER_PATHS,
        disks,
        ...(limits ? { limits } : {}),
      }),
    );
    return null;
  } catch (e) {
    if (e instanceof VfkitConfigError) return e;
    throw e;
  }
}
