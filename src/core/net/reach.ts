/**
 * How to reach a VM: its IPv6 link-local address (from the MAC, on the vmnet bridge), its IPv4
 * (from macOS's DHCP leases, looked at while some running VM still waits for one), the ssh argv,
 * and nixvm's own ssh config file with one `Host nixvm-<name>` per VM (users Include it; nixvm
 * only ever reads ~/.ssh/config).
 */
import fs from 'node:fs';
import { errorMessage } from '../../api/errors.ts';
import type { AgentSnapshot, SshConfigInfo } from '../../api/types.ts';
import { BridgeDetector, DEFAULT_BRIDGE } from './bridge.ts';
import { findLeaseForMac, readLeases, type DhcpLease } from './leases.ts';
import { linkLocalFromMac } from './linklocal.ts';
import { sshBanner } from './ssh-probe.ts';
import {
  includeLine,
  sshConfigIncludes,
  sshConfigPath,
  userSshConfigPath,
  writeSshConfig,
  type SshConfigEntry,
  type SshDestination,
  type SshRoute,
} from './ssh.ts';

interface VsockProbe {
  socket: string;
  ok: boolean;
  inFlight: boolean;
  nextAt: number;
}

export interface ReachOptions {
  leasesFile: string;
  /** nixvm's ssh config lives in the state dir. */
  stateDir: string;
  /** Addresses changed: a new snapshot is due. */
  changed(): void;
  log(line: string): void;
}

export class Reach {
  readonly #o: ReachOptions;
  readonly #bridge = new BridgeDetector();
  readonly #sshConfig: SshConfigInfo;
  #leases: { mtimeMs: number; list: DhcpLease[] } = { mtimeMs: -1, list: [] };
  #bridgeSetting: string | null = null;
  #bridgeName: string = DEFAULT_BRIDGE;
  /** The leased IPv4 the bridge was last detected for. */
  #bridgeProbe: string | null = null;
  /** Since when some running VM waits for its lease (for backing off). */
  #leaseWaitSince: number | null = null;
  #leaseTimer: NodeJS.Timeout | null = null;
  /** The newest snapshot: whether some running VM still waits for a lease. */
  #lastSnapshot: AgentSnapshot | null = null;
  #lastSshConfig = '';
  /** The ssh config write in flight, awaited on close so nothing is written after. */
  #sshWrite: Promise<void> | null = null;
  /** The entries to write next; one write at a time, the newest wins (two in flight could land out of order). */
  #sshPending: readonly SshConfigEntry[] | null = null;
  /** VMs the ssh config had to leave out, one sentence each. */
  #sshProblems: string[] = [];
  #closed = false;
  readonly #vsockProbes = new Map<string, VsockProbe>();

  constructor(o: ReachOptions) {
    this.#o = o;
    const file = sshConfigPath(o.stateDir);
    this.#sshConfig = { path: file, includeLine: includeLine(file), status: 'missing' };
  }

