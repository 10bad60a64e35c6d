/**
 * The VMs as the faces see them: every VM the flakes define plus the ones still running from a
 * flake that lost them, looked up by name, each turned into its snapshot (vm-view.ts) from what
 * the owners recorded, and the read-only questions about one VM (addresses, ssh command, the
 * argv it would boot with, its logs).
 */
import fs from 'node:fs';
import path from 'node:path';
import { AgentError } from '../api/errors.ts';
import { ownValue } from '../api/records.ts';
import type {
  AgentSnapshot,
  ApplyOutcome,
  LogKind,
  Settings,
  VmPlatform,
  VmSnapshot,
  VmSpec,
  VmUsage,
} from '../api/types.ts';
import { MAX_LOG_LINE_BYTES, MAX_LOG_REPLY_BYTES } from '../api/validate.ts';
import type { ClosureStore } from './closure-store.ts';
import { noSuchVm, type FlakeSet, type VmEntry } from './flake-set.ts';
import type { Reach } from './net/reach.ts';
import {
  sshArgv,
  sshCommandLine,
  sshTargetFor,
  SshTargetError,
  type SshConfigEntry,
  type SshDestination,
  type SshTarget,
  type SshRoute,
} from './net/ssh.ts';
import { drvOutPath } from './nix/drv.ts';
import { isLive, vmView } from './vm-view.ts';
import { tail, tailRuns } from './vm/console.ts';
import type { Launcher } from './vm/launcher.ts';
import type { Supervisor } from './vm/supervisor.ts';
import type { StoreImages } from './store-image.ts';
import type { VmDiskList } from './vm-disks.ts';

export type Loaded = VmEntry & { spec: VmSpec };

export interface VmListOwners {
  flakes: FlakeSet;
  supervisor: Supervisor;
  launcher: Launcher;
  closures: ClosureStore;
  reach: Reach;
  settings(): Settings;
  disks?: VmDiskList;
  images?: StoreImages;
  /** How ssh's ProxyCommand runs nixvm (default `nixvm` on PATH). */
  nixvm?: readonly string[];
  /** What the last apply of a VM did. */
  applied?(name: string): ApplyOutcome | null;
  /** What its vfkit uses now, while sampled. */
  usage?(name: string): VmUsage | null;
  /** Where a VM's system is built and whether it runs here (the builders). */
  platform?(spec: VmSpec | null, rootKey: boolean): VmPlatform | null;
}

export class VmList {
  readonly #o: VmListOwners;

  constructor(owners: VmListOwners) {
    this.#o = owners;
  }

