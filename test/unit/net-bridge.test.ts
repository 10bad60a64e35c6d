import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BridgeDetector,
  DEFAULT_BRIDGE,
  ifconfigArgv,
  parseIfconfig,
  pickBridge,
  type Runner,
} from '../../src/core/net/bridge.ts';
import type { RunOptions, RunResult } from '../../src/host/runner.ts';
import { RunError } from '../../src/host/runner.ts';

const fixture = (name: string): string =>
  readFileSync(path.join(import.meta.dirname, '..', 'fixtures', 'ifconfig', name), 'utf8');

describe('parsing macOS ifconfig', () => {
  it('finds the vmnet bridge with its members and addresses', () => {
    const ifaces = parseIfconfig(fixture('one-vm.txt'));
    expect(ifaces.map((i) => i.name)).toEqual([
      'lo0',
      'gif0',
      'stf0',
      'anpi0',
      'en0',
      'bridge0',
      'awdl0',
      'utun0',
      'vmenet0',
      'bridge100',
    ]);
    const b = ifaces.find((i) => i.name === 'bridge100')!;
    expect(b.members).toEqual(['vmenet0']);
    expect(b.inet).toEqual([{ address: '192.168.64.1', prefixLen: 24 }]);
    expect(b.inet6.map((a) => a.address)).toEqual([
      'fe80::147d:daff:fe5b:3c64',
      'fd4e:7e2a:9f31:5c0d:1459:c4f3:2e08:b17a',
    ]);
    expect(b.ether).toBe('16:7d:da:5b:3c:64');
    expect(b.up).toBe(true);
    expect(b.status).toBe('active');
    expect(ifaces.find((i) => i.name === 'bridge0')!.members).toEqual(['en1', 'en2']);
    expect(ifaces.find((i) => i.name === 'stf0')!.flags).toEqual([]);
    expect(ifaces.find((i) => i.name === 'lo0')!.inet[0]!.prefixLen).toBe(8);
  });

  it('tolerates CRLF and junk between blocks', () => {
    const text = `junk at the top\r\n${fixture('one-vm.txt').replace(/\n/g, '\r\n')}trailing garbage: no flags\r\n\tmember: vmenet9 flags=3<>\r\n`;
    const b = parseIfconfig(text).find((i) => i.name === 'bridge100')!;
    // The stray member line after the junk must not be attributed to bridge100.
    expect(b.members).toEqual(['vmenet0']);
  });
});

describe('picking the bridge for a VM', () => {
  const one = parseIfconfig(fixture('one-vm.txt'));
  const two = parseIfconfig(fixture('two-bridges.txt'));
  const none = parseIfconfig(fixture('no-vmnet.txt'));

  it('a setting wins over everything', () => {
    expect(pickBridge(two, { setting: 'bridge105', vmenet: 'vmenet1' })).toEqual({
      name: 'bridge105',
      reason: 'setting',
    });
  });

  it('the bridge that has the VM’s vmenet as a member', () => {
    expect(pickBridge(two, { vmenet: 'vmenet2' })).toEqual({ name: 'bridge101', reason: 'member' });
    expect(pickBridge(two, { vmenet: 'vmenet0' })).toEqual({ name: 'bridge100', reason: 'member' });
    expect(pickBridge(two, { vmenet: 'vmenet3' })).toEqual({ name: 'bridge102', reason: 'member' });
  });

  it('else the bridge whose subnet holds the VM’s IPv4', () => {
    expect(pickBridge(two, { ipv4: '192.168.105.7' })).toEqual({ name: 'bridge102', reason: 'subnet' });
    expect(pickBridge(two, { vmenet: 'vmenet9', ipv4: '192.168.64.30' })).toEqual({
      name: 'bridge101',
      reason: 'subnet',
    });
  });

  it('else the bridge on 192.168.64.x, not blindly bridge100', () => {
    expect(pickBridge(two)).toEqual({ name: 'bridge101', reason: 'vmnet-subnet' });
    expect(pickBridge(one)).toEqual({ name: 'bridge100', reason: 'vmnet-subnet' });
  });

  it('else bridge100 (no VM up yet, or nothing known)', () => {
    expect(pickBridge(none)).toEqual({ name: DEFAULT_BRIDGE, reason: 'default' });
    expect(pickBridge([])).toEqual({ name: 'bridge100', reason: 'default' });
  });
});

