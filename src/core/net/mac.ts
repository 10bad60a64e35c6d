/**
 * MAC addresses: parsing the many spellings users and macOS write, comparing them octet by
 * octet, and generating the stable address a VM gets when its config names none.
 *
 * macOS's bootpd writes `52:54:0:12:3:4` (leading zeros dropped), nix configs often write
 * upper case, Windows-style tools write `52-54-00-…`; all of them are the same six bytes.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';

/** Six bytes, each 0–255. */
export type MacOctets = readonly [number, number, number, number, number, number];

const OCTET = /^[0-9a-f]{1,2}$/i;

/**
 * Parse a MAC in any common spelling: `:` or `-` separated octets of one or two hex digits
 * (any case), or twelve bare hex digits. Returns null for anything else.
 */
export function parseMac(input: string): MacOctets | null {
  const s = input.trim();
  let parts: string[];
  if (/^[0-9a-f]{12}$/i.test(s)) {
    parts = s.match(/../g) ?? [];
  } else {
    // One separator style per address: `52:54-00…` is a typo, not a MAC.
    const sep = s.includes(':') ? ':' : '-';
    if (sep === ':' && s.includes('-')) return null;
    parts = s.split(sep);
  }
  if (parts.length !== 6 || !parts.every((p) => OCTET.test(p))) return null;
  const o = parts.map((p) => parseInt(p, 16));
  return [o[0]!, o[1]!, o[2]!, o[3]!, o[4]!, o[5]!];
}

/** The canonical spelling: lower case, colon separated, two digits per octet. */
export function formatMac(octets: readonly number[]): string {
  if (octets.length !== 6 || !octets.every((o) => Number.isInteger(o) && o >= 0 && o <= 255)) {
    throw new RangeError(`A MAC address has six octets of 0–255, got [${octets.join(', ')}].`);
  }
  return octets.map((o) => o.toString(16).padStart(2, '0')).join(':');
}

/** A MAC that is not one: says what was given and what a valid one looks like. */
export class InvalidMacError extends Error {
  readonly value: string;
  constructor(value: string, what = 'MAC address') {
    super(`${JSON.stringify(value)} is not a valid ${what}; write six hex octets such as 52:54:00:12:34:56.`);
    this.name = 'InvalidMacError';
    this.value = value;
  }
}

/** Canonical form of any accepted spelling; throws InvalidMacError otherwise. */
export function normalizeMac(input: string): string {
  const o = parseMac(input);
  if (!o) throw new InvalidMacError(input);
  return formatMac(o);
}

/** Same six bytes, whatever the spelling. Anything unparsable equals nothing. */
export function macEquals(a: string, b: string): boolean {
  const x = parseMac(a);
  const y = parseMac(b);
  if (!x || !y) return false;
  return x.every((v, i) => v === y[i]);
}

/** The I/G bit clear: an address for one interface, not a group. */
export function isUnicastMac(mac: string): boolean {
  const o = parseMac(mac);
  return o !== null && (o[0] & 0x01) === 0;
}

/** The U/L bit set: not from a vendor's OUI, so it cannot clash with real hardware. */
export function isLocallyAdministeredMac(mac: string): boolean {
  const o = parseMac(mac);
  return o !== null && (o[0] & 0x02) !== 0;
}

/**
 * A stable MAC for a VM whose config sets none: the same flake and name always give the same
 * address (so its IPv6 link-local and its DHCP lease never change), different VMs differ.
 * Locally administered and unicast, as IEEE 802 requires for made-up addresses.
 *
 * The flake path is resolved (trailing slashes, `.`/`..`) but not realpath'd: renaming or
 * moving the flake gives its VMs new addresses, like a new machine.
 */
export function generateMac(flakeDir: string, vmName: string): string {
  const h = createHash('sha256')
    .update('nixvm-mac\0')
    .update(path.resolve(flakeDir))
    .update('\0')
    .update(vmName)
    .digest();
  const octets = [h[0]!, h[1]!, h[2]!, h[3]!, h[4]!, h[5]!];
  // Clear the multicast bit, set the locally-administered bit.
  octets[0] = (octets[0]! & 0xfc) | 0x02;
  return formatMac(octets);
}
