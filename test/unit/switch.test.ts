/**
 * What a switch in place can and cannot change (switchPlan, deviceReasons, previewApply), one
 * restart reason at a time, over fake toplevels in a temp dir (kernel and initrd files or links to
 * them, as sameFile compares); and runSwitch's outcomes with an injected `run` standing in for ssh.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { VmSpec } from '../../src/api/types.ts';
import type { RunOptions, RunResult } from '../../src/host/runner.ts';
import {
  deviceReasons,
  failedUnits,
  previewApply,
  runSwitch,
  switchPlan,
  type SwitchInput,
} from '../../src/core/switch.ts';
import { deviceFacts, type DeviceFacts } from '../../src/core/vm/vfkit-args.ts';
import { testSpec } from '../vfkit-sim/harness.ts';

const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-switch-')));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** A toplevel with a kernel, an initrd and (unless told) bin/switch-to-configuration. */
function toplevel(o: { kernel?: string; initrd?: string; link?: string; switch?: boolean } = {}): string {
  const top = path.join(dir, `${n++}-nixos-system-web`);
  fs.mkdirSync(path.join(top, 'bin'), { recursive: true });
  if (o.link) {
    // The same kernel and initrd as another closure, by link (what nix's store shares).
    fs.symlinkSync(path.join(o.link, 'kernel'), path.join(top, 'kernel'));
    fs.symlinkSync(path.join(o.link, 'initrd'), path.join(top, 'initrd'));
  } else {
    fs.writeFileSync(path.join(top, 'kernel'), o.kernel ?? 'kernel 6.6');
    fs.writeFileSync(path.join(top, 'initrd'), o.initrd ?? 'initrd 1');
  }
  if (o.switch !== false) fs.writeFileSync(path.join(top, 'bin', 'switch-to-configuration'), '#!/bin/sh\n');
  return top;
}

/** A host-store VM with sshd for root. */
function spec(over: Partial<VmSpec> = {}): VmSpec {
  return testSpec({ mountHostNixStore: true, cpus: 4, memoryMiB: 4096, ...over });
}
const MAC = '02:94:ef:00:0a:01';
const facts = (over: Partial<VmSpec> = {}, more: Partial<DeviceFacts> = {}): DeviceFacts => ({
  ...deviceFacts(spec(over), MAC),
  ...more,
});

const BOOTED = toplevel();
/** Everything the same but the closure: nothing needs a restart. */
function input(over: Partial<SwitchInput> = {}, next: Partial<SwitchInput['next']> = {}): SwitchInput {
  return {
    spec: spec(),
    rootKey: true,
    booted: { outPath: BOOTED, facts: facts() },
    next: { outPath: toplevel(), facts: facts(), ...next },
    ...over,
  };
}

