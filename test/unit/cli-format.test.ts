import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  describeChanges,
  formatArgv,
  formatEvent,
  formatInspect,
  formatMemory,
  formatProgressLine,
  formatStatus,
  formatVmTable,
  renderTable,
  storeName,
} from '../../src/cli/format.ts';
import { LineView } from '../../src/cli/progress.ts';
import type { BuildProgress, VmSpec } from '../../src/api/types.ts';
import { agentSnapshot, buildInfo, collect, flakeSnapshot, vmSnapshot } from '../helpers/fake-port.ts';

const H = 'b'.repeat(32);

function progress(over: Partial<BuildProgress>): BuildProgress {
  return {
    buildsDone: 0,
    buildsExpected: 0,
    buildsRunning: 0,
    downloadsDone: 0,
    downloadsExpected: 0,
    bytesDone: 0,
    bytesExpected: 0,
    currentDrv: null,
    phase: null,
    lastLine: null,
    percent: 0,
    ...over,
  };
}

/** Column start offsets of the header line, by header name. */
function columns(header: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of header.matchAll(/\S+/g)) out[m[0]] = m.index;
  return out;
}

describe('ls table', () => {
  it('aligns every column to the longest name and never cuts a name', () => {
    const long = 'a-very-long-vm-name-that-goes-on-and-on';
    const text = formatVmTable(
      agentSnapshot([
        vmSnapshot({ name: 'web', state: 'running', ipv4: '192.168.64.5', cpus: 4, memoryMiB: 4096 }),
        vmSnapshot({ name: long, stale: true, memoryMiB: 1536 }),
      ]),
      40,
    );
    const [header = '', web = '', other = ''] = text.split('\n');
    const col = columns(header);
    expect(Object.keys(col)).toEqual(['NAME', 'STATE', 'STALE', 'CPUS/MEM', 'IP']);
    expect(other.startsWith(long)).toBe(true);
    // Values start under their headers on every row.
    expect(web.slice(col.STATE).startsWith('running')).toBe(true);
    expect(other.slice(col.STATE).startsWith('stopped')).toBe(true);
    expect(web.slice(col.STALE).startsWith('no')).toBe(true);
    expect(other.slice(col.STALE).startsWith('yes')).toBe(true);
    expect(web.slice(col['CPUS/MEM']).startsWith('4/4 GiB')).toBe(true);
    expect(other.slice(col['CPUS/MEM']).startsWith('2/1.5 GiB')).toBe(true);
    expect(web.slice(col.IP!)).toBe('192.168.64.5');
  });

  it('shows IPv6 when there is no IPv4 and a dash when there is neither', () => {
    const text = formatVmTable(
      agentSnapshot([
        vmSnapshot({ name: 'v6', state: 'running', ipv6: 'fe80::5894:efff:fee4:cee%bridge100' }),
        vmSnapshot({ name: 'none' }),
        vmSnapshot({ name: 'unevaluated', cpus: null, memoryMiB: null }),
      ]),
    );
    const lines = text.split('\n');
    expect(lines[1]).toMatch(/fe80::5894:efff:fee4:cee%bridge100$/);
    expect(lines[2]).toMatch(/\s-$/);
    expect(lines[3]).toMatch(/^unevaluated\s+stopped\s+no\s+-\s+-$/);
  });

  it('puts VM errors, failed builds and build progress in a NOTE column, cut to the width', () => {
    const text = formatVmTable(
      agentSnapshot([
        vmSnapshot({
          name: 'broken',
          error: 'nixosConfigurations.broken does not evaluate: attribute foo missing.\nmore',
          spec: null,
        }),
        vmSnapshot({
          name: 'bad',
          build: buildInfo({ status: 'failed', error: 'Building bad failed in builder for hello.drv.' }),
        }),
        vmSnapshot({
          name: 'busy',
          build: buildInfo({
            status: 'building',
            progress: progress({
              percent: 42.7,
              buildsDone: 3,
              buildsExpected: 7,
              currentDrv: `/nix/store/${H}-hello.drv`,
            }),
          }),
        }),
        vmSnapshot({ name: 'fine' }),
      ]),
      100,
    );
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/\bNOTE$/);
    expect(lines[1]).toContain('nixosConfigurations.broken does not evaluate');
    expect(lines[1]).not.toContain('more');
    expect(lines[1]!.length).toBeLessThanOrEqual(100);
    expect(lines[1]!.endsWith('…')).toBe(true);
    expect(lines[2]).toContain('build failed: Building bad failed');
    expect(lines[3]).toContain('building 42% (3/7 builds) hello.drv');
    expect(lines[4]).toMatch(/^fine\s+stopped\s+no\s+2\/2 GiB\s+-$/);
  });

  it("adds one line per flake error and warning, and the agent's problems", () => {
    const text = formatVmTable(
      agentSnapshot([vmSnapshot({ name: 'web' })], {
        flakes: [
          flakeSnapshot({ dir: '/f/one', error: 'error: syntax error, unexpected }\n at flake.nix:3' }),
          flakeSnapshot({ dir: '/f/two', warnings: ['Git tree is dirty', 'new.nix is not tracked by git'] }),
        ],
        agent: {
          pid: 1,
          startedAt: 0,
          version: '0',
          nix: null,
          vfkit: null,
          problems: ['Could not find vfkit; install it with `nix profile install nixpkgs#vfkit`.'],
          sshConfig: { path: '/state/ssh_config', includeLine: 'Include /state/ssh_config', status: 'not-included' },
        },
      }),
    );
    const lines = text.split('\n');
    expect(lines.slice(2)).toEqual([
      'flake /f/one: error: error: syntax error, unexpected }',
      'flake /f/two: warning: Git tree is dirty',
      'flake /f/two: warning: new.nix is not tracked by git',
      'agent: Could not find vfkit; install it with `nix profile install nixpkgs#vfkit`.',
    ]);
  });

  it('says what to do when there are no VMs', () => {
    expect(formatVmTable(agentSnapshot([], { flakes: [] }))).toContain('nixvm daemon --flake DIR');
    expect(formatVmTable(agentSnapshot([]))).toContain('/flakes/demo defines no nixosConfigurations');
  });

  it('renderTable pads columns and trims trailing blanks', () => {
    expect(
      renderTable(
        ['A', 'BB'],
        [
          ['xxx', ''],
          ['y', 'z'],
        ],
      ),
    ).toBe('A    BB\nxxx\ny    z');
  });
});

