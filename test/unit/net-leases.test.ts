import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findLeaseForMac, ipv4ForMac, LeasesReadError, parseLeases } from '../../src/core/net/leases.ts';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures', 'leases');
const fixture = (name: string): string => path.join(fixtures, name);
const text = (name: string): string => readFileSync(fixture(name), 'utf8');

describe('parsing bootpd leases', () => {
  it('reads every block of a clean file with MACs normalised', () => {
    const leases = parseLeases(text('basic.leases'));
    expect(leases.map((l) => [l.name, l.ipAddress, l.mac])).toEqual([
      ['web', '192.168.64.2', '52:54:00:12:34:56'],
      ['db', '192.168.64.3', '02:00:0a:0b:0c:0d'],
      ['Johns-MacBook-Pro', '192.168.2.17', 'a4:83:e7:01:0c:9f'],
    ]);
    expect(leases[0]!.lease).toBe(0x6745f1a2);
    expect(leases[0]!.hwType).toBe('1');
    expect(leases[0]!.hwAddress).toBe('52:54:0:12:34:56');
  });

  it('survives CRLF, junk, missing fields, garbled values and a block cut off mid-write', () => {
    const leases = parseLeases(text('crlf-junk.leases'));
    expect(leases.map((l) => l.name)).toEqual(['no-hw', 'Upper Case Name', 'bad-lease', 'only-identifier']);
    const upper = leases.find((l) => l.name === 'Upper Case Name')!;
    expect(upper.mac).toBe('52:54:00:aa:0b:0c');
    expect(upper.lease).toBe(0x6745f001);
    expect(leases.find((l) => l.name === 'bad-lease')!.lease).toBeNull();
    expect(leases.find((l) => l.name === 'no-hw')!.mac).toBeNull();
    // No hw_address: the identifier's MAC is the fallback.
    expect(leases.find((l) => l.name === 'only-identifier')!.mac).toBe('52:54:00:00:00:02');
  });

  it('treats ff, client identifiers as not-a-MAC, except a DUID that embeds one', () => {
    const leases = parseLeases(text('duplicates-and-duids.leases'));
    const ubuntu = leases.find((l) => l.name === 'ubuntu')!;
    expect(ubuntu.hwType).toBe('ff');
    expect(ubuntu.mac).toBeNull();
    expect(ubuntu.duidMac).toBeNull(); // DUID-EN (systemd): no MAC inside.
    const alpine = leases.find((l) => l.name === 'alpine')!;
    expect(alpine.mac).toBeNull();
    expect(alpine.duidMac).toBe('62:a8:2f:7d:f5:3a'); // DUID-LLT: its link-layer address.
  });

  it('ignores text that merely looks like a block', () => {
    expect(parseLeases('')).toEqual([]);
    expect(parseLeases('}\n{\n}\nname=x\nip_address=1.2.3.4\n')).toEqual([]);
    // An unterminated block followed by a good one: only the good one.
    const l = parseLeases(
      '{\n ip_address=10.0.0.1\n hw_address=1,1:2:3:4:5:6\n{\n ip_address=10.0.0.2\n hw_address=1,1:2:3:4:5:6\n}\n',
    );
    expect(l.map((x) => x.ipAddress)).toEqual(['10.0.0.2']);
  });
});

describe('finding the address of a MAC', () => {
  it('compares octets, so the zero-padded config form finds the zero-dropped lease', () => {
    const leases = parseLeases(text('basic.leases'));
    expect(findLeaseForMac(leases, '52:54:00:12:34:56')?.ipAddress).toBe('192.168.64.2');
    expect(findLeaseForMac(leases, '02-00-0A-0B-0C-0D')?.ipAddress).toBe('192.168.64.3');
    expect(findLeaseForMac(leases, '52:54:00:12:34:57')).toBeNull();
  });

  it('prefers the newest lease, wherever it sits in the file', () => {
    const leases = parseLeases(text('duplicates-and-duids.leases'));
    // Three leases for e6:01:bc:6d:21:cd: .5 (0x6744a000), .9 (0x6745c3d0, newest), .4.
    expect(findLeaseForMac(leases, 'e6:01:bc:6d:21:cd')?.ipAddress).toBe('192.168.64.9');
    // One octet off is another machine.
    expect(findLeaseForMac(leases, 'e6:01:bc:6d:21:ce')?.ipAddress).toBe('192.168.105.3');
  });

  it('a lease with a readable time beats one without', () => {
    const leases = parseLeases(text('crlf-junk.leases'));
    expect(findLeaseForMac(leases, '52:54:00:aa:0b:0c')?.name).toBe('Upper Case Name');
  });

  it('falls back to a DUID that embeds the MAC only when no plain entry matches', () => {
    const leases = parseLeases(text('duplicates-and-duids.leases'));
    expect(findLeaseForMac(leases, '62:a8:2f:7d:f5:3a')?.ipAddress).toBe('192.168.64.7');
    const plain = parseLeases(
      `${text('duplicates-and-duids.leases')}{\n\tip_address=192.168.64.50\n\thw_address=1,62:a8:2f:7d:f5:3a\n\tlease=0x1\n}\n`,
    );
    expect(findLeaseForMac(plain, '62:a8:2f:7d:f5:3a')?.ipAddress).toBe('192.168.64.50');
  });

  it('throws for a malformed MAC', () => {
    expect(() => findLeaseForMac([], 'zz')).toThrow(/not a valid MAC/);
  });
});

describe('ipv4ForMac on files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'nixvm-leases-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the file it is given', async () => {
    expect(await ipv4ForMac(fixture('basic.leases'), '52:54:00:12:34:56')).toBe('192.168.64.2');
    expect(await ipv4ForMac(fixture('duplicates-and-duids.leases'), 'E6:01:BC:6D:21:CD')).toBe('192.168.64.9');
  });

  it('answers null, not an error, when no VM has had a lease yet (no file)', async () => {
    expect(await ipv4ForMac(path.join(dir, 'does-not-exist'), '52:54:00:12:34:56')).toBeNull();
  });

  it('sees a lease appear when bootpd rewrites the file', async () => {
    const f = path.join(dir, 'dhcpd_leases');
    await writeFile(f, text('basic.leases'));
    expect(await ipv4ForMac(f, '52:54:00:99:00:01')).toBeNull();
    await writeFile(
      f,
      `${text('basic.leases')}{\n\tname=new\n\tip_address=192.168.64.9\n\thw_address=1,52:54:0:99:0:1\n\tlease=0x6800000\n}\n`,
    );
    expect(await ipv4ForMac(f, '52:54:00:99:00:01')).toBe('192.168.64.9');
  });

  it('says which file could not be read and what to do', async () => {
    const d = path.join(dir, 'a-directory');
    await mkdir(d);
    const err = await ipv4ForMac(d, '52:54:00:12:34:56').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeasesReadError);
    expect((err as Error).message).toContain(d);
    expect((err as Error).message).toMatch(/NIXVM_LEASES_FILE/);
    if (process.getuid?.() !== 0) {
      const f = path.join(dir, 'locked');
      await writeFile(f, text('basic.leases'));
      await chmod(f, 0o000);
      await expect(ipv4ForMac(f, '52:54:00:12:34:56')).rejects.toBeInstanceOf(LeasesReadError);
    } else {
      // Root reads a mode-000 file: the check means nothing here, and says so.
      console.log('net-leases.test.ts: the unreadable-leases check is skipped: root reads a mode-000 file');
    }
  });
});
