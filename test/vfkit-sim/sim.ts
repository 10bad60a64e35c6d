/**
 * The vfkit simulator: runs vfkit's start-up in vfkit's order (cmd/vfkit newVMConfiguration and
 * runVFKit) with its checks and messages, then plays a NixOS guest instead of booting one.
 *
 * Order matters because the agent can see it: flags → log level → bootloader → pidfile (written
 * before devices are parsed, so a bad device leaves a pidfile) → devices → --gui defaults →
 * Virtualization.framework checks (files, tags, Rosetta) → REST server → signal handler → start.
 *
 * Fault switches come from the environment (README.md). Idle cost is a few timers and an idle
 * socket: nothing polls.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import type { Server } from 'node:http';
import { checkFlagGroups, DEFAULT_RESTFUL_URI, FlagError, helpText, parseFlags, type Options } from './flags.ts';
import {
  bootloaderFromCmdLine,
  bootloaderJson,
  ConfigError,
  deviceFromCmdLine,
  deviceJson,
  goPathError,
  ignitionFromCmdLine,
  timesyncFromCmdLine,
  type Bootloader,
  type Device,
  type VirtioGpu,
} from './config.ts';
import {
  attachDevices,
  checkBootloader,
  nsError,
  parseRestfulUri,
  validateConfiguration,
  type Attached,
  type HostFaults,
} from './vz.ts';
import { cobraError, log, setLevel, stdLog, stdout } from './log.ts';
import { bootSshd, exposeVsock, listenTcp, type GuestSshd } from './sshd.ts';
import { createRestServer, type RestMachine, type StateChange } from './rest.ts';
import { bootPhases, hostnameFromKernel, panicLines, shutdownLines, stamp, type GuestFacts } from './guest.ts';
import { recordLease } from './leases.ts';
import { openPty, type SimPty } from './pty.ts';
import { GuestShell } from './shell.ts';
import {
  bootStorage,
  diskLine,
  erofsHasFile,
  guestDisks,
  locateGuestFile,
  readAutologin,
  readGuestConfig,
  toplevelOf,
  writeRepartHeader,
  type GuestDisk,
  type GuestStorageConfig,
  type StorageBoot,
} from './guest-fs.ts';
import { readUnit, registerNixPaths, stageBuilderKeys } from './guest-units.ts';

export const DEFAULT_VERSION = 'v0.6.4';

interface Faults extends HostFaults {
  bootMs: number;
  shutdownMs: number;
  crashAfterMs: number | null;
  crashCode: number;
  ignoreStop: boolean;
  chatterMs: number | null;
  forcedIp: string | null;
  leasesFile: string | null;
  version: string;
}

function readFaults(env: NodeJS.ProcessEnv): Faults {
  const num = (name: string, def: number | null, min = 0): number | null => {
    const v = env[name];
    if (v === undefined || v === '') return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) {
      process.stderr.write(`vfkit simulator: ignoring ${name}=${v}: not a number ≥ ${min}\n`);
      return def;
    }
    return n;
  };
  const fail = env.NIXVM_SIM_FAIL ?? '';
  if (fail !== '' && fail !== 'rosetta' && fail !== 'compressed-kernel') {
    process.stderr.write(`vfkit simulator: ignoring NIXVM_SIM_FAIL=${fail}: expected rosetta or compressed-kernel\n`);
  }
  return {
    bootMs: num('NIXVM_SIM_BOOT_MS', 300)!,
    shutdownMs: num('NIXVM_SIM_SHUTDOWN_MS', 200)!,
    crashAfterMs: num('NIXVM_SIM_CRASH_AFTER_MS', null),
    crashCode: num('NIXVM_SIM_CRASH_CODE', 1)!,
    ignoreStop: env.NIXVM_SIM_IGNORE_STOP === '1',
    chatterMs: num('NIXVM_SIM_CHATTER_MS', null, 1),
    forcedIp: env.NIXVM_SIM_IP || null,
    leasesFile: env.NIXVM_LEASES_FILE || null,
    version: env.NIXVM_SIM_VERSION || DEFAULT_VERSION,
    rosettaMissing: fail === 'rosetta',
    compressedKernel: fail === 'compressed-kernel',
  };
}

/** Cleanups vfkit registers (util.RegisterExitHandler) and runs when its command returns. */
const exitHandlers: (() => void)[] = [];
function runExitHandlers(): void {
  for (const h of exitHandlers.splice(0)) {
    try {
      h();
    } catch {
      /* best effort, like vfkit */
    }
  }
}

