import { describe, expect, it } from 'vitest';
import {
  formatMac,
  generateMac,
  InvalidMacError,
  isLocallyAdministeredMac,
  isUnicastMac,
  macEquals,
  normalizeMac,
  parseMac,
} from '../../src/core/net/mac.ts';
import { formatIpv6, isLinkLocalIpv6, linkLocalFromMac, splitZone } from '../../src/core/net/linklocal.ts';

describe('MAC parsing', () => {
  it('reads every spelling users and macOS write as the same six bytes', () => {
    const want = [0x52, 0x54, 0x00, 0x0a, 0x0b, 0xc0];
    for (const s of [
      '52:54:00:0a:0b:c0',
      '52:54:0:a:b:c0',
      '52:54:00:0A:0B:C0',
      '52-54-00-0a-0b-c0',
      '5254000A0BC0',
      '  52:54:0:A:b:C0\n',
    ]) {
      expect(parseMac(s), s).toEqual(want);
    }
    expect(normalizeMac('52:54:0:A:b:C0')).toBe('52:54:00:0a:0b:c0');
  });

  it('rejects what is not a MAC, naming the value', () => {
    for (const s of [
      '',
      '52:54:00:12:34',
      '52:54:00:12:34:56:78',
      '52:54:00:12:34:5g',
      '52:54:00:123:4:5',
      '52:54-00:12:34:56',
      'ff,f1:f5:dd:7f:0:2',
    ]) {
      expect(parseMac(s), s).toBeNull();
    }
    expect(() => normalizeMac('nope')).toThrow(InvalidMacError);
    expect(() => normalizeMac('nope')).toThrow(/"nope" is not a valid MAC address/);
  });

  it('compares octet by octet, not as text', () => {
    expect(macEquals('52:54:0:12:3:4', '52:54:00:12:03:04')).toBe(true);
    expect(macEquals('DE-AD-BE-EF-00-01', 'de:ad:be:ef:0:1')).toBe(true);
    // Textual prefix tricks must not match: 1:2:3:4:5:6 vs 1:2:3:4:5:60.
    expect(macEquals('1:2:3:4:5:6', '1:2:3:4:5:60')).toBe(false);
    expect(macEquals('garbage', 'garbage')).toBe(false);
  });

  it('formats with two lower-case digits per octet', () => {
    expect(formatMac([2, 0, 0xab, 1, 0, 0xff])).toBe('02:00:ab:01:00:ff');
    expect(() => formatMac([1, 2, 3])).toThrow(RangeError);
  });
});

describe('generated MACs', () => {
  it('are stable for a flake and name, and differ between VMs and flakes', () => {
    const a = generateMac('/Users/me/vms', 'web');
    expect(generateMac('/Users/me/vms', 'web')).toBe(a);
    expect(generateMac('/Users/me/vms/', 'web')).toBe(a);
    expect(generateMac('/Users/me/./vms', 'web')).toBe(a);
    expect(generateMac('/Users/me/vms', 'db')).not.toBe(a);
    expect(generateMac('/Users/other/vms', 'web')).not.toBe(a);
    expect(a).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });

  it('are locally administered unicast for many names (never a vendor or group address)', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const m = generateMac('/flake', `vm-${i}`);
      expect(isUnicastMac(m) && isLocallyAdministeredMac(m), m).toBe(true);
      seen.add(m);
    }
    expect(seen.size).toBe(2000);
    expect(isLocallyAdministeredMac('52:54:00:12:34:56')).toBe(true);
    expect(isLocallyAdministeredMac('a4:83:e7:01:0c:9f')).toBe(false);
    expect(isUnicastMac('01:00:5e:00:00:01')).toBe(false);
  });
});

describe('IPv6 link-local from a MAC', () => {
  it('matches known EUI-64 vectors, including ones macOS printed for its own bridges', () => {
    expect(linkLocalFromMac('52:54:00:12:34:56')).toBe('fe80::5054:ff:fe12:3456');
    // From real `ifconfig` output: `ether a2:78:17:f5:5f:64` / `inet6 fe80::a078:17ff:fef5:5f64%bridge100`.
    expect(linkLocalFromMac('a2:78:17:f5:5f:64')).toBe('fe80::a078:17ff:fef5:5f64');
    expect(linkLocalFromMac('b2:be:83:52:6e:64', 'bridge100')).toBe('fe80::b0be:83ff:fe52:6e64%bridge100');
    // U/L flip from 0 to 1, and a run of zeros that must not be compressed twice.
    expect(linkLocalFromMac('00:00:00:00:00:00')).toBe('fe80::200:ff:fe00:0');
    expect(linkLocalFromMac('02:00:00:00:00:00')).toBe('fe80::ff:fe00:0');
    expect(linkLocalFromMac('52:54:0:1:2:3', 'bridge101')).toBe('fe80::5054:ff:fe01:203%bridge101');
  });

  it('refuses a bad MAC with a sentence', () => {
    expect(() => linkLocalFromMac('52:54')).toThrow(/not a valid MAC/);
  });

  it('compresses per RFC 5952 (checked against the URL parser on random addresses)', () => {
    expect(formatIpv6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1])).toBe('2001:db8::1:0:0:1');
    expect(formatIpv6([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1])).toBe('2001:db8:0:1:1:1:1:1');
    expect(formatIpv6([0, 0, 0, 0, 0, 0, 0, 1])).toBe('::1');
    expect(formatIpv6([0, 0, 0, 0, 0, 0, 0, 0])).toBe('::');
    expect(formatIpv6([1, 0, 0, 0, 0, 0, 0, 0])).toBe('1::');
    expect(formatIpv6([0x2001, 0xdb8, 0, 0, 0, 1, 0, 0])).toBe('2001:db8::1:0:0');
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 500; i++) {
      const g = Array.from({ length: 8 }, () => (rnd() < 0.5 ? 0 : Math.floor(rnd() * 0x10000)));
      const viaUrl = new URL(`http://[${g.map((x) => x.toString(16)).join(':')}]/`).hostname.slice(1, -1);
      expect(formatIpv6(g)).toBe(viaUrl);
    }
  });

  it('splits and recognises zoned link-local addresses', () => {
    expect(splitZone('fe80::1%bridge100')).toEqual({ address: 'fe80::1', zone: 'bridge100' });
    expect(splitZone('192.168.64.2')).toEqual({ address: '192.168.64.2', zone: null });
    expect(isLinkLocalIpv6('fe80::1%bridge100')).toBe(true);
    expect(isLinkLocalIpv6('febf::1')).toBe(true);
    expect(isLinkLocalIpv6('fec0::1')).toBe(false);
    expect(isLinkLocalIpv6('fe8::1')).toBe(false);
    expect(isLinkLocalIpv6('2001:db8::1')).toBe(false);
  });
});
