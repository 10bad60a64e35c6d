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
import type { BuildProgress, FlakeSnapshot, VmSpec } from '../../src/api/types.ts';
import { makePaint } from '../../src/cli/color.ts';
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
  const LL = 'fe80::f425:e2ff:fe48:581e%bridge100';

  it('aligns every column to the longest name and never cuts a name', () => {
    const long = 'a-very-long-vm-name-that-goes-on-and-on';
    const text = formatVmTable(
      agentSnapshot([
        vmSnapshot({
          name: 'web',
          state: 'running',
          ipv4: '192.168.64.5',
          cpus: 4,
          memoryMiB: 4096,
          builtDrvPath: '/d',
        }),
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

  it('shows an address only for a VM that runs (IPv6 when there is no IPv4), and "never built" for one never built', () => {
    const text = formatVmTable(
      agentSnapshot([
        vmSnapshot({ name: 'v6', state: 'running', ipv6: LL, bootedDrvPath: '/d' }),
        vmSnapshot({ name: 'none', ipv6: LL, builtDrvPath: '/d' }),
        vmSnapshot({ name: 'fresh', ipv6: LL }),
        vmSnapshot({ name: 'unevaluated', cpus: null, memoryMiB: null, drvPath: null }),
      ]),
    );
    const lines = text.split('\n');
    expect(lines[1]).toMatch(/^v6\s+running\s+no\s+2\/2 GiB\s+fe80::f425:e2ff:fe48:581e%bridge100$/);
    // The link-local address is known from the MAC, but nothing answers on it while stopped.
    expect(lines[2]).toMatch(/^none\s+stopped\s+no\s+2\/2 GiB\s+-$/);
    expect(lines[3]).toMatch(/^fresh\s+stopped\s+never built\s+2\/2 GiB\s+-$/);
    expect(lines[4]).toMatch(/^unevaluated\s+stopped\s+-\s+-\s+-$/);
  });

  it('fits 80 columns: notes wrap under their row, a link-local address is elided in the middle', () => {
    const snap = agentSnapshot([
      vmSnapshot({ name: 'minimal-vm', state: 'running', ipv6: LL, bootedDrvPath: '/d' }),
      vmSnapshot({
        name: 'builder-vm',
        error:
          'builder-vm\'s shared directory "cache" (/var/tmp/nixvm-builder-cache) does not exist; create it or change virtualisation.sharedDirectories.',
      }),
    ]);
    const lines = formatVmTable(snap, 80).split('\n');
    for (const l of lines) expect(l.length, l).toBeLessThanOrEqual(80);
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+STALE\s+CPUS\/MEM\s+IP$/);
    expect(lines[1]).toMatch(/^minimal-vm\s+running\s+no\s+2\/2 GiB\s+fe80::f425:e2ff:fe48:581e%bridge100$/);
    // The whole error, wrapped and indented under its row: nothing cut.
    expect(lines.slice(3).join(' ').replace(/\s+/g, ' ').trim()).toBe(
      'builder-vm\'s shared directory "cache" (/var/tmp/nixvm-builder-cache) does not exist; create it or change virtualisation.sharedDirectories.',
    );
    expect(lines[3]!.startsWith('  builder-vm')).toBe(true);

    const narrow = formatVmTable(snap, 64).split('\n');
    for (const l of narrow) expect(l.length, l).toBeLessThanOrEqual(64);
    expect(narrow[1]).toMatch(/fe80::.*…%bridge100$/);
    // With no width (a pipe), nothing is wrapped or elided: a script reads whole values.
    const piped = formatVmTable(snap).split('\n');
    expect(piped[0]).toMatch(/\bNOTE$/);
    expect(piped[1]).toContain(LL);
  });

  it('puts VM errors, failed builds and build progress in a NOTE column', () => {
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
        vmSnapshot({
          name: 'thinking',
          build: buildInfo({ status: 'building', progress: progress({ stage: 'evaluating' }) }),
        }),
        vmSnapshot({ name: 'fine' }),
      ]),
      140,
    );
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/\bNOTE$/);
    expect(lines[1]).toContain('nixosConfigurations.broken does not evaluate');
    expect(lines[1]).not.toContain('more');
    expect(lines[2]).toContain('build failed: Building bad failed');
    expect(lines[3]).toContain('building 42% (3/7 builds) hello.drv');
    expect(lines[4]).toContain('building: nix is evaluating it');
    expect(lines[5]).toMatch(/^fine\s+stopped\s+never built\s+2\/2 GiB\s+-$/);
  });

  it('colours state, stale and errors on a terminal, and nothing else moves', () => {
    const snap = agentSnapshot(
      [
        vmSnapshot({ name: 'web', state: 'running', ipv4: '192.168.64.5', builtDrvPath: '/d' }),
        vmSnapshot({ name: 'cache', state: 'crashed', stale: true }),
        // Stopped, so only its error makes its note red.
        vmSnapshot({ name: 'db', error: 'db does not evaluate: boom.' }),
      ],
      {
        flakes: [
          flakeSnapshot({ dir: '/flakes/demo', hidden: ['laptop'] }),
          flakeSnapshot({
            dir: '/f/two',
            state: 'failed',
            error: 'The flake at /f/two has a syntax error in flake.nix at line 3; fix it and save.\nerror: …',
            warnings: ['new.nix is not tracked by git'],
          }),
        ],
      },
    );
    snap.agent.problems = ['Could not find vfkit; install it with `brew install vfkit`.'];
    const plain = formatVmTable(snap, 120);
    const coloured = formatVmTable(snap, 120, { paint: makePaint(true) });
    const RED = (t: string) => `\u001b[31m${t}\u001b[0m`;
    expect(coloured).toContain('\u001b[32mrunning\u001b[0m');
    expect(coloured).toContain(RED('crashed'));
    expect(coloured).toContain('\u001b[33myes\u001b[0m');
    // Errors are red: a VM's error note, a failed flake's sentence, the agent's problems.
    const lines = coloured.split('\n');
    expect(
      lines.find((l) => l.startsWith('db')),
      "db's row with its error note",
    ).toMatch(/\u001b\[31mdb does not evaluate: boom\.\u001b\[0m$/);
    expect(lines, 'the failed flake sentence, whole and red').toContain(
      RED('The flake at /f/two has a syntax error in flake.nix at line 3; fix it and save.'),
    );
    expect(lines, 'the agent problem line').toContain(
      `agent: ${RED('Could not find vfkit; install it with `brew install vfkit`.')}`,
    );
    // A warning says so in yellow; what is only information (hidden configurations) stays plain.
    expect(lines).toContain('flake /f/two: \u001b[33mwarning:\u001b[0m new.nix is not tracked by git');
    const hidden = lines.find((l) => l.includes('laptop'));
    expect(hidden, 'the hidden configurations line').toBeDefined();
    expect(hidden).not.toContain('\u001b');
    expect(coloured.replace(/\u001b\[[0-9;]*m/g, '')).toBe(plain);
    expect(plain).not.toContain('\u001b');
  });

  it("adds one sentence per flake that is not simply fine, its warnings, and the agent's problems", () => {
    const text = formatVmTable(
      agentSnapshot([vmSnapshot({ name: 'web', flake: '/f/one', builtDrvPath: '/d' })], {
        flakes: [
          flakeSnapshot({ dir: '/f/one', hidden: ['laptop', 'server'] }),
          flakeSnapshot({
            dir: '/f/two',
            state: 'failed',
            errorKind: 'syntax',
            error:
              "The flake at /f/two has a syntax error in flake.nix at line 3, column 1 (unexpected '}'); fix it and save.\nerror: …",
            warnings: ['new.nix is not tracked by git'],
          }),
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
    expect(text.split('\n').slice(2)).toEqual([
      '2 other configurations hidden in /f/one ("laptop", "server"): not VMs, or excluded in the settings; `nixvm flake include /f/one NAME` shows one as a VM.',
      "The flake at /f/two has a syntax error in flake.nix at line 3, column 1 (unexpected '}'); fix it and save.",
      'flake /f/two: warning: new.nix is not tracked by git',
      'agent: Could not find vfkit; install it with `nix profile install nixpkgs#vfkit`.',
    ]);
  });

  it('with no VMs, says why in a sentence of its own for each state of the flake', () => {
    const now = 1_700_000_100_000;
    const no = (over: Partial<FlakeSnapshot>) =>
      formatVmTable(agentSnapshot([], { flakes: [flakeSnapshot({ dir: '/vms', ...over })] }), undefined, { now });
    expect(formatVmTable(agentSnapshot([], { flakes: [] }))).toContain('`nixvm flake add DIR`');
    expect(no({ state: 'evaluating', evaluatingSince: now - 12_000 })).toBe(
      '/vms is still being evaluated (for 12s); its VMs appear when nix is done.',
    );
    expect(
      no({ state: 'nix-missing', error: '/vms cannot be evaluated: could not find nix in your PATH; install Nix.' }),
    ).toBe('/vms cannot be evaluated: could not find nix in your PATH; install Nix.');
    expect(
      no({
        state: 'failed',
        errorKind: 'network',
        error:
          'The flake at /vms could not fetch one of its inputs (https://x/y.tar.gz: the host name does not resolve); check the network connection (and any proxy or substituter in between), then run `nixvm reevaluate`.\nerror: …',
      }),
    ).toContain('then run `nixvm reevaluate`.');
    expect(no({ hidden: ['laptop'] })).toBe(
      '/vms defines no VMs: its only configuration ("laptop") sets none of the options nixvm reads (virtualisation.*), or the settings exclude it; `nixvm flake include /vms NAME` shows one as a VM.',
    );
    expect(no({})).toBe(
      '/vms defines no VMs: its nixosConfigurations is empty; define each VM as nixosConfigurations.<name>.',
    );
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

  it('shows the closure a VM was switched to in place, what apply would do, and what the last apply did', () => {
    const text = formatStatus(
      vmSnapshot({
        name: 'web',
        state: 'running',
        stale: true,
        bootedOutPath: '/nix/store/aaa-nixos-system-web',
        switchedOutPath: '/nix/store/bbb-nixos-system-web',
        applyPreview: { how: 'restart', reasons: ['memorySize 1024 → 2048 needs a restart'] },
        applied: {
          how: 'failed',
          outPath: '/nix/store/ccc-nixos-system-web',
          at: now - 90_000,
          reasons: [],
          error: 'Switching "web" left a unit failed (foo.service); it keeps running.',
          lastLine: null,
        },
      }),
      now,
    );
    expect(text).toContain('  booted:      /nix/store/aaa-nixos-system-web\n');
    expect(text).toContain('  switched to: /nix/store/bbb-nixos-system-web (in place; a restart boots it)\n');
    expect(text).toContain('  apply:       restarts it: memorySize 1024 → 2048 needs a restart\n');
    expect(text).toContain(
      '  last apply:  failed (1m 30s ago): Switching "web" left a unit failed (foo.service); it keeps running.\n',
    );
  });

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

  it('lists each disk image with its path, apparent size and space on disk, then the disk-size notice', () => {
    const GiB = 1024 ** 3;
    const store = `/state/images/${H}-nixos-system-builder-vm-25.05.img`;
    const text = formatStatus(
      vmSnapshot({
        name: 'builder-vm',
        disks: {
          images: [
            {
              role: 'nix-store',
              path: store,
              apparentBytes: 340 * 1024 ** 2,
              allocatedBytes: 340 * 1024 ** 2,
              readOnly: true,
            },
            {
              role: 'writable-store',
              path: '/state/vms/builder-vm/store-writable.img',
              apparentBytes: 20 * GiB,
              allocatedBytes: 3.1 * GiB,
              readOnly: false,
            },
          ],
          preparing: null,
          error: null,
          notice: 'virtualisation.diskSize is 30720 MiB, the image 20480 MiB: run `nixvm disk grow builder-vm`',
          canGrow: true,
        },
      }),
      now,
    );
    const disks = text.split('\n').filter((l) => /^ {2}(disk|disk size):/.test(l));
    expect(disks).toEqual([
      `  disk:        Nix store image ${store}: 340 MiB, 340 MiB on disk, read-only`,
      '  disk:        writable store /state/vms/builder-vm/store-writable.img: 20 GiB, 3.1 GiB on disk',
      '  disk size:   virtualisation.diskSize is 30720 MiB, the image 20480 MiB: run `nixvm disk grow builder-vm`',
    ]);
  });

  it('says the store image is being made, with the bytes written so far', () => {
    const text = formatStatus(
      vmSnapshot({
        name: 'builder-vm',
        disks: {
          images: [],
          preparing: {
            phase: 'building the store image',
            bytesWritten: 12 * 1024 ** 2,
            bytesExpected: 340 * 1024 ** 2,
            startedAt: now - 1000,
          },
          error: null,
          notice: null,
          canGrow: false,
        },
      }),
      now,
    );
    expect(text).toMatch(/\n {2}store image: +building the store image: 12 MiB of 340 MiB written(\n|$)/);
    expect(text).not.toMatch(/\n {2}disk:/);
  });

  it("shows a VM's link-local address when it is not running, marked as reachable only while it runs", () => {
    const field = (text: string, k: string) => new RegExp(`^ {2}${k}:\\s+(.*)$`, 'm').exec(text)?.[1];
    const ll = 'fe80::5894:efff:fee4:cee%bridge100';
    for (const state of ['stopped', 'crashed'] as const) {
      const text = formatStatus(vmSnapshot({ name: 'db', state, ipv6: ll }), now);
      expect(field(text, 'ipv6'), `a ${state} VM's ipv6`).toBe(`${ll} (reachable while it runs)`);
    }
    // Running (or on its way up or down), the address answers: no mark.
    for (const state of ['running', 'starting', 'stopping'] as const) {
      const text = formatStatus(vmSnapshot({ name: 'db', state, ipv6: ll }), now);
      expect(field(text, 'ipv6'), `a ${state} VM's ipv6`).toBe(ll);
    }
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