describe('status block', () => {
  const now = 1_700_000_000_000;

  it('lists state, closures, addresses, ssh and log paths of a running VM', () => {
    const text = formatStatus(
      vmSnapshot({
        name: 'web',
        state: 'running',
        pid: 777,
        startedAt: now - 125_000,
        stale: true,
        bootedOutPath: `/nix/store/${H}-nixos-system-web`,
        builtOutPath: `/nix/store/${H}-nixos-system-web`,
        ipv4: '192.168.64.9',
        ipv6: 'fe80::1%bridge100',
        sshCommand: 'ssh -p 22 alice@192.168.64.9',
        shares: [{ tag: 'home', source: '/Users/alice', target: '/mnt/home' }],
        build: buildInfo({ status: 'succeeded', finishedAt: now - 3_600_000, logPath: '/logs/web/build.log' }),
      }),
      now,
    );
    const lines = text.split('\n');
    expect(lines[0]).toBe('web');
    const field = (k: string): string | undefined => {
      for (const l of lines) {
        const m = /^ {2}([a-z0-9 ]+):\s+(.*)$/.exec(l);
        if (m?.[1] === k) return m[2];
      }
      return undefined;
    };
    expect(field('state')).toBe('running (pid 777, up 2m 5s)');
    expect(field('stale')).toMatch(/^yes/);
    expect(field('current')).toBe(`/nix/store/${'a'.repeat(32)}-nixos-system-web.drv`);
    expect(field('booted')).toBe(`/nix/store/${H}-nixos-system-web`);
    expect(field('ipv4')).toBe('192.168.64.9');
    expect(field('ipv6')).toBe('fe80::1%bridge100');
    expect(field('ssh')).toBe('ssh -p 22 alice@192.168.64.9');
    expect(field('share')).toBe('/Users/alice → /mnt/home (tag home)');
    expect(field('console log')).toBe('/state/logs/web/console.log');
    expect(field('build')).toBe('succeeded 1h 0m ago');
    expect(field('build log')).toBe('/logs/web/build.log');
  });

  it("shows a failed build with nix's detail and a crash with its last console lines", () => {
    const text = formatStatus(
      vmSnapshot({
        name: 'db',
        state: 'crashed',
        build: buildInfo({
          status: 'failed',
          error: 'Building db failed: builder for hello.drv exited with code 1.',
          detail: 'error: builder for hello.drv failed\n  last 2 log lines:\n  > boom',
          finishedAt: now - 5_000,
        }),
        exit: { code: null, signal: 'SIGKILL', lastLines: ['[  1.0] Kernel panic', '[  1.1] end'], at: now - 30_000 },
      }),
      now,
    );
    expect(text).toContain('build error:');
    expect(text).toContain('Building db failed: builder for hello.drv exited with code 1.');
    expect(text).toMatch(/build detail:\n {4}error: builder for hello.drv failed\n {6}last 2 log lines:\n {6}> boom/);
    expect(text).toMatch(/last exit:\s+killed by SIGKILL, 30s ago/);
    expect(text).toMatch(/last console lines:\n {4}\[ {2}1\.0\] Kernel panic\n {4}\[ {2}1\.1\] end$/);
  });

  it('says when a running VM has no lease yet and leaves out what it does not know', () => {
    const text = formatStatus(vmSnapshot({ name: 'x', state: 'running', mac: null }), now);
    expect(text).toMatch(/ipv4:\s+\(no DHCP lease yet\)/);
    expect(text).not.toMatch(/\bmac:/);
    expect(text).not.toMatch(/ipv6:/);
  });
});

