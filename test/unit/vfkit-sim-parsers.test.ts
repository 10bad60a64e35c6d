/**
 * The simulator's parsers agree with the Go code vfkit runs: net.ParseMAC, strconv (pflag's base-0
 * ParseUint for --cpus/--memory, Atoi for virtio-gpu and fd), net/url for --restful-uri. Expected
 * values come from reading that code (vfkit pkg/cmdline, pkg/config, pkg/rest; Go 1.25's net,
 * strconv and net/url; pflag 1.0.10), not from running the simulator.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, deviceFromCmdLine, deviceJson, parseMac } from '../vfkit-sim/config.ts';
import { FlagError, parseFlags } from '../vfkit-sim/flags.ts';
import { goJson } from '../vfkit-sim/rest.ts';
import { atoi, parseUintGo } from '../vfkit-sim/strconv.ts';
import { parseRestfulUri } from '../vfkit-sim/vz.ts';
import { vsockListenPath } from '../vfkit-sim/sshd.ts';

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError || e instanceof FlagError) return e.message;
    throw e;
  }
  throw new Error('accepted, but vfkit refuses it');
}

describe('net.ParseMAC', () => {
  it('accepts 6, 8 and 20 octets with colons, hyphens or dots, and prints them lowercase with colons', () => {
    const twenty = '00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01';
    const accepted: [string, string][] = [
      ['02:04:00:0A:00:01', '02:04:00:0a:00:01'],
      ['02-04-00-0a-00-01', '02:04:00:0a:00:01'],
      ['0204.000a.0001', '02:04:00:0a:00:01'],
      ['02:00:5e:10:00:00:00:01', '02:00:5e:10:00:00:00:01'],
      ['02-00-5e-10-00-00-00-01', '02:00:5e:10:00:00:00:01'],
      ['0200.5e10.0000.0001', '02:00:5e:10:00:00:00:01'],
      [twenty, twenty],
      [twenty.replaceAll(':', '-'), twenty],
      ['0000.0000.fe80.0000.0000.0000.0200.5e10.0000.0001', twenty],
    ];
    for (const [input, out] of accepted) expect(parseMac(input), input).toBe(out);
  });

  it('refuses other lengths, mixed separators and non-hex digits with Go’s AddrError text', () => {
    for (const bad of [
      '02:04:00:0a:00', // 5 octets
      '02:04:00:0a:00:01:02', // 7
      '02:04-00:0a:00:01', // the separator changes
      '0204.000a-0001',
      '02:04:00:0a:00:0g',
      '2:04:00:0a:00:01:1',
      '0204000a0001', // no separators: Go 1.25 has no such form
    ]) {
      expect(
        refusal(() => parseMac(bad)),
        bad,
      ).toBe(`address ${bad}: invalid MAC address`);
    }
    // An empty address has no "address …:" part (AddrError leaves it out when Addr is "").
    expect(refusal(() => deviceFromCmdLine('virtio-net,nat,mac='))).toBe('invalid MAC address');
  });
});

describe('strconv', () => {
  it('ParseUint(s, 0, 64) reads Go’s integer syntax, underscores included', () => {
    const cases: [string, bigint][] = [
      ['1024', 1024n],
      ['1_024', 1024n],
      ['0x_800', 0x800n],
      ['0X800', 0x800n],
      ['0o2000', 1024n],
      ['02000', 1024n],
      ['0_2000', 1024n],
      ['0b100_0000_0000', 1024n],
      ['0', 0n],
      ['18446744073709551615', 18446744073709551615n],
    ];
    for (const [s, v] of cases) expect(parseUintGo(s, 0, 64), s).toEqual({ value: v });
  });

  it('ParseUint refuses misplaced underscores, digits beyond the base, signs, and overflow', () => {
    for (const s of ['_1024', '1024_', '1__024', '0x', '0x_', '08', '0b2', '-1', '+1', '', ' 1', '1e3', '0x_g']) {
      expect(parseUintGo(s, 0, 64), JSON.stringify(s)).toEqual({
        error: `strconv.ParseUint: parsing ${JSON.stringify(s)}: invalid syntax`,
      });
    }
    expect(parseUintGo('18446744073709551616', 0, 64)).toEqual({
      error: 'strconv.ParseUint: parsing "18446744073709551616": value out of range',
    });
    // An explicit base allows no underscores (vsock ports are read with base 10).
    expect(parseUintGo('1_024', 10, 32)).toEqual({ error: 'strconv.ParseUint: parsing "1_024": invalid syntax' });
    expect(parseUintGo('4294967296', 10, 32)).toEqual({
      error: 'strconv.ParseUint: parsing "4294967296": value out of range',
    });
  });

  it('Atoi takes a sign and int64’s range, no underscores or prefixes', () => {
    expect(atoi('+5')).toEqual({ value: 5n });
    expect(atoi('-9223372036854775808')).toEqual({ value: -9223372036854775808n });
    expect(atoi('9223372036854775807')).toEqual({ value: 9223372036854775807n });
    expect(atoi('9223372036854775808')).toEqual({
      error: 'strconv.Atoi: parsing "9223372036854775808": value out of range',
    });
    for (const s of ['1_0', '0x10', '-', '']) {
      expect(atoi(s), s).toEqual({ error: `strconv.Atoi: parsing ${JSON.stringify(s)}: invalid syntax` });
    }
  });

  it('--cpus and --memory take that syntax, and refuse with pflag’s wording', () => {
    const o = parseFlags(['--cpus', '0b10', '-m', '0x_800']);
    expect([o.cpus, o.memoryMiB]).toEqual([2, 2048]);
    expect(parseFlags(['-c=1_0']).cpus).toBe(10);
    expect(refusal(() => parseFlags(['--cpus', '1__0']))).toBe(
      'invalid argument "1__0" for "-c, --cpus" flag: strconv.ParseUint: parsing "1__0": invalid syntax',
    );
    expect(refusal(() => parseFlags(['--memory', '0x1_0000_0000_0000_0000']))).toBe(
      'invalid argument "0x1_0000_0000_0000_0000" for "-m, --memory" flag: strconv.ParseUint: parsing "0x1_0000_0000_0000_0000": value out of range',
    );
  });
});

describe('virtio-gpu and virtio-net numbers', () => {
  it('width and height are Go ints: exact past 2^53, refused past int64', () => {
    const gpu = deviceFromCmdLine('virtio-gpu,width=9007199254740993,height=9223372036854775807');
    expect(goJson(deviceJson(gpu))).toBe(
      '{"kind":"virtiogpu","usesGUI":false,"width":9007199254740993,"height":9223372036854775807}',
    );
    expect(goJson(deviceJson(deviceFromCmdLine('virtio-gpu,width=+1920,height=1080')))).toContain('"width":1920');
    for (const [opt, value] of [
      ['width', '9223372036854775808'],
      ['height', '0'],
      ['width', '1_920'],
      ['height', '0x438'],
      ['width', '-1'],
    ]) {
      expect(refusal(() => deviceFromCmdLine(`virtio-gpu,${opt}=${value}`))).toBe(
        `invalid value for virtio-gpu ${opt}: ${value}`,
      );
    }
  });

  it('fd= is Atoi’d: its errors name strconv.Atoi', () => {
    expect(refusal(() => deviceFromCmdLine('virtio-net,fd=1_0'))).toBe('strconv.Atoi: parsing "1_0": invalid syntax');
    expect(refusal(() => deviceFromCmdLine('virtio-net,fd=99999999999999999999'))).toBe(
      'strconv.Atoi: parsing "99999999999999999999": value out of range',
    );
    expect(refusal(() => deviceFromCmdLine('virtio-net,fd=2147483648'))).toBe('invalid file descriptor: 2147483648');
  });
});

describe('the vsock socket as vfkit listens on it (url.Parse(…).EscapedPath())', () => {
  it('keeps a plain path, escapes what Go escapes in a path, refuses a bad escape', () => {
    expect(vsockListenPath('/Users/me/vms/web/ssh.sock')).toBe('/Users/me/vms/web/ssh.sock');
    expect(vsockListenPath('/Users/me/Library/Application Support/x.sock')).toBe(
      '/Users/me/Library/Application%20Support/x.sock',
    );
    expect(vsockListenPath('/tmp/ü.sock')).toBe('/tmp/%C3%BC.sock');
    expect(() => vsockListenPath('/tmp/100%.sock')).toThrow('invalid URL escape "%.s"');
  });
});

describe('--restful-uri as net/url parses it', () => {
  it('refuses a bad host part with Go’s words', () => {
    const cases: [string, string][] = [
      ['tcp://local host:8080', 'invalid character " " in host name'],
      ['tcp://local|host:8080', 'invalid character "|" in host name'],
      ['tcp://[::1:8080', "missing ']' in host"],
      ['tcp://[::1]x', 'invalid port "x" after host'],
      ['tcp://[127.0.0.1]:8080', 'invalid IP-literal'],
      ['tcp://[localhost]:8080', 'invalid host: ParseAddr("localhost"): unable to parse IP'],
      ['tcp://localhost:80x', 'invalid port ":80x" after host'],
      ['tcp://a%41:8080', 'invalid URL escape "%41"'],
      ['tcp://a%4:8080', 'invalid URL escape "%4:"'],
      ['tcp://us er@localhost:8080', 'net/url: invalid userinfo'],
    ];
    for (const [uri, why] of cases)
      expect(
        refusal(() => parseRestfulUri(uri)),
        uri,
      ).toBe(`parse "${uri}": ${why}`);
  });

  it('accepts bracketed IPv6 and non-ASCII escapes in a host, and leaves a path without scheme alone', () => {
    expect(parseRestfulUri('tcp://[::1]:8080')).toMatchObject({ scheme: 'tcp', hostname: '::1', port: 8080 });
    expect(parseRestfulUri('tcp://h%C3%A9:8080')).toMatchObject({ scheme: 'tcp', host: 'hé:8080' });
    expect(parseRestfulUri('tcp://user:p%40ss@localhost:8080')).toMatchObject({ scheme: 'tcp', port: 8080 });
    // No scheme, so "//x:y" is a path, not an authority: the scheme is what is wrong.
    expect(refusal(() => parseRestfulUri('//x:y/z'))).toBe('invalid scheme ');
  });
});
