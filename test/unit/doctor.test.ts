/**
 * `nixvm doctor`'s checks, by the argv they run and the outputs recorded from the real programs
 * (test/fixtures/doctor: Nix 2.8, 2.26, 2.34; the macOS programs' documented output forms).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { DoctorCheck } from '../../src/api/types.ts';
import { ROSETTA_BINARY, runDoctor, type DoctorDeps } from '../../src/core/doctor.ts';
import type { LoginItemStatus } from '../../src/host/launchd.ts';
import { ProgramNotFoundError, type RunResult } from '../../src/host/runner.ts';
import { FIXTURES_DIR } from '../helpers/fixtures.ts';

const fixture = (f: string) => readFileSync(`${FIXTURES_DIR}doctor/${f}`, 'utf8');
const NIX = '/nix/var/nix/profiles/default/bin/nix';
const VFKIT = '/opt/homebrew/bin/vfkit';

type Outputs = Record<string, { stdout?: string; stderr?: string; exitCode?: number }>;

function deps(outputs: Outputs, over: Partial<DoctorDeps> = {}): { d: DoctorDeps; ran: string[] } {
  const ran: string[] = [];
  const d: DoctorDeps = {
    run: async (argv) => {
      const key = argv.join(' ');
      ran.push(key);
      const o = outputs[key] ?? { stderr: `${argv[0]}: not recorded`, exitCode: 1 };
      return {
        argv,
        stdout: o.stdout ?? '',
        stderr: o.stderr ?? '',
        exitCode: o.exitCode ?? 0,
        signal: null,
        durationMs: 1,
      } as RunResult;
    },
    platform: 'darwin',
    user: 'alice',
    uid: 501,
    locateNix: () => NIX,
    locateVfkit: () => VFKIT,
    exists: () => false,
    stat: () => ({ uid: 501, mode: 0o40700, isDirectory: true, isSymbolicLink: false }),
    stateDir: '/Users/alice/Library/Application Support/NixVM',
    systems: ['x86_64-linux'],
    rosettaVms: ['dev'],
    loginItem: async () => loginItem({}),
    sshConfig: async () => ({ path: '/s/ssh_config', includeLine: 'Include "/s/ssh_config"', status: 'included' }),
    now: () => 1,
    ...over,
  };
  return { d, ran };
}

function loginItem(over: Partial<LoginItemStatus>): LoginItemStatus {
  return {
    label: 'dev.nixvm.agent',
    plistPath: '/LA/dev.nixvm.agent.plist',
    installed: false,
    programArguments: null,
    loaded: false,
    service: null,
    problem: null,
    ...over,
  };
}

/** A Mac with nix 2.34 (as recorded), vfkit 0.6.2, macOS 14 on Apple silicon and Rosetta. */
function mac(): Outputs {
  return {
    [`${NIX} --version`]: { stdout: 'nix (Nix) 2.34.8\n' },
    [`${NIX} --extra-experimental-features nix-command store info --json`]: {
      stdout: fixture('nix-2.34.8-store-info.json'),
    },
    [`${NIX} --extra-experimental-features nix-command config show --json`]: {
      stdout: fixture('nix-2.34.8-config-show.json'),
    },
    [`${VFKIT} --version`]: { stdout: 'vfkit version: v0.6.2\n' },
    '/usr/bin/sw_vers -productVersion': { stdout: fixture('macos-sw_vers-productVersion.txt') },
    '/usr/sbin/sysctl -n hw.optional.arm64': { stdout: fixture('macos-sysctl-hw.optional.arm64.txt') },
    '/usr/sbin/sysctl -n sysctl.proc_translated': { stdout: fixture('macos-sysctl-sysctl.proc_translated.txt') },
    '/usr/bin/pgrep -q oahd': { exitCode: 0 },
  };
}

const byId = (checks: DoctorCheck[]) => Object.fromEntries(checks.map((c) => [c.id, c]));