  /** nixvm's ssh config and whether ~/.ssh/config includes it. */
  get sshConfig(): SshConfigInfo {
    return { ...this.#sshConfig };
  }

  /** Entries the ssh config had to leave out (a bad port or user), one sentence naming each VM. */
  get problems(): string[] {
    return [...this.#sshProblems];
  }

  async init(bridgeSetting: string | null): Promise<void> {
    this.#bridgeSetting = bridgeSetting;
    this.#bridgeName = await this.#detectBridge();
    this.#scheduleLeaseRefresh();
    await this.#checkSshInclude();
  }

  /** The bridge setting changed. */
  async setBridge(setting: string | null): Promise<void> {
    this.#bridgeSetting = setting;
    this.#bridgeName = await this.#detectBridge();
    this.#o.changed();
  }

  /** Link-local with zone; null for a malformed MAC (the spec check reports it). */
  ipv6(mac: string): string | null {
    try {
      return linkLocalFromMac(mac, this.#bridgeName);
    } catch {
      return null;
    }
  }

  /** The leased IPv4 for a MAC; null when none (or a malformed MAC). */
  ipv4(mac: string): string | null {
    try {
      return findLeaseForMac(this.#leases.list, mac)?.ipAddress ?? null;
    } catch {
      return null;
    }
  }

  /**
   * Which way to ssh into a running VM: vsock once its sshd has answered there (probed in the
   * background, every 2 s until it does), else its IPv4, else its IPv6 link-local; null when none.
   */
  sshRoute(name: string, d: SshDestination): SshRoute | null {
    if (d.vsock) {
      let p = this.#vsockProbes.get(name);
      if (!p || p.socket !== d.vsock) {
        p = { socket: d.vsock, ok: false, inFlight: false, nextAt: 0 };
        this.#vsockProbes.set(name, p);
      }
      if (p.ok) return 'vsock';
      this.#probeVsock(p);
    }
    if (d.ipv4) return 'ipv4';
    if (d.ipv6) return 'ipv6';
    return null;
  }

  #probeVsock(p: VsockProbe): void {
    if (this.#closed || p.inFlight || Date.now() < p.nextAt) return;
    p.inFlight = true;
    // A guest's sshd may take seconds to greet while the Mac is busy (the simulator's `sshd -i`
    // on a loaded CI machine did): a short timeout would never let the probe succeed.
    void sshBanner({ path: p.socket }, 6000).then((banner) => {
      p.inFlight = false;
      p.nextAt = Date.now() + 2000;
      if (banner && !p.ok) {
        p.ok = true;
        this.#o.changed();
      } else if (!banner && !this.#closed) {
        // Looked at again with the next snapshot after nextAt; make sure one comes.
        const t = setTimeout(() => this.#o.changed(), 2000);
        t.unref();
      }
    });
  }

  /** Re-read the leases file when it changed (a stat is the whole cost otherwise). */
  async refreshLeases(): Promise<boolean> {
    let mtimeMs = 0;
    try {
      mtimeMs = fs.statSync(this.#o.leasesFile).mtimeMs;
    } catch {
      mtimeMs = 0;
    }
    if (mtimeMs === this.#leases.mtimeMs) return false;
    const list = mtimeMs ? await readLeases(this.#o.leasesFile).catch(() => []) : [];
    this.#leases = { mtimeMs, list };
    return true;
  }

  /** After each snapshot: the ssh config, the bridge, the lease timer. */
  afterSnapshot(snapshot: AgentSnapshot, sshEntries: readonly SshConfigEntry[]): void {
    this.#lastSnapshot = snapshot;
    for (const v of snapshot.vms) if (v.state !== 'running' && v.state !== 'starting') this.#vsockProbes.delete(v.name);
    const idle = this.#sshPending === null && this.#sshWrite === null;
    this.#sshPending = sshEntries;
    if (idle) this.#sshWrite = this.#drainSshConfig();
    void this.#redetectBridge(snapshot);
    this.#scheduleLeaseRefresh(snapshot);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#sshWrite;
    if (this.#leaseTimer) clearTimeout(this.#leaseTimer);
  }

  async #detectBridge(): Promise<string> {
    if (this.#bridgeSetting) return this.#bridgeSetting;
    try {
      return (await this.#bridge.bridgeFor({})).name;
    } catch {
      return DEFAULT_BRIDGE;
    }
  }

  /**
   * vmnet creates its bridge when the first VM starts (bridge100, or bridge101… when that name is
   * taken): once a VM has a lease, ask ifconfig which bridge holds its subnet.
   */
  async #redetectBridge(snapshot: AgentSnapshot): Promise<void> {
    if (this.#bridgeSetting) return;
    const ipv4 = snapshot.vms.find((v) => v.state === 'running' && v.ipv4)?.ipv4 ?? null;
    if (!ipv4 || ipv4 === this.#bridgeProbe) return;
    this.#bridgeProbe = ipv4;
    try {
      const name = (await this.#bridge.bridgeFor({ ipv4 })).name;
      if (name !== this.#bridgeName) {
        this.#bridgeName = name;
        this.#o.changed();
      }
    } catch {
      // Keep the bridge we have.
    }
  }

  /**
   * While some running VM has no IPv4 yet, look at the leases file every second or so (bootpd
   * writes it shortly after boot); once every running VM has one, stop looking.
   */
  #scheduleLeaseRefresh(snapshot?: AgentSnapshot): void {
    if (this.#closed || this.#leaseTimer) return;
    const waiting = snapshot ? snapshot.vms.some((v) => v.state === 'running' && !v.ipv4) : true;
    if (!waiting) {
      this.#leaseWaitSince = null;
      return;
    }
    this.#leaseWaitSince ??= Date.now();
    // Every second while a VM boots; a guest that never asks for a lease gets a look every 10 s.
    const delay = Date.now() - this.#leaseWaitSince < 120_000 ? 1000 : 10_000;
    this.#leaseTimer = setTimeout(() => {
      this.#leaseTimer = null;
      void this.refreshLeases().then((changed) => {
        if (changed) this.#o.changed();
        else this.#scheduleLeaseRefresh(this.#lastSnapshot ?? undefined);
      });
    }, delay);
    this.#leaseTimer.unref();
  }

  /** Only reads ~/.ssh/config (a read-only or unreadable one is fine): is our file included? */
  async #checkSshInclude(): Promise<void> {
    try {
      this.#sshConfig.status = await sshConfigIncludes(userSshConfigPath(), this.#sshConfig.path);
    } catch {
      this.#sshConfig.status = 'unreadable';
    }
  }

  /**
   * One `Host nixvm-<name>` per running VM, in our own file; users Include it (we never edit
   * ~/.ssh/config). A stopped VM has no alias: ssh to it could only hang.
   */
  async #drainSshConfig(): Promise<void> {
    try {
      while (this.#sshPending !== null) {
        const entries = this.#sshPending;
        this.#sshPending = null;
        await this.#writeSshConfig(entries);
      }
    } finally {
      this.#sshWrite = null;
    }
  }

  async #writeSshConfig(entries: readonly SshConfigEntry[]): Promise<void> {
    const key = JSON.stringify(entries);
    if (key === this.#lastSshConfig) return;
    this.#lastSshConfig = key;
    try {
      const skipped = await writeSshConfig(this.#sshConfig.path, entries);
      for (const w of skipped) if (!this.#sshProblems.includes(w)) this.#o.log(w);
      const changed = JSON.stringify(skipped) !== JSON.stringify(this.#sshProblems);
      this.#sshProblems = skipped;
      if (changed) this.#o.changed();
      await this.#checkSshInclude();
    } catch (err) {
      this.#o.log(`could not write the ssh config: ${errorMessage(err)}`);
    }
  }
}
