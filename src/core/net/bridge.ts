/**
 * Which vmnet bridge a VM sits on, so its IPv6 link-local gets the right `%zone`.
 * Virtualization.framework's NAT attachment puts each VM's `vmenetN` on a `bridgeNNN` that
 * carries the host side of 192.168.64.0/24 (usually `bridge100`; `bridge101`… when other
 * vmnet users such as Docker or UTM got there first). We read that from macOS's `ifconfig`.
 */
import { run, type RunOptions, type RunResult } from '../../host/runner.ts';

export const DEFAULT_BRIDGE = 'bridge100';

export interface InetAddr {
  address: string;
  /** Prefix length from the hex netmask (`0xffffff00` → 24), null when absent. */
  prefixLen: number | null;
}

export interface Inet6Addr {
  /** Without the `%zone`. */
  address: string;
  prefixLen: number | null;
}

export interface NetInterface {
  name: string;
  flags: string[];
  up: boolean;
  ether: string | null;
  inet: InetAddr[];
  inet6: Inet6Addr[];
  /** Bridge members (`member: vmenet0 flags=…`), in order. */
  members: string[];
  /** `status: active` → 'active'. */
  status: string | null;
}

function netmaskToPrefix(mask: string): number | null {
  let n: number;
  if (/^0x[0-9a-f]{1,8}$/i.test(mask)) n = parseInt(mask.slice(2), 16) >>> 0;
  else {
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(mask);
    if (!m) return null;
    n = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  }
  let len = 0;
  while (len < 32 && n & (0x80000000 >>> len)) len++;
  // A non-contiguous mask is not a prefix.
  return (n << len) >>> 0 === 0 || len === 32 ? len : null;
}

const HEADER = /^([A-Za-z0-9_.-]+):\s+flags=[0-9a-fA-F]+<([^>]*)>/;

/**
 * Parse macOS `ifconfig` output into interfaces. Unknown lines are ignored, so a new macOS
 * adding fields does not break detection.
 */
export function parseIfconfig(text: string): NetInterface[] {
  const out: NetInterface[] = [];
  let cur: NetInterface | null = null;
  for (const raw of text.split(/\r?\n/)) {
    if (!raw.trim()) continue;
    const header = /^\S/.test(raw) ? HEADER.exec(raw) : null;
    if (header) {
      const flags = header[2] ? header[2].split(',').filter(Boolean) : [];
      cur = {
        name: header[1]!,
        flags,
        up: flags.includes('UP'),
        ether: null,
        inet: [],
        inet6: [],
        members: [],
        status: null,
      };
      out.push(cur);
      continue;
    }
    if (/^\S/.test(raw)) {
      // A top-level line that is not an interface header (junk): stop attributing lines.
      cur = null;
      continue;
    }
    if (!cur) continue;
    const words = raw.trim().split(/\s+/);
    const [key, val] = words;
    if (!val) continue;
    switch (key) {
      case 'ether':
        cur.ether = val;
        break;
      case 'inet': {
        const i = words.indexOf('netmask');
        cur.inet.push({ address: val, prefixLen: i > 0 && words[i + 1] ? netmaskToPrefix(words[i + 1]!) : null });
        break;
      }
      case 'inet6': {
        const i = words.indexOf('prefixlen');
        const len = i > 0 ? Number(words[i + 1]) : NaN;
        cur.inet6.push({ address: val.split('%')[0]!, prefixLen: Number.isInteger(len) ? len : null });
        break;
      }
      case 'member:':
        cur.members.push(val);
        break;
      case 'status:':
        cur.status = val;
        break;
    }
  }
  return out;
}

