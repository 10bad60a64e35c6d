/**
 * The DHCP leases macOS's bootpd hands out on the vmnet NAT network, read from
 * /var/db/dhcpd_leases (NIXVM_LEASES_FILE in tests). The file is a list of brace blocks:
 *
 *     {
 *         name=nixos
 *         ip_address=192.168.64.3
 *         hw_address=1,52:54:0:12:3:4
 *         identifier=1,52:54:0:12:3:4
 *         lease=0x6740a1b2
 *     }
 *
 * bootpd drops leading zeros per octet, so MACs are compared as bytes, never as text. A guest
 * whose DHCP client sends an RFC 4361 identifier instead (systemd-networkd, newer Ubuntu) gets
 * `hw_address=ff,<iaid>:<duid>`, which is not a MAC: such an entry matches only when its DUID
 * embeds the link-layer address (DUID-LL/LLT), and then only if no plain entry matches.
 */
import { readFile } from 'node:fs/promises';
import { formatMac, InvalidMacError, parseMac } from './mac.ts';

export interface DhcpLease {
  name: string | null;
  ipAddress: string;
  /** Type before the comma in hw_address: `1` is Ethernet, `ff` a client identifier. */
  hwType: string | null;
  /** Raw hw_address after the comma, as bootpd wrote it. */
  hwAddress: string | null;
  /** Canonical MAC when hw_address (or identifier) is an Ethernet address. */
  mac: string | null;
  /** Canonical MAC found inside an `ff,` identifier's DUID-LL/LLT, if any. */
  duidMac: string | null;
  identifier: string | null;
  /** bootpd's `lease=` (hex epoch seconds of expiry): larger is newer. Null when absent or garbled. */
  lease: number | null;
  /** Position in the file (ties go to the earlier entry, which bootpd writes first). */
  index: number;
}

function parseIpv4(s: string): string | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return parts.join('.');
}

function parseLeaseTime(s: string): number | null {
  if (/^0x[0-9a-f]+$/i.test(s)) return parseInt(s.slice(2), 16);
  if (/^\d+$/.test(s)) return parseInt(s, 10);
  return null;
}

/** Split `type,address`; a bare address (no type) is taken as Ethernet. */
function splitHw(value: string): { type: string | null; addr: string } {
  const i = value.indexOf(',');
  if (i < 0) return { type: null, addr: value };
  return { type: value.slice(0, i).trim().toLowerCase(), addr: value.slice(i + 1).trim() };
}

function isEthernetType(type: string | null): boolean {
  return type === null || parseInt(type, 16) === 1;
}

function hexBytes(s: string): number[] | null {
  const parts = s.split(':');
  if (!parts.every((p) => /^[0-9a-f]{1,2}$/i.test(p))) return null;
  return parts.map((p) => parseInt(p, 16));
}

/**
 * The Ethernet address inside an RFC 4361 client identifier (`ff` type): 4 bytes of IAID, then a
 * DUID. Only DUID-LLT (type 1) and DUID-LL (type 3) with hardware type 1 carry a MAC; DUID-EN
 * (systemd's default, type 2) and DUID-UUID do not.
 */
function macFromClientId(addr: string): string | null {
  const b = hexBytes(addr);
  if (!b || b.length < 8) return null;
  const duid = b.slice(4);
  const duidType = (duid[0]! << 8) | duid[1]!;
  const hwType = (duid[2]! << 8) | duid[3]!;
  if (hwType !== 1) return null;
  if (duidType === 1 && duid.length === 14) return formatMac(duid.slice(8));
  if (duidType === 3 && duid.length === 10) return formatMac(duid.slice(4));
  return null;
}

function ethernetMac(value: string | undefined): string | null {
  if (!value) return null;
  const { type, addr } = splitHw(value);
  if (!isEthernetType(type)) return null;
  const o = parseMac(addr);
  return o ? formatMac(o) : null;
}

function clientIdMac(value: string | undefined): string | null {
  if (!value) return null;
  const { type, addr } = splitHw(value);
  return type !== null && parseInt(type, 16) === 0xff ? macFromClientId(addr) : null;
}