function exit(code: number): never {
  process.exit(code);
}

/** vfkit's RunE returned an error: exit handlers, cobra's report, exit 1. */
function commandFailed(msg: string, code = 1): never {
  runExitHandlers();
  cobraError(msg);
  exit(code);
}

type VzState = 'Stopped' | 'Running' | 'Paused' | 'Error' | 'Starting' | 'Pausing' | 'Resuming' | 'Stopping';

interface VmConfig {
  cpus: number;
  memoryMiB: number;
  bootloader: Bootloader;
  devices: Device[];
  timesync: { vsockPort: number } | null;
  ignition: { configPath: string } | null;
  nested: boolean;
}

function randomLocalMac(): string {
  const b = crypto.randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** The running VM and its guest. */
class Machine implements RestMachine {
  state: VzState = 'Stopped';
  private readonly cfg: VmConfig;
  private readonly faults: Faults;
  private readonly consoles: number[];
  private readonly stdioConsole: boolean;
  /** hvc0 as a pty: the guest's getty reads what is typed there. */
  private readonly pty: SimPty | null;
  private shell: GuestShell | null = null;
  private typedEarly: Buffer[] = [];
  private readonly guest: GuestFacts;
  private readonly natMacs: string[];
  private readonly timers = new Set<NodeJS.Timeout>();
  private startedAt = 0;
  private chatter: NodeJS.Timeout | null = null;
  private chatterCount = 0;
  private booted = false;
  private readonly disks: GuestDisk[];
  private storage: StorageBoot | null = null;
  private guestStopping = false;
  private signalled = false;
  /** The guest's sshd once it has booted (null: none, or not up yet). */
  private sshd: GuestSshd | null = null;
  /** The guest's private state on this host (made on first use, removed at exit). */
  private work: string | null = null;
  /** What the closure says it mounts (null: it says nothing, or not a Linux boot). */
  private storageConfig: GuestStorageConfig | null = null;
  /** Directories units filled at boot (copy-builder-keys' /run/builder-keys) → the run's copy. */
  private readonly bootDirs = new Map<string, string>();

  constructor(cfg: VmConfig, faults: Faults, attached: Attached) {
    this.cfg = cfg;
    this.faults = faults;
    // The guest's console is hvc0: the first serial port.
    const firstSerial = cfg.devices.findIndex((d) => d.type === 'virtio-serial');
    const fd = attached.consoleFds.get(firstSerial);
    this.consoles = fd === undefined ? [] : [fd];
    const serial = cfg.devices[firstSerial];
    this.stdioConsole = serial?.type === 'virtio-serial' && serial.usesStdio;
    this.pty = attached.ptys.get(firstSerial) ?? null;
    // Typed before the getty runs: the guest's tty holds it, the getty reads it once it starts.
    this.pty?.onInput((d) => (this.shell ? this.shell.input(d) : this.typedEarly.push(d)));
    this.natMacs = cfg.devices.flatMap((d) => (d.type === 'virtio-net' && d.nat ? [d.mac || randomLocalMac()] : []));
    const b = cfg.bootloader;
    this.guest = {
      hostname: b.kind === 'linux' ? hostnameFromKernel(b.vmlinuzPath) : 'nixos',
      cmdline: b.kind === 'linux' ? b.kernelCmdLine : '',
      cpus: cfg.cpus,
      memoryMiB: cfg.memoryMiB,
      tags: cfg.devices.flatMap((d, i) =>
        attached.skipped.has(i)
          ? []
          : d.type === 'virtio-fs'
            ? [d.mountTag || path.basename(d.sharedDir)]
            : d.type === 'rosetta'
              ? [d.mountTag]
              : [],
      ),
      rosetta: cfg.devices.some((d, i) => d.type === 'rosetta' && !attached.skipped.has(i)),
      macs: this.natMacs,
    };
    this.disks = guestDisks(cfg.devices);
    this.guest.disks = this.disks.map(diskLine);
  }

  /** The guest's repart and mounts, from what its closure says (none: it mounts every tag it got). */
  private bootStorage(): void {
    const b = this.cfg.bootloader;
    if (b.kind !== 'linux') return;
    const config = readGuestConfig(toplevelOf(b.kernelCmdLine, b.vmlinuzPath));
    if (!config) return;
    this.storageConfig = config;
    this.storage = bootStorage(config, this.disks, this.guest.tags, (d, label, format) =>
      writeRepartHeader(d.path, label, format),
    );
    this.guest.storage = this.storage.lines;
  }

  private toplevel(): string | null {
    const b = this.cfg.bootloader;
    return b.kind === 'linux' ? toplevelOf(b.kernelCmdLine, b.vmlinuzPath) : null;
  }

  private workDir(): string {
    if (!this.work) {
      const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-sim-guest-'));
      exitHandlers.push(() => fs.rmSync(work, { recursive: true, force: true }));
      this.work = work;
    }
    return this.work;
  }

  /** Each virtio-fs tag vfkit was given → the host directory it shares. */
  private shareDirs(): Map<string, string> {
    const byTag = new Map<string, string>();
    for (const d of this.cfg.devices)
      if (d.type === 'virtio-fs') byTag.set(d.mountTag || path.basename(d.sharedDir), d.sharedDir);
    return byTag;
  }

  /** Each guest mount point of a virtio-fs share → the host directory behind it. */
  private shareMounts(): Map<string, string> {
    const byTag = this.shareDirs();
    const mounts = new Map<string, string>();
    for (const m of this.storageConfig?.fstab ?? []) {
      const dir = m.fsType === 'virtiofs' ? byTag.get(m.device) : undefined;
      if (dir) mounts.set(m.target, dir);
    }
    return mounts;
  }

  /** register-nix-paths (after local-fs.target, before sysinit.target), when the closure has it. */
  private registerNixPaths(): string[] {
    const toplevel = this.toplevel();
    const unit = toplevel ? readUnit(toplevel, 'register-nix-paths.service') : null;
    if (!unit) return [];
    return registerNixPaths(unit, this.guest.cmdline, (guestPath) => {
      const at = locateGuestFile(guestPath, this.storageConfig, this.disks, this.shareDirs());
      if (at.where === 'nowhere') return { missing: at.why };
      let hostPath = at.where === 'host' ? at.path : null;
      if (at.where === 'image') {
        const has = erofsHasFile(at.image, at.inner);
        if (has === false) return { missing: `the store image ${at.image} has no ${at.inner}` };
        if (has === null)
          log('warning', `guest: dump.erofs could not run; reading ${guestPath} from this host's store`);
        // The store image is made of this host's /nix/store: read its copy there.
        hostPath = path.posix.join('/nix/store', at.inner);
      }
      try {
        return { text: fs.readFileSync(hostPath!, 'utf8') };
      } catch (e) {
        return { missing: `${hostPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
      }
    });
  }

  /** copy-builder-keys (multi-user.target, once its mount is up), when the closure has it. */
  private copyBuilderKeys(): string[] {
    const toplevel = this.toplevel();
    const unit = toplevel ? readUnit(toplevel, 'copy-builder-keys.service') : null;
    if (!unit) return [];
    const mounts = this.shareMounts();
    const hostDirOf = (dir: string): string | null => {
      const at = [...mounts.keys()]
        .filter((t) => dir === t || dir.startsWith(`${t}/`))
        .sort((a, b) => b.length - a.length)[0];
      return at === undefined ? null : path.join(mounts.get(at)!, dir.slice(at.length));
    };
    const fstab = this.storageConfig?.fstab;
    try {
      const r = stageBuilderKeys(
        unit,
        hostDirOf,
        fstab ? (p) => fstab.some((m) => m.target === p) : null,
        path.join(this.workDir(), 'run'),
      );
      if (r.staged) this.bootDirs.set(r.staged.guest, r.staged.host);
      return r.lines;
    } catch (e) {
      log('warning', `guest: ${unit.name} could not run: ${(e as Error).message}`);
      return [`[FAILED] Failed to start ${unit.description}.`];
    }
  }

  // ------------------------------------------------------------ console

  private uptime(): number {
    return Date.now() - this.startedAt;
  }

  private write(lines: string[], stamped: boolean): void {
    if (lines.length === 0) return;
    const text = `${lines.map((l) => (stamped ? stamp(this.uptime()) + l : l)).join('\n')}\n`;
    for (const fd of this.consoles) {
      try {
        fs.writeSync(fd, text);
      } catch {
        /* the file went away; the guest does not care */
      }
    }
    if (this.stdioConsole) stdout(text);
    // A tty with ONLCR: each newline goes out as CRLF.
    this.pty?.write(text.replace(/\n/g, '\r\n'));
  }

  /** The getty on a pty console: the login lines without their prompt, then the shell's own. */
  private startGetty(login: string[]): void {
    const b = this.cfg.bootloader;
    const toplevel = b.kind === 'linux' ? toplevelOf(b.kernelCmdLine, b.vmlinuzPath) : null;
    this.write(login.slice(0, -1), false);
    this.shell = new GuestShell({
      hostname: this.guest.hostname,
      cmdline: this.guest.cmdline,
      autologin: toplevel ? readAutologin(toplevel) : null,
      write: (t) => this.writeRaw(t),
      poweroff: () => this.guestShutdown(),
    });
    this.shell.start();
    for (const d of this.typedEarly.splice(0)) this.shell.input(d);
  }

  /** Bytes as the guest's tty sends them (CRLF already). */
  private writeRaw(text: string): void {
    for (const fd of this.consoles) {
      try {
        fs.writeSync(fd, text);
      } catch {
        /* the file went away */
      }
    }
    this.pty?.write(text);
  }

  private after(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.chatter) clearInterval(this.chatter);
    this.chatter = null;
  }

  // ------------------------------------------------------------ lifecycle

  start(): void {
    this.state = 'Starting';
    this.startedAt = Date.now();
    this.bootStorage();
    const phases = bootPhases(this.guest);
    const boot = this.faults.bootMs;
    const step = Math.max(10, Math.round(boot / 4));
    this.write(phases.kernel, true);
    const emergency = this.storage?.emergency ?? null;
    if (emergency) {
      // A mount the guest needs is missing: it stops in emergency mode and never comes up.
      const upTo = phases.stage1.indexOf('<<< NixOS Stage 2 >>>');
      this.after(Math.round(boot / 2), () => {
        this.write(upTo < 0 ? phases.stage1 : phases.stage1.slice(0, upTo - 1), false);
        this.write(emergency, false);
      });
      if (this.faults.crashAfterMs !== null) this.after(this.faults.crashAfterMs, () => this.crash());
      return;
    }
    this.after(Math.round(boot / 2), () => this.write(phases.stage1, false));
    this.after(boot, () => {
      this.state = 'Running';
      log('info', 'virtual machine is running');
      this.exposeVsock();
      log('info', 'waiting for VM to stop');
      this.write(
        spliceBefore(phases.stage2, '[  OK  ] Reached target System Initialization.', this.registerNixPaths()),
        false,
      );
    });
    this.after(boot + step, () => {
      const staged = this.copyBuilderKeys();
      this.write(spliceBefore(phases.network, '[  OK  ] Reached target Multi-User System.', staged), false);
      // The address is leased before the prompt shows, so "login:" on the console means the lease is in the file.
      void this.lease().then(() => {
        if (this.guestStopping || this.state === 'Stopped' || this.state === 'Error') return;
        this.after(step, () => {
          this.bootSshd();
          if (this.pty) this.startGetty(phases.login);
          else this.write(phases.login, false);
          this.booted = true;
          this.startChatter();
        });
      });
    });
    if (this.faults.crashAfterMs !== null) this.after(this.faults.crashAfterMs, () => this.crash());
  }

  /** vfkit exposes each vsock device's socket once the VM runs (a failure is a warning, as there). */
  private exposeVsock(): void {
    for (const d of this.cfg.devices) {
      if (d.type !== 'virtio-vsock' || !d.socketURL) continue;
      log('info', `Exposing vsock port ${d.port} on ${d.socketURL}${d.listen ? ' (listening)' : ''}`);
      if (d.listen) continue;
      const server = exposeVsock(d.socketURL, d.port, () => (this.guestStopping ? null : this.sshd));
      if (server) exitHandlers.push(() => server.close());
    }
  }

  /**
   * sshd comes up with the rest of stage 2, reading its keys from the shares it mounted and from
   * what units staged at boot.
   */
  private bootSshd(): void {
    const toplevel = this.toplevel();
    if (!toplevel) return;
    const mounts = this.shareMounts();
    for (const [guest, host] of this.bootDirs) mounts.set(guest, host);
    try {
      const writable = this.disks.find((d) => !d.readOnly);
      this.sshd = bootSshd(
        toplevel,
        mounts,
        this.guest.cmdline,
        this.workDir(),
        writable ? `${writable.path}.sim-store` : null,
      );
    } catch (e) {
      log('warning', `guest sshd did not start: ${(e as Error).message}`);
    }
    const ip = this.faults.forcedIp;
    if (this.sshd && ip && /^127\./.test(ip)) {
      const server = listenTcp(ip, this.sshd);
      exitHandlers.push(() => server.close());
    }
  }

  private async lease(): Promise<void> {
    const file = this.faults.leasesFile;
    if (!file) return;
    for (const [i, mac] of this.natMacs.entries()) {
      try {
        await recordLease(file, this.guest.hostname, mac, i === 0 ? (this.faults.forcedIp ?? undefined) : undefined);
      } catch (e) {
        process.stderr.write(`vfkit simulator: could not record the DHCP lease in ${file}: ${(e as Error).message}\n`);
      }
    }
  }

  private startChatter(): void {
    const ms = this.faults.chatterMs;
    if (ms === null || this.chatter || this.state !== 'Running' || this.guestStopping) return;
    this.chatter = setInterval(() => this.write([`nixvm-sim: heartbeat ${++this.chatterCount}`], true), ms);
  }

  /** The guest powers off (ACPI power button handled). */
  private guestShutdown(): void {
    if (this.guestStopping) return;
    this.guestStopping = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.chatter) clearInterval(this.chatter);
    this.chatter = null;
    const ms = this.faults.shutdownMs;
    this.after(Math.round(ms / 2), () => this.write(shutdownLines(), false));
    this.after(ms, () => {
      this.write(['reboot: Power down'], true);
      this.stopped();
    });
  }

  /** The VM reached VirtualMachineStateStopped: vfkit's wait returns, its command ends, exit 0. */
  private stopped(): never {
    this.clearTimers();
    this.state = 'Stopped';
    log('info', 'VM is stopped');
    runExitHandlers();
    exit(0);
  }

  private crash(): void {
    this.clearTimers();
    this.write(panicLines(), true);
    this.state = 'Error';
    commandFailed('virtualization error: hypervisor virtualization error', this.faults.crashCode);
  }

  /** vfkit's SIGTERM/SIGINT handler: ask the guest to stop, force it off after 5 s. */
  onSignal(name: string): void {
    stdLog(`captured ${name}, calling exit handlers and exiting..`);
    if (this.signalled) return;
    this.signalled = true;
    log('debug', 'shutting down...');
    try {
      this.requestStop();
    } catch (e) {
      log('error', `failed to shutdown VM: ${(e as Error).message}`);
    }
    // Not one of the guest timers: a Stop in flight must not cancel it.
    setTimeout(() => {
      log('warning', 'failed to wait for VM stop: timeout waiting for VM state, forcing stop');
      this.stopped();
    }, 5000);
  }

  private requestStop(): void {
    // approximated: Apple's text for a request the VM cannot take in its state.
    if (this.state !== 'Running')
      throw new Error(
        nsError('VZErrorDomain', 3, 'Invalid virtual machine state.', 'The virtual machine is not running.'),
      );
    if (!this.faults.ignoreStop) this.guestShutdown();
  }

  // ------------------------------------------------------------ REST

  stateJson(): Record<string, unknown> {
    const s = this.state;
    return {
      state: `VirtualMachineState${s}`,
      canStart: s === 'Stopped' || s === 'Error',
      canPause: s === 'Running',
      canResume: s === 'Paused',
      canStop: s === 'Running',
      canHardStop: this.canHardStop(),
    };
  }

  inspectJson(): Record<string, unknown> {
    const c = this.cfg;
    const j: Record<string, unknown> = {
      vcpus: c.cpus,
      memoryBytes: c.memoryMiB * 1024 * 1024,
      bootloader: bootloaderJson(c.bootloader),
    };
    if (c.devices.length) j.devices = c.devices.map(deviceJson);
    if (c.timesync) j.timesync = c.timesync;
    if (c.ignition) j.ignition = { kind: 'ignition', configPath: c.ignition.configPath };
    if (c.nested) j.nested = true;
    return j;
  }

  changeState(s: Exclude<StateChange, 'HardStop'>): void {
    // approximated: Apple's text for an impossible transition.
    const refused = () =>
      new Error(
        nsError(
          'VZErrorDomain',
          4,
          'Invalid virtual machine state transition.',
          `The virtual machine cannot ${s.toLowerCase()} in its current state.`,
        ),
      );
    switch (s) {
      case 'Pause':
        if (this.state !== 'Running') throw refused();
        this.state = 'Paused';
        if (this.chatter) clearInterval(this.chatter);
        this.chatter = null;
        return;
      case 'Resume':
        if (this.state !== 'Paused') throw refused();
        this.state = 'Running';
        if (this.booted) this.startChatter();
        return;
      case 'Stop':
        this.requestStop();
        return;
    }
  }

  canHardStop(): boolean {
    return ['Starting', 'Running', 'Paused', 'Error'].includes(this.state);
  }

  hardStopError(): string {
    return nsError(
      'VZErrorDomain',
      4,
      'Invalid virtual machine state transition.',
      'The virtual machine cannot stop in its current state.',
    );
  }

  hardStop(): void {
    this.stopped();
  }
}

/** `lines` with `extra` put before the line `before` (at the end when it is missing). */
function spliceBefore(lines: string[], before: string, extra: string[]): string[] {
  const at = lines.indexOf(before);
  return at < 0 ? [...lines, ...extra] : [...lines.slice(0, at), ...extra, ...lines.slice(at)];
}

/** generateCloudInitImage: the user's files, checked; the ISO itself is an empty stand-in. */
function cloudInitImage(files: string[]): string | null {
  if (files.length === 0) return null;
  let ok = false;
  for (const f of files) {
    if (f === '') continue;
    try {
      fs.closeSync(fs.openSync(f, 'r'));
    } catch (e) {
      throw new ConfigError(goPathError('open', f, e));
    }
    if (['user-data', 'meta-data'].includes(path.basename(f))) ok = true;
  }
  if (!ok) throw new ConfigError('cloud-init needs user-data and meta-data files to work');
  const iso = path.join(os.tmpdir(), `vfkit-cloudinit-${crypto.randomBytes(6).toString('hex')}.iso`);
  fs.writeFileSync(iso, Buffer.alloc(2048));
  exitHandlers.push(() => fs.rmSync(iso, { force: true }));
  return iso;
}

function writePidfile(file: string): void {
  try {
    // process.WritePidFile: the pid, no newline, 0600.
    fs.writeFileSync(file, String(process.pid), { mode: 0o600 });
  } catch (e) {
    throw new ConfigError(`could not write PID: ${goPathError('open', file, e)}`);
  }
}

/** vfkit's RunE up to the VM start; throws ConfigError with vfkit's message. */
function configure(o: Options, faults: Faults, ptys: SimPty[]): { cfg: VmConfig; attached: Attached } {
  if (o.logLevel) {
    if (o.logLevel !== 'error' && o.logLevel !== 'debug' && o.logLevel !== 'info')
      throw new ConfigError(`unknown log level: ${o.logLevel}`);
    setLevel(o.logLevel);
  }
  const legacy = o.kernel !== '' || o.kernelCmdline !== '' || o.initrd !== '';
  const bootloader: Bootloader = legacy
    ? { kind: 'linux', vmlinuzPath: o.kernel, kernelCmdLine: o.kernelCmdline, initrdPath: o.initrd }
    : bootloaderFromCmdLine(o.bootloader);
  log('info', 'virtual machine parameters:');
  log('info', `\tvCPUs: ${o.cpus}`);
  log('info', `\tmemory: ${o.memoryMiB} MiB`);
  log('info', '');
  const timesync = o.timesync ? timesyncFromCmdLine(o.timesync) : null;
  const deviceArgs = [...o.devices];
  const iso = cloudInitImage(o.cloudInit);
  if (iso) deviceArgs.push(`virtio-blk,path=${iso}`);
  if (o.pidfile) writePidfile(o.pidfile);
  const devices = deviceArgs.map(deviceFromCmdLine);
  if (o.gui) {
    if (!devices.some((d) => d.type === 'virtio-gpu')) {
      log('warning', '--gui flag specified but no virtio-gpu device configured, automatically adding it');
      devices.push({ type: 'virtio-gpu', width: 800n, height: 600n, usesGUI: true });
    }
    if (!devices.some((d) => d.type === 'virtio-input')) {
      log('warning', '--gui flag specified but no virtio-input device configured, automatically adding it');
      devices.push({ type: 'virtio-input', inputType: 'keyboard' });
    }
  }
  const ignition = o.ignition ? ignitionFromCmdLine(o.ignition) : null;
  const cfg: VmConfig = {
    cpus: o.cpus,
    memoryMiB: o.memoryMiB,
    bootloader,
    devices,
    timesync,
    ignition,
    nested: o.nested,
  };

  // runVFKit → vf.NewVirtualMachine
  const gpu = devices.find((d): d is VirtioGpu => d.type === 'virtio-gpu');
  if (o.gui && gpu) gpu.usesGUI = true;
  checkBootloader(bootloader, faults);
  const attached = attachDevices(devices, faults, ptys);
  exitHandlers.push(() => {
    for (const fd of attached.consoleFds.values()) fs.closeSync(fd);
  });
  validateConfiguration(o.cpus, o.memoryMiB, devices, attached.skipped);
  return { cfg, attached };
}

function bindError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const text: Record<string, string> = {
    EADDRINUSE: 'address already in use',
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EADDRNOTAVAIL: "can't assign requested address",
    ENOTDIR: 'not a directory',
  };
  return (code && text[code]) ?? (e as Error).message;
}

/** rest.NewServer + Start: a listen failure is logrus.Fatal (exit 1, no exit handlers). */
function startRest(uri: string, m: Machine): void {
  if (uri === DEFAULT_RESTFUL_URI) return;
  const ep = parseRestfulUri(uri);
  if (ep.scheme === 'none') {
    // vfkit's Start has no case for "none" and logs the nil error as fatal.
    setImmediate(() => {
      log('fatal', '<nil>');
      exit(1);
    });
    return;
  }
  const server: Server = createRestServer(m);
  server.on('error', (e) => {
    const where = ep.scheme === 'unix' ? `unix ${ep.path}` : `tcp ${ep.host}`;
    let why = bindError(e);
    // libuv turns a unix socket's ENOENT into EACCES ("for compatibility with Windows",
    // src/unix/pipe.c uv_pipe_bind2); Go passes bind(2)'s own errno on.
    if (ep.scheme === 'unix' && (e as NodeJS.ErrnoException).code === 'EACCES' && !fs.existsSync(path.dirname(ep.path)))
      why = 'no such file or directory';
    log('fatal', `listen ${where}: bind: ${why}`);
    exit(1);
  });
  if (ep.scheme === 'unix') {
    exitHandlers.push(() => fs.rmSync(ep.path, { force: true }));
    server.listen(ep.path);
  } else {
    server.listen(ep.port, ep.hostname);
  }
}

/** How many `virtio-serial,pty` devices the command line asks for (configure parses them for real). */
function ptyDevices(o: Options): number {
  let n = 0;
  for (const a of o.devices) {
    try {
      const d = deviceFromCmdLine(a);
      if (d.type === 'virtio-serial' && d.usesPty) n++;
    } catch {
      // configure reports it, in vfkit's order.
    }
  }
  return n;
}

export async function main(argv: string[]): Promise<void> {
  const faults = readFaults(process.env);
  let o: Options;
  try {
    o = parseFlags(argv);
  } catch (e) {
    if (e instanceof FlagError) commandFailed(e.message);
    throw e;
  }
  if (o.help) {
    stdout(helpText());
    exit(0);
  }
  if (o.version) {
    stdout(`vfkit version: ${faults.version}\n`);
    exit(0);
  }
  try {
    checkFlagGroups(o);
  } catch (e) {
    if (e instanceof FlagError) commandFailed(e.message);
    throw e;
  }

  // vfkit makes its ptys while it configures; ours take a helper process each, so they are made first.
  const ptys: SimPty[] = [];
  try {
    for (let i = ptyDevices(o); i > 0; i--) ptys.push(await openPty());
  } catch (e) {
    for (const p of ptys) p.close();
    commandFailed((e as Error).message);
  }
  exitHandlers.push(() => {
    for (const p of ptys) p.close();
  });
  let machine: Machine;
  try {
    const { cfg, attached } = configure(o, faults, ptys);
    machine = new Machine(cfg, faults, attached);
    startRest(o.restfulUri, machine);
  } catch (e) {
    if (e instanceof ConfigError) commandFailed(e.message);
    throw e;
  }
  for (const [sig, name] of [
    ['SIGTERM', 'terminated'],
    ['SIGINT', 'interrupt'],
  ] as const) {
    process.on(sig, () => machine.onSignal(name));
  }
  // The process lives as long as the VM: keep the event loop alive even with no socket to serve.
  setInterval(() => {}, 2 ** 31 - 1);
  machine.start();
}