function ipv4ToInt(a: string): number | null {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (!m) return null;
  const p = m.slice(1).map(Number);
  if (p.some((x) => x > 255)) return null;
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

function inSubnet(ip: string, net: InetAddr): boolean {
  const a = ipv4ToInt(ip);
  const b = ipv4ToInt(net.address);
  if (a === null || b === null || net.prefixLen === null) return false;
  const mask = net.prefixLen === 0 ? 0 : (0xffffffff << (32 - net.prefixLen)) >>> 0;
  return (a & mask) === (b & mask);
}

const isBridge = (i: NetInterface): boolean => /^bridge\d+$/.test(i.name);

export type BridgeReason = 'setting' | 'member' | 'subnet' | 'vmnet-subnet' | 'default';

export interface BridgeChoice {
  name: string;
  /** Why this one: the setting, membership of the VM's vmenet, its IPv4's subnet, the usual vmnet subnet, or the default. */
  reason: BridgeReason;
}

export interface PickBridgeOptions {
  /** Settings.bridgeInterface: wins over everything. */
  setting?: string | null;
  /** The VM's `vmenetN`, when known. */
  vmenet?: string | null;
  /** The VM's IPv4 from the leases, when known: the bridge whose subnet holds it. */
  ipv4?: string | null;
}

/**
 * Pick the bridge for a VM: the setting; else the bridge whose members include its vmenet;
 * else the bridge whose subnet holds its IPv4; else the bridge on vmnet's usual
 * 192.168.64.0/24; else `bridge100`.
 */
export function pickBridge(ifaces: readonly NetInterface[], opts: PickBridgeOptions = {}): BridgeChoice {
  if (opts.setting) return { name: opts.setting, reason: 'setting' };
  const bridges = ifaces.filter(isBridge);
  if (opts.vmenet) {
    const b = bridges.find((i) => i.members.includes(opts.vmenet!));
    if (b) return { name: b.name, reason: 'member' };
  }
  if (opts.ipv4) {
    const b = bridges.find((i) => i.inet.some((n) => inSubnet(opts.ipv4!, n)));
    if (b) return { name: b.name, reason: 'subnet' };
  }
  const vmnet = bridges.find((i) => i.inet.some((n) => n.address.startsWith('192.168.64.')));
  if (vmnet) return { name: vmnet.name, reason: 'vmnet-subnet' };
  return { name: DEFAULT_BRIDGE, reason: 'default' };
}

/** The argv the detector runs: all interfaces, or one. */
export function ifconfigArgv(name?: string): string[] {
  return name ? ['ifconfig', name] : ['ifconfig'];
}

export type Runner = (argv: string[], opts?: RunOptions) => Promise<RunResult>;

export interface BridgeDetectorOptions {
  /** Defaults to the project runner; tests pass a recorder. */
  runner?: Runner;
  /** Defaults to process.platform: anywhere but macOS, ifconfig's output means nothing here. */
  platform?: NodeJS.Platform;
  /** How long one `ifconfig` may take. */
  timeoutMs?: number;
  /** How long an answer is reused. */
  cacheMs?: number;
  now?: () => number;
}

/** Where ifconfig lives on macOS; launchd's PATH has them, but a test env may not. */
const IFCONFIG_DIRS = ['/sbin', '/usr/sbin'];

/**
 * Runs `ifconfig` (through the runner, with a short timeout) at most once per cache period,
 * however many VMs ask, and answers from the parsed result. Failures are cached too and fall
 * back to the default bridge: a missing zone is better than a blocked snapshot.
 */
export class BridgeDetector {
  readonly #runner: Runner;
  readonly #platform: NodeJS.Platform;
  readonly #timeoutMs: number;
  readonly #cacheMs: number;
  readonly #now: () => number;
  #cached: { at: number; ifaces: NetInterface[] } | null = null;
  #inflight: Promise<NetInterface[]> | null = null;
  /** The last failure, for the agent's log. */
  lastError: string | null = null;

  constructor(opts: BridgeDetectorOptions = {}) {
    this.#runner = opts.runner ?? run;
    this.#platform = opts.platform ?? process.platform;
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#cacheMs = opts.cacheMs ?? 10_000;
    this.#now = opts.now ?? Date.now;
  }

  /** The host's interfaces; empty off macOS or when ifconfig fails. */
  async interfaces(): Promise<NetInterface[]> {
    if (this.#platform !== 'darwin') return [];
    if (this.#cached && this.#now() - this.#cached.at < this.#cacheMs) return this.#cached.ifaces;
    if (this.#inflight) return this.#inflight;
    this.#inflight = (async () => {
      let ifaces: NetInterface[] = [];
      try {
        const path = (process.env.PATH ?? '').split(':').filter(Boolean);
        const r = await this.#runner(ifconfigArgv(), {
          timeoutMs: this.#timeoutMs,
          searchPath: [...IFCONFIG_DIRS, ...path],
        });
        ifaces = parseIfconfig(r.stdout);
        this.lastError = null;
      } catch (e) {
        this.lastError = `Could not list network interfaces with ifconfig (${(e as Error).message}); using ${DEFAULT_BRIDGE} unless a bridge is set in the settings.`;
      }
      this.#cached = { at: this.#now(), ifaces };
      return ifaces;
    })().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  /** Forget the cached answer (a VM just started: a new vmenet may have appeared). */
  invalidate(): void {
    this.#cached = null;
  }

  /** The bridge for a VM; the setting short-circuits without running anything. */
  async bridgeFor(opts: PickBridgeOptions = {}): Promise<BridgeChoice> {
    if (opts.setting) return pickBridge([], opts);
    return pickBridge(await this.interfaces(), opts);
  }
}