describe('switchPlan', () => {
  it('switches a host-store VM in place, with nothing to copy, when only the closure changed', () => {
    expect(switchPlan(input())).toEqual({ kind: 'switch', copy: false });
    // The same kernel and initrd by link rather than by content count as the same.
    expect(switchPlan(input({}, { outPath: toplevel({ link: BOOTED }) }))).toEqual({ kind: 'switch', copy: false });
  });

  it('copies the closure first into a store image with a writable store over it', () => {
    const s = spec({ mountHostNixStore: false, storeImage: true, writableStore: { sizeMiB: 20480, device: null } });
    const f = facts({ mountHostNixStore: false });
    expect(switchPlan(input({ spec: s, booted: { outPath: BOOTED, facts: f } }, { facts: f }))).toEqual({
      kind: 'switch',
      copy: true,
    });
  });

  const restarts = (i: SwitchInput) => {
    const p = switchPlan(i);
    return p.kind === 'restart' ? p.reasons : [`it switches (${JSON.stringify(p)})`];
  };

  it('restarts when the kernel changed', () => {
    expect(restarts(input({}, { outPath: toplevel({ kernel: 'kernel 6.7' }) }))).toEqual(['the kernel changed']);
  });

  it('restarts when the initrd changed', () => {
    expect(restarts(input({}, { outPath: toplevel({ initrd: 'initrd 2' }) }))).toEqual(['the initrd changed']);
  });

  it('restarts when the new closure cannot switch (no bin/switch-to-configuration)', () => {
    expect(restarts(input({}, { outPath: toplevel({ switch: false }) }))).toEqual([
      'the new closure has no bin/switch-to-configuration',
    ]);
  });

  it('restarts a guest whose store is a read-only image with no writable store', () => {
    const s = spec({ mountHostNixStore: false, storeImage: true, writableStore: null });
    const f = facts({ mountHostNixStore: false });
    expect(restarts(input({ spec: s, booted: { outPath: BOOTED, facts: f } }, { facts: f }))).toEqual([
      'its Nix store is a read-only image of the closure it booted, with no writable store to copy the new one into',
    ]);
  });

  it('restarts a guest without sshd, and one whose root does not take nixvm’s key', () => {
    expect(restarts(input({ spec: spec({ ssh: { enabled: false, port: 22, user: 'root' } }) }))).toEqual([
      'it runs no sshd, so nixvm cannot switch it in place',
    ]);
    expect(restarts(input({ rootKey: false }))).toEqual([
      "nixvm's key does not reach root there (no ssh.authorized_keys.root credential, no $KEYS file its sshd reads for root)",
    ]);
  });

  it('restarts when nixvm does not know the devices the run booted with', () => {
    expect(restarts(input({ booted: { outPath: BOOTED, facts: null } }))).toEqual([
      'nixvm does not know the devices it booted with',
    ]);
  });

  it('restarts for a device change, saying which (one reason per change)', () => {
    expect(restarts(input({}, { facts: facts({ memoryMiB: 8192 }) }))).toEqual([
      'memorySize 4096 → 8192 needs a restart',
    ]);
    expect(restarts(input({}, { facts: facts({ cpus: 8 }) }))).toEqual(['cores 4 → 8 needs a restart']);
  });

  it('gives every reason at once', () => {
    expect(
      restarts(
        input(
          { rootKey: false },
          { outPath: toplevel({ kernel: 'kernel 6.7', initrd: 'initrd 2' }), facts: facts({ memoryMiB: 8192 }) },
        ),
      ),
    ).toEqual([
      "nixvm's key does not reach root there (no ssh.authorized_keys.root credential, no $KEYS file its sshd reads for root)",
      'the kernel changed',
      'the initrd changed',
      'memorySize 4096 → 8192 needs a restart',
    ]);
  });
});

describe('deviceReasons', () => {
  const base = facts();
  const graphics = facts({ graphics: true });
  // What changed, the devices booted and the ones vfkit would get now, and the reason said.
  const cases: Array<[string, DeviceFacts, DeviceFacts, string]> = [
    ['cores', base, facts({ cpus: 2 }), 'cores 4 → 2 needs a restart'],
    ['memory', base, facts({ memoryMiB: 8192 }), 'memorySize 4096 → 8192 needs a restart'],
    [
      'MAC',
      base,
      { ...base, mac: '02:94:ef:00:0a:02' },
      'the MAC address 02:94:ef:00:0a:01 → 02:94:ef:00:0a:02 needs a restart',
    ],
    [
      'kernel command line',
      base,
      facts({ kernelParams: ['console=hvc0', 'quiet'] }),
      'the kernel command line changed',
    ],
    ['host store', base, facts({ mountHostNixStore: false }), 'mountHostNixStore changed'],
    [
      'shares',
      base,
      facts({ shares: [{ tag: 'src', source: '/Users/me/src', target: '/mnt/src' }] }),
      'the shared directories changed',
    ],
    ['Rosetta', base, facts({ rosetta: true }), 'Rosetta changed'],
    ['the Rosetta tag', base, { ...base, rosettaTag: 'rosetta2' }, 'Rosetta changed'],
    ['graphics', base, graphics, 'graphics changed'],
    [
      'the resolution',
      graphics,
      facts({ graphics: true, resolution: { width: 800, height: 600 } }),
      'graphics changed',
    ],
    [
      'disks',
      base,
      { ...base, disks: [{ role: 'writable-store', bus: 'virtio-blk', readOnly: false }] },
      'the disks changed',
    ],
    ['vsock', base, facts({ ssh: { enabled: false, port: 22, user: 'root' } }), 'the vsock device for ssh changed'],
    ['key credential', base, { ...base, keyCredential: true }, 'the key credential on the kernel command line changed'],
  ];
  it.each(cases)('names a change of %s', (_what, from, to, reason) => {
    expect(deviceReasons(from, to)).toEqual([reason]);
    // A restart for it, said so, before the click and after the build alike.
    expect(previewApply(spec(), true, from, to)).toEqual({ how: 'restart', reasons: [reason] });
    expect(switchPlan(input({ booted: { outPath: BOOTED, facts: from } }, { facts: to }))).toEqual({
      kind: 'restart',
      reasons: [reason],
    });
  });

  it('finds nothing when the devices are the same (also with the later fields absent, as old records have them)', () => {
    expect(deviceReasons(base, facts())).toEqual([]);
    const {
      disks: _d,
      sshVsock: _v,
      keyCredential: _k,
      ...old
    } = facts({ ssh: { enabled: false, port: 22, user: 'root' } });
    expect(deviceReasons(old, { ...old, disks: [], sshVsock: false, keyCredential: false })).toEqual([]);
  });
});

