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
 * - vfkit runs detached with an unrelated working directory, so every path must be absolute.
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

export interface VfkitArgvInput {
  /** The vfkit program (argv[0]). */
  vfkit: string;
  spec: VmSpec;
  /** The toplevel's out path: holds `kernel`, `initrd` and `init`. */
  closure: string;
  /** The effective MAC (configured or generated). */
  mac: string;
  paths: VmRuntimePaths;
  /** How many CPUs and how much memory this host allows a VM (default hostLimits()). */
  limits?: HostLimits;
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

/** `virtio-serial,logFilePath=…`: the guest's console (hvc0) goes to a file the agent tails. */
class VirtioSerial implements Part {
  readonly logFilePath: string;
  constructor(logFilePath: string) {
    this.logFilePath = logFilePath;
  }
  check(c: Checker): void {
    const fix = 'use a state directory (NIXVM_STATE_DIR) without commas';
    c.absolute('the console log path', this.logFilePath, fix);
    c.noComma('the console log path', this.logFilePath, '--device', fix);
  }
  args(): string[] {
    return ['--device', `virtio-serial,logFilePath=${this.logFilePath}`];
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
  const list: Part[] = [
    new Resources(spec.cpus, spec.memoryMiB, input.limits ?? hostLimits()),
    new LinuxBootloader(closure, spec.kernelParams),
    new VirtioNet(mac),
    new VirtioSerial(paths.consoleLog),
    new VirtioRng(),
  ];
  if (spec.mountHostNixStore) {
    list.push(
      new VirtioFs('/nix/store', NIX_STORE_TAG, 'the host Nix store share', 'rename the shared directory that uses it'),
    );
  }
  for (const s of spec.shares) {
    list.push(new VirtioFs(s.source, s.tag, `the shared directory ${q(s.source)}`, shareFix));
  }
  if (spec.rosetta) list.push(new Rosetta(ROSETTA_TAG));
  if (spec.graphics) {
    const r = spec.resolution ?? DEFAULT_RESOLUTION;
    list.push(new VirtioGpu(r.width, r.height), new VirtioInput('keyboard'), new VirtioInput('pointing'), new Gui());
  }
  list.push(new RestfulUri(paths.restSocket), new PidFile(paths.pidfile));
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
}

export function deviceFacts(spec: VmSpec, mac: string): DeviceFacts {
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
  };
}

/** Same devices? (Field order is fixed by deviceFacts, so the JSON forms compare.) */
export function sameDevices(a: DeviceFacts, b: DeviceFacts): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

// Stand-ins for what validateSpec does not know yet; each passes every check.
const PLACEHOLDER_CLOSURE = '/nix/store/00000000000000000000000000000000-nixos-system';
const PLACEHOLDER_MAC = '02:00:00:00:00:01';
const PLACEHOLDER_PATHS: VmRuntimePaths = {
  dir: '/nixvm/vm',
  pidfile: '/nixvm/vm/vfkit.pid',
  restSocket: '/nixvm/vm/rest.sock',
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
    checkAll(
      spec.name,
      parts({
        spec,
        closure: PLACEHOLDER_CLOSURE,
        mac: spec.macAddress ?? PLACEHOLDER_MAC,
        paths: PLACEHOLDER_PATHS,
        ...(limits ? { limits } : {}),
      }),
    );
    return null;
  } catch (e) {
    if (e instanceof VfkitConfigError) return e;
    throw e;
  }
}