describe('progress and events', () => {
  it('formats a plain progress line and nothing when not building', () => {
    const vm = vmSnapshot({
      name: 'web',
      build: buildInfo({
        status: 'building',
        progress: progress({
          percent: 57,
          buildsDone: 4,
          buildsExpected: 7,
          currentDrv: `/nix/store/${H}-linux-6.6.drv`,
          phase: 'buildPhase',
          lastLine: 'CC kernel/fork.o',
        }),
      }),
    });
    expect(formatProgressLine(vm)).toBe('web: building 57% (4/7 builds) linux-6.6.drv buildPhase | CC kernel/fork.o');
    expect(formatProgressLine(vmSnapshot({ name: 'idle' }))).toBeNull();
  });

  it('prints a plain line only when the progress itself changes, not for every log line', () => {
    const out = collect();
    const view = new LineView(out);
    const at = (percent: number, lastLine: string) =>
      vmSnapshot({
        name: 'w',
        build: buildInfo({ status: 'building', progress: progress({ percent, lastLine, buildsExpected: 2 }) }),
      });
    view.update(at(10, 'a'));
    view.update(at(10.4, 'b'));
    view.update(at(10.9, 'c'));
    view.update(at(50, 'd'));
    view.update(vmSnapshot({ name: 'w', build: buildInfo({ status: 'succeeded' }) }));
    expect(out.text()).toBe('w: building 10% (0/2 builds) | a\nw: building 50% (0/2 builds) | d\n');
  });

  it('describes state changes between snapshots', () => {
    const before = agentSnapshot([vmSnapshot({ name: 'a' }), vmSnapshot({ name: 'gone' })]);
    const after = agentSnapshot([
      vmSnapshot({ name: 'a', state: 'crashed', stale: true, exit: { code: 1, signal: null, lastLines: [], at: 0 } }),
      vmSnapshot({ name: 'new', state: 'stopped' }),
    ]);
    expect(describeChanges(before, after)).toEqual([
      'a: stopped → crashed (exit code 1)',
      'a: stale (the flake changed)',
      'new: stopped',
      'gone: removed from the flake',
    ]);
    expect(describeChanges(after, after)).toEqual([]);
  });

  it('prints log events with their VM and kind', () => {
    expect(formatEvent({ type: 'log', vm: 'web', kind: 'console', lines: ['one', 'two'] }, null)).toEqual([
      '[web console] one',
      '[web console] two',
    ]);
  });

  it('misc units', () => {
    expect(formatMemory(512)).toBe('512 MiB');
    expect(formatMemory(2048)).toBe('2 GiB');
    expect(formatMemory(3000)).toBe('2.9 GiB');
    expect(storeName(`/nix/store/${H}-foo-1.0.drv`)).toBe('foo-1.0.drv');
    expect(storeName('/elsewhere/x')).toBe('/elsewhere/x');
  });
});