describe('previewApply', () => {
  const s = spec();
  it('says a switch when the guest can take one and the devices are the same (or not known yet)', () => {
    expect(previewApply(s, true, facts(), facts())).toEqual({ how: 'switch', reasons: [] });
    expect(previewApply(s, true, null, facts())).toEqual({ how: 'switch', reasons: [] });
  });
  it('says a restart, and why, for a device change before anything is built', () => {
    expect(previewApply(s, true, facts(), facts({ memoryMiB: 8192 }))).toEqual({
      how: 'restart',
      reasons: ['memorySize 4096 → 8192 needs a restart'],
    });
    expect(previewApply(s, true, facts(), { ...facts(), keyCredential: true })).toEqual({
      how: 'restart',
      reasons: ['the key credential on the kernel command line changed'],
    });
  });
  it('says a restart for a guest without sshd, without root’s key, or with a read-only store image', () => {
    expect(previewApply(spec({ ssh: { enabled: false, port: 22, user: 'root' } }), true, null, null).reasons).toEqual([
      'it runs no sshd, so nixvm cannot switch it in place',
    ]);
    expect(previewApply(s, false, null, null).reasons).toEqual([
      "nixvm's key does not reach root there (no ssh.authorized_keys.root credential, no $KEYS file its sshd reads for root)",
    ]);
    expect(previewApply(spec({ mountHostNixStore: false, storeImage: true }), true, null, null)).toEqual({
      how: 'restart',
      reasons: [
        'its Nix store is a read-only image of the closure it booted, with no writable store to copy the new one into',
      ],
    });
    expect(
      previewApply(
        spec({ mountHostNixStore: false, storeImage: true, writableStore: { sizeMiB: 1024, device: null } }),
        true,
        null,
        null,
      ),
    ).toEqual({ how: 'switch', reasons: [] });
  });
});

describe('failedUnits', () => {
  it('reads the last "the following units failed" line', () => {
    expect(
      failedUnits([
        'warning: the following units failed: a.service',
        'warning: the following units failed: b.service, c.socket',
      ]),
    ).toEqual(['b.service', 'c.socket']);
    expect(failedUnits(['activating the configuration...'])).toEqual([]);
  });
});