  /** All VMs the flakes define (loaded or failed), plus VMs still running from a flake that lost them. */
  entries(): VmEntry[] {
    const out = new Map(this.#o.flakes.defined());
    const broken = this.#o.flakes.anyError();
    for (const s of this.#o.supervisor.list()) {
      if (out.has(s.name) || s.state === 'stopped') continue;
      out.set(s.name, {
        name: s.name,
        flake: '',
        spec: null,
        error: broken
          ? `${JSON.stringify(s.name)} is running, but its flake does not evaluate right now (see the flake's error); it keeps running.`
          : `${JSON.stringify(s.name)} is running but no configured flake defines it any more; stop it when you are done with it.`,
      });
    }
    return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The VM by name; AgentError('no-such-vm') naming the known ones otherwise. */
  entry(name: string): VmEntry {
    const known = this.#o.flakes.defined().get(name) ?? this.entries().find((x) => x.name === name);
    if (!known)
      throw noSuchVm(
        name,
        this.entries().map((x) => x.name),
        this.#o.flakes.snapshots(),
      );
    return known;
  }

  /** The VM with its spec; AgentError('failed', its evaluation error) when it did not evaluate. */
  loaded(name: string): Loaded {
    const e = this.entry(name);
    if (!e.spec) throw new AgentError('failed', e.error ?? `${JSON.stringify(name)} could not be evaluated.`);
    return e as Loaded;
  }

  snapshots(settings: Settings): VmSnapshot[] {
    const entries = this.entries();
    const macs = this.#macs(entries);
    return entries.map((e) => this.view(e, settings, macs));
  }

  /** The effective MAC of each VM the flakes define, or of what it booted with. */
  #macOf(e: VmEntry): string | null {
    const booted = this.#o.supervisor.status(e.name).booted?.mac ?? null;
    if (booted && isLive(this.#o.supervisor.status(e.name))) return booted.toLowerCase();
    return e.spec ? this.#o.launcher.mac(e as Loaded).toLowerCase() : (booted?.toLowerCase() ?? null);
  }

  #macs(entries: readonly VmEntry[]): Map<string, string[]> {
    const by = new Map<string, string[]>();
    for (const e of entries) {
      const mac = this.#macOf(e);
      if (mac) by.set(mac, [...(by.get(mac) ?? []), e.name]);
    }
    return by;
  }

  /** The other VMs with this VM's MAC. */
  macShared(name: string): string[] {
    const e = this.entry(name);
    const mac = this.#macOf(e);
    if (!mac) return [];
    return this.entries()
      .filter((x) => x.name !== name && this.#macOf(x) === mac)
      .map((x) => x.name);
  }

  /** A VM that runs (or is starting or stopping) with the MAC `name` would boot with. */
  macClash(name: string, live: (other: string) => boolean): { other: string; mac: string } | null {
    const e = this.entry(name);
    const mac = this.#macOf(e);
    if (!mac) return null;
    for (const other of this.macShared(name)) if (live(other)) return { other, mac };
    return null;
  }

  view(e: VmEntry, settings: Settings = this.#o.settings(), macs?: Map<string, string[]>): VmSnapshot {
    const { supervisor, launcher, reach, closures, flakes } = this.#o;
    const status = supervisor.status(e.name);
    const t = e.spec ? (e as Loaded) : null;
    const mac = t ? launcher.mac(t) : (status.booted?.mac ?? null);
    const ipv6 = mac ? reach.ipv6(mac) : null;
    const ipv4 = mac && (isLive(status) || status.state === 'stopping') ? reach.ipv4(mac) : null;
    const paths = launcher.paths(e.name);
    const ssh = t && isLive(status) ? this.#sshArgv(t, ipv4, ipv6, settings) : null;
    const flakeEval = flakes.evalState(e.flake);
    return vmView({
      entry: e,
      status,
      built: closures.built(e.name),
      build: closures.buildInfo(
        e.name,
        e.spec ? { drvPath: e.spec.drvPath, lastEvalAt: flakeEval.lastEvalAt, flakeOk: flakeEval.ok } : null,
      ),
      devices: t ? launcher.facts(t) : null,
      specProblem: t ? launcher.specProblem(t) : null,
      mac,
      ipv6,
      ipv4,
      sshCommand: ssh ? sshCommandLine(ssh) : null,
      settings,
      consoleLog: paths.consoleLog,
      stateDir: paths.dir,
      ...(t ? { shares: launcher.shares(t) } : {}),
      ...(this.#o.disks ? { disks: this.#o.disks.view(e.name, e.spec) } : {}),
      macShared: this.#shared(e, macs),
      applied: this.#o.applied?.(e.name) ?? null,
      usage: status.state === 'running' ? (this.#o.usage?.(e.name) ?? null) : null,
      rootKey: t ? launcher.rootKey(t) : false,
      platform: this.#o.platform?.(e.spec, t ? launcher.rootKey(t) : false) ?? null,
    });
  }

  #shared(e: VmEntry, macs: Map<string, string[]> | undefined): string[] {
    if (!macs) return this.macShared(e.name);
    const mac = this.#macOf(e);
    return mac ? (macs.get(mac) ?? []).filter((n) => n !== e.name) : [];
  }

  /** Every closure some VM was last built to or currently boots (the GC roots to keep). */
  closuresInUse(): Set<string> {
    const { flakes, supervisor, closures } = this.#o;
    const keep = new Set<string>();
    for (const name of new Set([...flakes.defined().keys(), ...supervisor.list().map((v) => v.name)])) {
      const built = closures.built(name);
      if (built) keep.add(built.outPath);
      const booted = supervisor.status(name).booted;
      if (booted) keep.add(booted.outPath);
      // Switched in place: the guest runs this one until its next boot.
      if (booted?.switchedTo) keep.add(booted.switchedTo.outPath);
    }
    return keep;
  }

  async ips(name: string): Promise<{ ipv6: string | null; ipv4: string | null }> {
    await this.#o.reach.refreshLeases();
    const v = this.view(this.entry(name));
    return { ipv6: v.ipv6, ipv4: v.ipv4 };
  }

  /** How to ssh into a running VM: its routes (vsock, IPv4, IPv6), user, key and known_hosts. */
  sshDestination(t: Loaded, ipv4: string | null, ipv6: string | null, settings = this.#o.settings()): SshDestination {
    const { launcher, supervisor } = this.#o;
    const paths = launcher.paths(t.name);
    const hostKeys = launcher.hostKeys(t);
    // Only a run booted with the vsock device has it (one from before nixvm attached it has not).
    const vsock = supervisor.status(t.name).booted?.facts?.sshVsock === true ? (paths.sshSocket ?? null) : null;
    return {
      alias: launcher.sshAlias(t.name),
      user: sshUser(t, settings),
      port: t.spec.ssh.port,
      host: ipv4 ?? ipv6,
      ipv4,
      ipv6,
      vsock,
      identityFile: launcher.sshKey(t.name)?.privateKey ?? null,
      knownHostsFile: hostKeys.file,
      strictHostKeyChecking: hostKeys.strict,
    };
  }

  /** The ssh argv the snapshot offers (vsock when the guest answers there, else an address); null when none. */
  #sshArgv(t: Loaded, ipv4: string | null, ipv6: string | null, settings: Settings): string[] | null {
    if (!t.spec.ssh.enabled) return null;
    const d = this.sshDestination(t, ipv4, ipv6, settings);
    const route = this.#o.reach.sshRoute(t.name, d);
    if (!route) return null;
    try {
      return sshArgv(sshTargetFor(d, { nixvm: this.#o.nixvm ?? ['nixvm'], route }));
    } catch (err) {
      if (err instanceof SshTargetError) return null;
      throw err;
    }
  }

  /** One ssh config entry per running VM with sshd (a stopped VM has none: ssh to it could only hang). */
  sshConfigEntries(snapshot: AgentSnapshot): SshConfigEntry[] {
    const out: SshConfigEntry[] = [];
    for (const v of snapshot.vms) {
      if (v.state !== 'running' || !v.spec?.ssh.enabled) continue;
      const t = this.#o.flakes.defined().get(v.name);
      if (!t?.spec) continue;
      const d = this.sshDestination(t as Loaded, v.ipv4, v.ipv6, snapshot.settings);
      const route = this.#o.reach.sshRoute(v.name, d);
      if (!route) continue;
      out.push({ vm: v.name, alias: d.alias, target: sshTargetFor(d, { nixvm: this.#o.nixvm ?? ['nixvm'], route }) });
    }
    return out;
  }

  /**
   * ssh to the guest as root, for nixvm's own commands (a switch): the route the agent found,
   * no prompts (BatchMode), a connect timeout. Null when it has no route yet.
   */
  rootSshArgv(name: string): string[] | null {
    const r = this.rootSshTarget(name);
    return r ? sshArgv(r.target) : null;
  }

  /** The same as a target (for an ssh config nix's own ssh reads), with the VM's alias. */
  rootSshTarget(name: string): { alias: string; target: SshTarget } | null {
    const t = this.loaded(name);
    const v = this.view(t);
    const d = { ...this.sshDestination(t, v.ipv4, v.ipv6), user: 'root' };
    const route = this.#o.reach.sshRoute(name, d);
    if (!route) return null;
    const target = sshTargetFor(d, { nixvm: this.#o.nixvm ?? ['nixvm'], route });
    return { alias: d.alias, target: { ...target, connectTimeout: 10, extraOptions: { BatchMode: 'yes' } } };
  }

  async sshCommand(
    name: string,
  ): Promise<{ argv: string[]; command: string; target: SshDestination; route: SshRoute }> {
    await this.#o.reach.refreshLeases();
    const t = this.loaded(name);
    if (!t.spec.ssh.enabled) {
      throw new AgentError(
        'failed',
        `${JSON.stringify(name)} does not run an ssh server; set services.openssh.enable = true in its configuration and apply it.`,
      );
    }
    if (!isLive(this.#o.supervisor.status(name))) {
      throw new AgentError('failed', `${JSON.stringify(name)} is not running; start it first.`);
    }
    const v = this.view(t);
    const target = this.sshDestination(t, v.ipv4, v.ipv6);
    const route = this.#o.reach.sshRoute(name, target);
    if (!route)
      throw new AgentError('failed', `${JSON.stringify(name)} has no address yet; wait for it to finish booting.`);
    let argv: string[];
    try {
      argv = sshArgv(sshTargetFor(target, { nixvm: this.#o.nixvm ?? ['nixvm'], route }));
    } catch (err) {
      if (!(err instanceof SshTargetError)) throw err;
      throw new AgentError(
        'failed',
        `Cannot ssh into ${JSON.stringify(name)}: ${err.message.charAt(0).toLowerCase()}${err.message.slice(1)}`,
      );
    }
    return { argv, command: sshCommandLine(argv), target, route };
  }

  /** The spec and the exact argv it would boot with. */
  inspect(name: string): { spec: VmSpec | null; argv: string[] } {
    const t = this.loaded(name);
    const booted = this.#o.supervisor.status(name).booted;
    const built = this.#o.closures.built(name);
    // The closure it would boot: the built one when current, else the path the .drv declares.
    const closure =
      built && built.drvPath === t.spec.drvPath
        ? built.outPath
        : booted?.drvPath === t.spec.drvPath
          ? booted.outPath
          : drvOutPath(t.spec.drvPath);
    const out = closure ?? `/nix/store/${path.basename(t.spec.drvPath, '.drv')}`;
    const image = t.spec.storeImage && this.#o.images ? this.#o.images.pathFor(out) : null;
    return {
      spec: t.spec,
      argv: this.#o.launcher.argv(t, out, undefined, image),
    };
  }

  async logs(name: string, kind: LogKind, lines: number): Promise<{ path: string | null; lines: string[] }> {
    this.entry(name);
    const file = kind === 'console' ? this.#o.launcher.paths(name).consoleLog : this.#o.closures.logPath(name);
    if (!file || !fs.existsSync(file)) return { path: file, lines: [] };
    // Bounded however the guest writes: lines cut at MAX_LOG_LINE_BYTES, the answer at MAX_LOG_REPLY_BYTES.
    const opts = { maxLineBytes: MAX_LOG_LINE_BYTES, maxBytes: MAX_LOG_REPLY_BYTES };
    // The console spans restarts: the runs before this one fill what this one leaves of `lines`.
    return {
      path: file,
      lines: kind === 'console' ? await tailRuns(file, lines, opts) : await tail(file, lines, opts),
    };
  }
}

/** The ssh user: the per-VM setting, else the first normal user the config defines. */
function sshUser(t: Loaded, settings: Settings): string {
  return ownValue(settings.sshUser, t.name) ?? t.spec.ssh.user;
}