describe('inspect', () => {
  it('prints the vfkit argv so a shell gets back the exact arguments', () => {
    const argv = [
      '/usr/local/bin/vfkit',
      '--cpus',
      '2',
      '--device',
      'virtio-fs,sharedDir=/Users/a b,mountTag=home',
      '--restful-uri',
      "unix:///tmp/it's.sock",
    ];
    const text = formatArgv(argv);
    expect(text.split(' \\\n  ')).toEqual([
      '/usr/local/bin/vfkit',
      '--cpus 2',
      "--device 'virtio-fs,sharedDir=/Users/a b,mountTag=home'",
      '--restful-uri "unix:///tmp/it\'s.sock"',
    ]);
    // A real shell reads back exactly the argv.
    const nasty = [...argv, '', '$HOME', '`x`', 'a"b', '-o', 'x;y', 'tab\there', '~', '*', '=ls'];
    const echoed = execFileSync('/bin/sh', ['-c', `printf '%s\\0' ${formatArgv(nasty)}`], { encoding: 'utf8' });
    expect(echoed.split('\0').slice(0, -1)).toEqual(nasty);
  });

  it('leaves vfkit device values readable (no backslashes before commas and colons)', () => {
    const text = formatArgv([
      'vfkit',
      '--device',
      'virtio-net,nat,mac=f6:25:e2:48:58:1e',
      '--restful-uri',
      'unix:///tmp/r.sock',
    ]);
    expect(text).toBe(
      'vfkit \\\n  --device virtio-net,nat,mac=f6:25:e2:48:58:1e \\\n  --restful-uri unix:///tmp/r.sock',
    );
  });

  it('shows the spec facts, or says the VM does not evaluate', () => {
    const spec: VmSpec = {
      name: 'web',
      flake: '/flakes/demo',
      drvPath: `/nix/store/${H}-nixos-system-web.drv`,
      system: 'aarch64-linux',
      kernelParams: ['console=hvc0'],
      cpus: 4,
      memoryMiB: 8192,
      macAddress: null,
      rosetta: true,
      shares: [],
      graphics: false,
      resolution: null,
      mountHostNixStore: true,
      ssh: { enabled: true, port: 22, user: 'alice' },
    };
    const text = formatInspect('web', spec, ['vfkit', '--cpus', '4']);
    expect(text).toContain('web (aarch64-linux) from /flakes/demo');
    expect(text).toMatch(/mac:\s+\(generated\)/);
    expect(text).toMatch(/rosetta:\s+yes/);
    expect(text.endsWith('vfkit command:\nvfkit \\\n  --cpus 4')).toBe(true);
    expect(formatInspect('x', null, [])).toContain('x: no spec (its configuration does not evaluate)');
  });
});