describe('runSwitch', () => {
  const OUT = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web';
  const LOG = '/logs/vms/web/apply.log';
  /** A `run` that prints `lines` (as ssh would pass them on) and exits with `code`. */
  function fake(lines: string[], code: number | null, signal: string | null = null) {
    const calls: string[][] = [];
    const run = async (argv: string[], opts?: RunOptions): Promise<RunResult> => {
      calls.push(argv);
      for (const l of lines) opts?.onLine?.(l, 'stdout');
      return { argv, exitCode: code, signal, stdout: lines.join('\n'), stderr: '', durationMs: 1 };
    };
    return { run, calls };
  }
  const go = async (lines: string[], code: number | null, signal: string | null = null) => {
    const f = fake(lines, code, signal);
    const seen: string[] = [];
    const outcome = await runSwitch({
      vm: 'web',
      ssh: ['ssh', '-o', 'BatchMode=yes', 'nixvm-web'],
      outPath: OUT,
      logFile: LOG,
      onLine: (l) => seen.push(l),
      run: f.run,
    });
    return { outcome, seen, calls: f.calls };
  };

  it("runs the new toplevel's switch-to-configuration over the ssh argv, passing each line on (without a CR)", async () => {
    const { outcome, seen, calls } = await go(['activating the configuration...\r', 'setting up /etc...'], 0);
    expect(calls).toEqual([
      ['ssh', '-o', 'BatchMode=yes', 'nixvm-web', `${OUT}/bin/switch-to-configuration`, 'switch'],
    ]);
    expect(seen).toEqual(['activating the configuration...', 'setting up /etc...']);
    expect(outcome).toMatchObject({ how: 'switch', outPath: OUT, error: null, lastLine: 'setting up /etc...' });
  });

  it('says "failed (exit N)" with the last lines when the switch fails and names no unit', async () => {
    const { outcome } = await go(['activating the configuration...', 'error: could not write /etc/passwd'], 4);
    expect(outcome.how).toBe('failed');
    expect(outcome.error).toBe(
      `Switching "web" failed (exit 4); it keeps running; see ${LOG}, or restart it to boot the new closure (\`nixvm restart web\`).\n` +
        '  activating the configuration...\n' +
        '  error: could not write /etc/passwd',
    );
  });

  it('names the failed units in its sentence', async () => {
    const { outcome } = await go(
      ['activating the configuration...', 'warning: the following units failed: foo.service, bar.service'],
      4,
    );
    expect(outcome.error?.split('\n')[0]).toBe(
      `Switching "web" left 2 units failed (foo.service, bar.service); it keeps running on what it switched to; see ${LOG}, or restart it to boot the new closure (\`nixvm restart web\`).`,
    );
  });

  it('says the ssh channel was lost when ssh exits 255 after the switch had begun', async () => {
    const { outcome } = await go(
      ['activating the configuration...', 'setting up /etc...', 'Connection to nixvm-web closed by remote host.'],
      255,
    );
    expect(outcome.how).toBe('failed');
    expect(outcome.error).toBe(
      `The ssh connection to "web" was lost during the switch; it keeps running on whatever the switch got to; see ${LOG}, or restart it to boot the new closure (\`nixvm restart web\`).\n` +
        '  activating the configuration...\n' +
        '  setting up /etc...\n' +
        '  Connection to nixvm-web closed by remote host.',
    );
  });

  it('says it cannot reach the guest when ssh exits 255 before the switch said anything', async () => {
    const { outcome } = await go(['ssh: connect to host nixvm-web port 22: Connection refused'], 255);
    expect(outcome.error).toBe(
      'nixvm cannot reach "web" over ssh to switch it (ssh: connect to host nixvm-web port 22: Connection refused); restart to apply.',
    );
  });

  it('bounds the lines its error carries: the last six, each cut short', async () => {
    const many = Array.from({ length: 30 }, (_, i) => `line ${i}`);
    const { outcome } = await go([...many, 'x'.repeat(1000)], 1);
    const lines = outcome.error!.split('\n');
    expect(lines).toHaveLength(7);
    expect(lines.slice(1, 6)).toEqual(['  line 25', '  line 26', '  line 27', '  line 28', '  line 29']);
    expect(lines[6]).toBe(`  ${'x'.repeat(240)}…`);
  });

  it('says how a switch that was killed ended', async () => {
    const { outcome } = await go([], null, 'SIGTERM');
    expect(outcome.error).toMatch(/^Switching "web" failed \(killed by SIGTERM\); it keeps running; /);
  });
});