describe('doctor', () => {
  it('checks a Mac in order, running exactly these programs', async () => {
    const { d, ran } = deps(mac());
    const r = await runDoctor(d);
    expect(r.checks.map((c) => [c.id, c.status])).toEqual([
      ['nix', 'ok'],
      ['nix-daemon', 'ok'],
      // The recorded nix.conf enables nix-command only.
      ['flakes', 'warn'],
      ['trusted-user', 'ok'],
      ['vfkit', 'ok'],
      ['macos', 'ok'],
      ['apple-silicon', 'ok'],
      ['rosetta', 'ok'],
      ['builder', 'ok'],
      ['state-dir', 'ok'],
      ['login-item', 'ok'],
      ['ssh-include', 'ok'],
    ]);
    expect(ran).toEqual([
      `${NIX} --version`,
      `${NIX} --extra-experimental-features nix-command store info --json`,
      `${NIX} --extra-experimental-features nix-command config show --json`,
      `${VFKIT} --version`,
      '/usr/bin/sw_vers -productVersion',
      '/usr/sbin/sysctl -n hw.optional.arm64',
      '/usr/sbin/sysctl -n sysctl.proc_translated',
      '/usr/bin/pgrep -q oahd',
    ]);
    const c = byId(r.checks);
    expect(c.nix!.summary).toBe(`nix 2.34.8 at ${NIX}.`);
    expect(c.flakes!.fix).toBe('add `experimental-features = nix-command flakes` to ~/.config/nix/nix.conf');
    expect(c.macos!.summary).toBe('macOS 14.6.1.');
    expect(c['nix-daemon']!.summary).toBe('nix uses its store directly (local, no daemon).');
  });

  it('reads Nix 2.26 (trusted: 1) and Nix 2.8 (no store info, features as numbers) as recorded', async () => {
    const o26 = mac();
    o26[`${NIX} --version`] = { stdout: 'nix (Nix) 2.26.3\n' };
    o26[`${NIX} --extra-experimental-features nix-command store info --json`] = {
      stdout: fixture('nix-2.26.3-store-info.json'),
    };
    o26[`${NIX} --extra-experimental-features nix-command config show --json`] = {
      stdout: fixture('nix-2.26.3-config-show.json'),
    };
    expect(byId((await runDoctor(deps(o26).d)).checks)['trusted-user']!.status).toBe('ok');

    const o28 = mac();
    o28[`${NIX} --version`] = { stdout: 'nix (Nix) 2.8.0\n' };
    delete o28[`${NIX} --extra-experimental-features nix-command store info --json`];
    delete o28[`${NIX} --extra-experimental-features nix-command config show --json`];
    o28[`${NIX} --extra-experimental-features nix-command store ping`] = {
      stdout: fixture('nix-2.8.0-store-ping.txt'),
    };
    o28[`${NIX} --extra-experimental-features nix-command show-config --json`] = {
      stdout: fixture('nix-2.8.0-show-config.json'),
    };
    const c = byId((await runDoctor(deps(o28).d)).checks);
    expect(c.nix).toMatchObject({
      status: 'warn',
      summary: `nix 2.8.0 at ${NIX} is older than 2.18, the oldest nixvm supports on a Mac.`,
    });
    expect(c['nix-daemon']!.status).toBe('ok');
    expect(c.flakes!.status).toBe('skip');
    expect(c.builder!.status).toBe('ok');
  });

  it('nix and vfkit missing: the short sentence, the fix, and every directory searched', async () => {
    const { d } = deps(mac(), {
      locateNix: () => {
        throw new ProgramNotFoundError(
          'nix',
          ['/usr/bin', '/nix/var/nix/profiles/default/bin'],
          'install Nix',
          'Could not find nix in your PATH or the Nix profiles; install Nix.',
        );
      },
      locateVfkit: () => {
        throw new ProgramNotFoundError(
          'vfkit',
          ['/usr/bin', '/opt/homebrew/bin'],
          undefined,
          'Could not find vfkit in your PATH, /opt/homebrew/bin, /usr/local/bin or the Nix profiles.',
        );
      },
    });
    const c = byId((await runDoctor(d)).checks);
    expect(c.nix).toMatchObject({
      status: 'fail',
      summary: 'Could not find nix in your PATH or the Nix profiles; install Nix.',
      details: ['looked in /usr/bin', 'looked in /nix/var/nix/profiles/default/bin'],
    });
    expect(c.vfkit).toMatchObject({ status: 'fail', details: ['looked in /usr/bin', 'looked in /opt/homebrew/bin'] });
    expect(c.vfkit!.fix).toContain('brew install vfkit');
    // Without nix there is no configuration: the builder check says so instead of guessing.
    expect(c.builder!.status).toBe('skip');
  });

  it('an old vfkit, an old macOS, no Rosetta for VMs that use it', async () => {
    const o = mac();
    o[`${VFKIT} --version`] = { stdout: 'vfkit version: v0.5.1\n' };
    o['/usr/bin/sw_vers -productVersion'] = { stdout: '12.7.4\n' };
    o['/usr/bin/pgrep -q oahd'] = { exitCode: 1 };
    const c = byId((await runDoctor(deps(o).d)).checks);
    expect(c.vfkit).toMatchObject({ status: 'fail', fix: '`brew upgrade vfkit` or `nix profile upgrade`' });
    expect(c.macos).toMatchObject({
      status: 'warn',
      summary: 'macOS 12.7.4: VMs run, but Rosetta in Linux VMs needs macOS 13 or newer.',
    });
    expect(c.rosetta).toMatchObject({
      status: 'fail',
      summary: 'Rosetta is not installed ("dev" uses it).',
      fix: '`softwareupdate --install-rosetta --agree-to-license`',
    });
    // Its binary is enough to know it is there, oahd running or not.
    const { d } = deps(o, { exists: (f) => f === ROSETTA_BINARY });
    expect(byId((await runDoctor(d)).checks).rosetta!.status).toBe('ok');
  });

  it('an Intel Mac: no Rosetta to check, said once', async () => {
    const o = mac();
    o['/usr/sbin/sysctl -n hw.optional.arm64'] = { stdout: '0\n' };
    const c = byId((await runDoctor(deps(o).d)).checks);
    expect(c['apple-silicon']!.status).toBe('warn');
    expect(c.rosetta!.status).toBe('skip');
  });

  it('a system nothing here builds, with and without builders configured', async () => {
    const { d } = deps(mac(), { systems: ['aarch64-linux', 'x86_64-linux'] });
    const none = byId((await runDoctor(d)).checks).builder!;
    expect(none).toMatchObject({ status: 'fail', summary: 'nothing here builds aarch64-linux, which your VMs need.' });
    expect(none.fix).toContain('nix.linux-builder.enable = true;');
    expect(none.details).toEqual([
      'this machine builds: x86_64-linux, i686-linux, x86_64-v1-linux, x86_64-v2-linux, x86_64-v3-linux, x86_64-v4-linux',
    ]);
    // The builders the agent found, probed: one that answers builds it; a silent one is a warning.
    const machine = (answers: boolean | null) => ({
      uri: 'ssh-ng://builder@linux-builder',
      systems: ['aarch64-linux'],
      maxJobs: 4,
      supportedFeatures: ['kvm'],
      source: '/etc/nix/machines',
      answers,
      vm: null,
    });
    const withBuilder = (answers: boolean | null) =>
      deps(mac(), {
        systems: ['aarch64-linux'],
        builders: async () => ({
          localSystems: [],
          machines: [machine(answers)],
          problems: [],
          vm: null,
          status: 'off' as const,
          note: null,
          mode: 'system' as const,
          machinesFile: '/s/machines',
        }),
      }).d;
    const ok = byId((await runDoctor(withBuilder(true))).checks).builder!;
    expect(ok).toMatchObject({ status: 'ok', summary: 'aarch64-linux builds on a builder that answers.' });
    expect(ok.details).toContain('builder ssh-ng://builder@linux-builder: aarch64-linux; answers');
    expect(byId((await runDoctor(withBuilder(false))).checks).builder).toMatchObject({
      status: 'warn',
      summary: 'the builders for aarch64-linux do not answer on ssh, so builds for them will fail.',
    });
    expect(byId((await runDoctor(deps(mac(), { systems: null }).d)).checks).builder!.status).toBe('skip');
  });

  it('the state folder, the login item and the ssh Include line, each with its fix', async () => {
    const { d } = deps(mac(), {
      stat: () => ({ uid: 501, mode: 0o40755, isDirectory: true, isSymbolicLink: false }),
      loginItem: async () =>
        loginItem({
          installed: true,
          programArguments: ['/old/checkout/node', '/old/checkout/bin/nixvm.js', 'daemon'],
        }),
      sshConfig: async () => ({
        path: '/s/ssh_config',
        includeLine: 'Include "/s/ssh_config"',
        status: 'not-included',
      }),
    });
    const c = byId((await runDoctor(d)).checks);
    expect(c['state-dir']).toMatchObject({
      status: 'warn',
      fix: '`chmod 700 /Users/alice/Library/Application Support/NixVM`',
    });
    expect(c['login-item']).toMatchObject({
      status: 'fail',
      summary: 'the login item runs /old/checkout/node, which is not there any more (a moved or deleted checkout?).',
    });
    expect(c['ssh-include']).toMatchObject({
      status: 'warn',
      fix: 'add this line at the top of ~/.ssh/config: Include "/s/ssh_config"',
    });
    const other = deps(mac(), { stat: () => ({ uid: 0, mode: 0o40700, isDirectory: true, isSymbolicLink: false }) }).d;
    expect(byId((await runDoctor(other)).checks)['state-dir']!.status).toBe('fail');
  });

  it('not a Mac: says so and runs none of the macOS programs', async () => {
    const { d, ran } = deps(mac(), { platform: 'linux' });
    const c = byId((await runDoctor(d)).checks);
    expect(c.macos!.status).toBe('warn');
    expect(c['apple-silicon']!.status).toBe('skip');
    expect(c.rosetta!.status).toBe('skip');
    expect(ran.filter((a) => a.startsWith('/usr/'))).toEqual([]);
  });
});
