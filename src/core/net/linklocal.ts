/**
 * The IPv6 link-local address a VM gives itself from its MAC (modified EUI-64, RFC 4291
 * appendix A), which needs no DHCP and is usable as soon as the guest's network is up.
 * NixOS guests use EUI-64 link-locals by default (the kernel's addr_gen_mode 0); a guest
 * configured for stable-privacy addresses will not answer on this one.
 */
import { InvalidMacError, parseMac } from './mac.ts';

/** The 8 groups of an IPv6 address, compressed per RFC 5952 (lower case, longest zero run as `::`). */
export function formatIpv6(groups: readonly number[]): string {
  if (groups.length !== 8 || !groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff)) {
    throw new RangeError(`An IPv6 address has eight 16-bit groups, got [${groups.join(', ')}].`);
  }
  // Longest run of at least two zero groups; the first one wins a tie (RFC 5952 §4.2.3).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

/** `fe80::…` from a MAC: insert ff:fe in the middle, flip the universal/local bit. */
export function linkLocalFromMac(mac: string, scope?: string | null): string {
  const o = parseMac(mac);
  if (!o) throw new InvalidMacError(mac);
  const groups = [
    0xfe80,
    0,
    0,
    0,
    (((o[0] ^ 0x02) << 8) | o[1]) >>> 0,
    (o[2] << 8) | 0xff,
    (0xfe << 8) | o[3],
    (o[4] << 8) | o[5],
  ];
  const addr = formatIpv6(groups);
  return scope ? `${addr}%${scope}` : addr;
}

/** Split `addr%zone` into its parts (zone null when there is none). */
export function splitZone(address: string): { address: string; zone: string | null } {
  const i = address.indexOf('%');
  if (i < 0) return { address, zone: null };
  return { address: address.slice(0, i), zone: address.slice(i + 1) || null };
}

/** True for `fe80::/10` addresses, with or without a zone. */
export function isLinkLocalIpv6(address: string): boolean {
  const a = splitZone(address).address.toLowerCase();
  return /^fe[89ab][0-9a-f]:/.test(a);
}