/** A runner that records argv and answers with fixture text; it never runs anything. */
function fakeRunner(stdout: string | (() => never)): Runner & { calls: { argv: string[]; opts?: RunOptions }[] } {
  const calls: { argv: string[]; opts?: RunOptions }[] = [];
  const fn = (async (argv: string[], opts?: RunOptions): Promise<RunResult> => {
    calls.push({ argv, opts });
    if (typeof stdout === 'function') stdout();
    return { argv, exitCode: 0, signal: null, stdout: stdout as string, stderr: '', durationMs: 1 };
  }) as Runner & { calls: typeof calls };
  fn.calls = calls;
  return fn;
}

describe('BridgeDetector', () => {
  it('runs `ifconfig` through the runner with a short timeout, and caches', async () => {
    const runner = fakeRunner(fixture('two-bridges.txt'));
    let now = 1000;
    const d = new BridgeDetector({ runner, platform: 'darwin', timeoutMs: 1500, cacheMs: 5000, now: () => now });
    const [a, b] = await Promise.all([d.bridgeFor({ vmenet: 'vmenet1' }), d.bridgeFor({ vmenet: 'vmenet0' })]);
    expect(a.name).toBe('bridge101');
    expect(b.name).toBe('bridge100');
    expect(runner.calls).toHaveLength(1);
    expect(runner.calls[0]!.argv).toEqual(['ifconfig']);
    expect(runner.calls[0]!.opts?.timeoutMs).toBe(1500);
    expect(runner.calls[0]!.opts?.searchPath?.slice(0, 2)).toEqual(['/sbin', '/usr/sbin']);
    now += 4000;
    await d.bridgeFor();
    expect(runner.calls).toHaveLength(1);
    now += 2000;
    await d.bridgeFor();
    expect(runner.calls).toHaveLength(2);
    d.invalidate();
    await d.bridgeFor();
    expect(runner.calls).toHaveLength(3);
  });

  it('does not run anything when the setting names the bridge', async () => {
    const runner = fakeRunner(fixture('one-vm.txt'));
    const d = new BridgeDetector({ runner, platform: 'darwin' });
    expect(await d.bridgeFor({ setting: 'bridge104' })).toEqual({ name: 'bridge104', reason: 'setting' });
    expect(runner.calls).toHaveLength(0);
  });

  it('falls back to bridge100 with a sentence when ifconfig fails or times out', async () => {
    const runner = fakeRunner(() => {
      throw new RunError({
        argv: ['/sbin/ifconfig'],
        exitCode: null,
        signal: 'SIGTERM',
        stdout: '',
        stderr: '',
        durationMs: 2000,
        cancelled: false,
        timedOut: true,
      });
    });
    const d = new BridgeDetector({ runner, platform: 'darwin' });
    expect(await d.bridgeFor({ vmenet: 'vmenet0' })).toEqual({ name: 'bridge100', reason: 'default' });
    expect(d.lastError).toMatch(
      /^Could not list network interfaces with ifconfig \(ifconfig timed out\); using bridge100/,
    );
  });

  it('off macOS it does not pretend: no ifconfig run, default bridge', async () => {
    const runner = fakeRunner(fixture('one-vm.txt'));
    const d = new BridgeDetector({ runner, platform: 'linux' });
    expect(await d.interfaces()).toEqual([]);
    expect((await d.bridgeFor({ vmenet: 'vmenet0' })).name).toBe('bridge100');
    expect(runner.calls).toHaveLength(0);
  });

  it('ifconfigArgv names one interface or all', () => {
    expect(ifconfigArgv()).toEqual(['ifconfig']);
    expect(ifconfigArgv('bridge100')).toEqual(['ifconfig', 'bridge100']);
  });
});