function toLease(fields: Map<string, string>, index: number): DhcpLease | null {
  const ip = parseIpv4(fields.get('ip_address') ?? '');
  if (!ip) return null;
  const hw = fields.get('hw_address');
  const id = fields.get('identifier');
  const split = hw !== undefined ? splitHw(hw) : null;
  const leaseRaw = fields.get('lease');
  return {
    name: fields.get('name') || null,
    ipAddress: ip,
    hwType: split?.type ?? null,
    hwAddress: split?.addr ?? null,
    // hw_address is what bootpd keys on; identifier is only a fallback for a block without it.
    mac: hw !== undefined ? ethernetMac(hw) : ethernetMac(id),
    duidMac: clientIdMac(hw) ?? clientIdMac(id),
    identifier: id ?? null,
    lease: leaseRaw !== undefined ? parseLeaseTime(leaseRaw) : null,
    index,
  };
}

/**
 * Every usable entry of a leases file, in file order. Junk between blocks, CRLF line ends,
 * unknown keys, blocks without an ip_address, and a final block cut off mid-write are skipped.
 */
export function parseLeases(text: string): DhcpLease[] {
  const out: DhcpLease[] = [];
  let fields: Map<string, string> | null = null;
  let index = 0;
  const take = (line: string): void => {
    if (!fields) return;
    const eq = line.indexOf('=');
    if (eq <= 0) return;
    const key = line.slice(0, eq).trim().toLowerCase();
    // The first value wins: a duplicated key inside one block is corruption, not an update.
    if (!fields.has(key)) fields.set(key, line.slice(eq + 1).trim());
  };
  for (const raw of text.split(/\r\n|\n|\r/)) {
    let line = raw.trim();
    if (line.startsWith('{')) {
      // A new block; an unterminated previous one is dropped.
      fields = new Map();
      line = line.slice(1).trim();
    }
    const closes = line.endsWith('}');
    if (closes) line = line.slice(0, -1).trim();
    if (line) take(line);
    if (closes && fields) {
      const lease = toLease(fields, index++);
      if (lease) out.push(lease);
      fields = null;
    }
  }
  return out;
}

/** Newer lease first; a lease without a time loses to one with; ties keep file order. */
function newer(a: DhcpLease, b: DhcpLease): boolean {
  const ta = a.lease ?? -1;
  const tb = b.lease ?? -1;
  return ta !== tb ? ta > tb : a.index < b.index;
}

/**
 * The lease for a MAC: the newest entry whose hw_address is that MAC, else the newest whose
 * client-identifier DUID embeds it, else null.
 */
export function findLeaseForMac(leases: readonly DhcpLease[], mac: string): DhcpLease | null {
  const o = parseMac(mac);
  if (!o) throw new InvalidMacError(mac);
  const want = formatMac(o);
  let best: DhcpLease | null = null;
  for (const l of leases) if (l.mac === want && (!best || newer(l, best))) best = l;
  if (best) return best;
  for (const l of leases) if (l.duidMac === want && (!best || newer(l, best))) best = l;
  return best;
}

/** Reading the leases file failed for a reason other than its absence. */
export class LeasesReadError extends Error {
  readonly file: string;
  readonly code: string | undefined;
  constructor(file: string, code: string | undefined) {
    super(
      `Could not read the DHCP leases file ${file} (${code ?? 'unknown error'}); check its permissions or point NIXVM_LEASES_FILE at the right file.`,
    );
    this.name = 'LeasesReadError';
    this.file = file;
    this.code = code;
  }
}

/** All entries of a leases file; a missing file (no VM has ever asked for a lease) is empty. */
export async function readLeases(leasesFile: string): Promise<DhcpLease[]> {
  let text: string;
  try {
    text = await readFile(leasesFile, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    throw new LeasesReadError(leasesFile, code);
  }
  return parseLeases(text);
}

/**
 * The IPv4 address bootpd leased to this MAC, or null when it has none (yet), including when
 * the leases file does not exist. Throws InvalidMacError for a malformed MAC and
 * LeasesReadError when the file exists but cannot be read.
 */
export async function ipv4ForMac(leasesFile: string, mac: string): Promise<string | null> {
  if (!parseMac(mac)) throw new InvalidMacError(mac);
  return findLeaseForMac(await readLeases(leasesFile), mac)?.ipAddress ?? null;
}
