/**
 * The builders' pure parts: nix's machine lines and `builders` value, what builds where, what a
 * Mac can run, a VM as the builder, and how nix is told (the admin path by its argv and the exact
 * file it would write, never by running it).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { VmSpec } from '../../src/api/types.ts';
import { Builders } from '../../src/core/builders/builders.ts';
import { builderMachine, builderRefusal, builderSystems } from '../../src/core/builders/builder-vm.ts';
import { buildabilityOf, cannotRun } from '../../src/core/builders/capability.ts';
import { machineEndpoint, parseBuilders, parseMachineLine, renderMachine } from '../../src/core/builders/machines.ts';
import {
  adminArgv,
  confWithEntry,
  confWithoutEntry,
  isTrusted,
  MARK,
  registrationPlan,
  unregistrationPlan,
  type NixInstallFacts,
} from '../../src/core/builders/registration.ts';
import { defaultSettings } from '../../src/api/settings-schema.ts';
import { translateBuildError } from '../../src/core/nix/errors.ts';
import type { RunResult } from '../../src/host/runner.ts';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID/Aj9VMVWzk1AVBDU0Yg6PXA6ciLFecGUFcfrW72IKQ';

function spec(over: Partial<VmSpec> = {}): VmSpec {
  return {
    name: 'builder-vm',
    flake: '/f',
    drvPath: '/nix/store/x.drv',
    system: 'aarch64-linux',
    kernelParams: [],
    cpus: 8,
    memoryMiB: 3072,
    macAddress: null,
    rosetta: true,
    shares: [],
    graphics: false,
    resolution: null,
    mountHostNixStore: false,
    ssh: { enabled: true, port: 22, user: 'builder', hostKey: `${KEY} root@builder` },
    storeImage: true,
    writableStore: { sizeMiB: 20480, device: null },
    nix: {
      enabled: null,
      trustedUsers: ['builder'],
      systemFeatures: ['nixos-test', 'benchmark', 'big-parallel', 'kvm'],
      extraPlatforms: ['x86_64-linux'],
    },
    ...over,
  };
}

/**
 * A Builders over a recorded nix: `config` is what `nix config show --json` answers (a function,
 * to change between refreshes), the daemon answers `store` to `store info`, `id -Gn` says staff,
 * and `other` answers anything else (osascript…). Every argv run is in `calls`.
 */
function fakeBuilders(o: {
  config: () => Record<string, { value: unknown }>;
  store?: { url: string; trusted: number };
  other?: (argv: string[]) => { exitCode: number; stderr: string } | null;
  opts: Partial<ConstructorParameters<typeof Builders>[0]> & { stateDir: string };
}): { b: Builders; calls: string[][] } {
  const calls: string[][] = [];
  const run = async (argv: string[]): Promise<RunResult> => {
    calls.push(argv);
    const out = (stdout: string, exitCode = 0, stderr = '') => ({
      argv,
      exitCode,
      stdout,
      stderr,
      signal: null,
      durationMs: 1,
    });
    if (argv.includes('show') || argv.includes('show-config')) return out(JSON.stringify(o.config()));
    if (argv.includes('info')) return out(JSON.stringify(o.store ?? { url: 'daemon', trusted: 0 }));
    if (argv[0] === 'id') return out('staff\n');
    const r = o.other?.(argv);
    return r ? out('', r.exitCode, r.stderr) : out('', 1);
  };
  const settings = defaultSettings();
  const b = new Builders({
    run: run as never,
    nix: () => '/nix/bin/nix',
    user: 'me',
    uid: 501,
    host: { platform: 'darwin', arch: 'arm64' },
    settings: () => settings,
    log: () => {},
    changed: () => {},
    vm: () => null,
    start: async () => {},
    setBuilderVm: async () => {},
    addFlake: async () => ({ flake: null, error: null }),
    flakeOf: () => null,
    probeTimeoutMs: 2000,
    ...o.opts,
  });
  return { b, calls };
}

describe('machine lines', () => {
  it('reads every field, `-` as the default, comments and `;`-separated entries, and @files', () => {
    const files: Record<string, string> = {
      '/etc/nix/machines':
        '# a comment, then a machine\nssh-ng://b@h2 x86_64-linux,aarch64-linux /k 4 2 kvm,big-parallel - AAAA\n',
    };
    const r = parseBuilders('ssh://a@h1 aarch64-linux - 1 ; @/etc/nix/machines ; @/missing', (f) => files[f] ?? null);
    expect(r.machines.map((m) => [m.uri, m.systems, m.sshKey, m.maxJobs, m.speedFactor, m.supportedFeatures])).toEqual([
      ['ssh://a@h1', ['aarch64-linux'], null, 1, 1, []],
      ['ssh-ng://b@h2', ['x86_64-linux', 'aarch64-linux'], '/k', 4, 2, ['kvm', 'big-parallel']],
    ]);
    expect(r.machines[1]!.source).toBe('/etc/nix/machines');
    expect(r.problems).toEqual([]);
    // Entries split on `;` before comments go, in nix as here: a `;` in a comment starts a machine.
    expect(parseBuilders('# kept by nixvm; empty\n', () => null).machines.map((m) => m.uri)).toEqual(['empty']);
    expect(r.files).toEqual(['/etc/nix/machines', '/missing']);
    expect(parseMachineLine('h x86_64-linux - many', 'builders')).toBe(
      'builders: max jobs must be a whole number, not "many".',
    );
  });

  it('writes a line nix reads back, and refuses values the format cannot hold', () => {
    const m = {
      uri: 'ssh-ng://root@192.168.64.5?ssh-key=/a%20b/key',
      systems: ['aarch64-linux', 'x86_64-linux'],
      sshKey: null,
      maxJobs: 8,
      speedFactor: 1,
      supportedFeatures: ['kvm'],
      mandatoryFeatures: [],
      publicHostKey: 'QUJD',
    };
    const line = renderMachine(m);
    expect(line).toBe('ssh-ng://root@192.168.64.5?ssh-key=/a%20b/key aarch64-linux,x86_64-linux - 8 1 kvm - QUJD');
    expect(parseMachineLine(line, 'x')).toEqual({ ...m, source: 'x' });
    expect(() => renderMachine({ ...m, sshKey: '/Application Support/key' })).toThrow(/cannot be written/);
    expect(() => renderMachine({ ...m, supportedFeatures: ['a;b'] })).toThrow(/cannot be written/);
  });

  it('knows where an ssh machine answers', () => {
    expect(machineEndpoint('ssh-ng://builder@linux-builder')).toEqual({
      user: 'builder',
      host: 'linux-builder',
      port: 22,
    });
    expect(machineEndpoint('ssh://root@10.0.0.2:2222?x=1')).toEqual({ user: 'root', host: '10.0.0.2', port: 2222 });
    expect(machineEndpoint('h')).toEqual({ user: null, host: 'h', port: 22 });
    expect(machineEndpoint('[fe80::1]:22')).toEqual({ user: null, host: 'fe80::1', port: 22 });
    expect(machineEndpoint('unix:///run/x')).toBeNull();
  });
});

describe('what builds where', () => {
  const m = parseMachineLine('ssh-ng://b@h aarch64-linux', 'builders') as ReturnType<
    typeof parseBuilders
  >['machines'][0];
  it('here, on a builder (answering or not), or nowhere with the fix', () => {
    const cap = { localSystems: ['aarch64-darwin', 'x86_64-darwin'], machines: [m], answers: new Map() };
    expect(buildabilityOf('aarch64-darwin', cap)).toEqual({ how: 'local' });
    expect(buildabilityOf('aarch64-linux', cap)).toEqual({
      how: 'builder',
      machines: ['ssh-ng://b@h'],
      answering: null,
    });
    expect(buildabilityOf('aarch64-linux', { ...cap, answers: new Map([['ssh-ng://b@h', false]]) })).toMatchObject({
      answering: false,
    });
    const none = buildabilityOf('x86_64-linux', cap);
    expect(none).toEqual({
      how: 'none',
      reason:
        'nothing here builds x86_64-linux (this machine builds aarch64-darwin, x86_64-darwin, and none of its 1 builders does)',
      fix: "run `nixvm builder setup` (nixpkgs' prebuilt Linux builder, no Linux machine needed), or make a VM that builds x86_64-linux (nixpkgs' nix-builder-vm profile) the builder with `nixvm builder use <vm>`; with nix-darwin, `nix.linux-builder.enable = true;`; or add a x86_64-linux machine to nix's `builders`",
    });
  });

  it('an x86_64-linux VM on Apple silicon is refused with why; the simulator runs anything', () => {
    const mac = { platform: 'darwin' as const, arch: 'arm64' };
    expect(cannotRun('x86_64-linux', mac)).toContain(
      'Virtualization.framework on Apple silicon boots only aarch64 guests',
    );
    expect(cannotRun('x86_64-linux', mac)).toContain('virtualisation.rosetta.enable = true');
    expect(cannotRun('aarch64-linux', mac)).toBeNull();
    expect(cannotRun('aarch64-linux', { platform: 'darwin', arch: 'x64' })).toContain('boots only x86_64 guests');
    expect(cannotRun('x86_64-linux', { platform: 'linux', arch: 'x64' })).toBeNull();
  });
});

describe('a VM as the builder', () => {
  it("qualifies with sshd, nix, a writable store of its own, port 22 and nixvm's key for root", () => {
    expect(builderRefusal(spec(), true)).toBeNull();
    expect(builderRefusal(spec({ ssh: { enabled: false, port: 22, user: 'root' } }), true)).toContain('no sshd');
    expect(builderRefusal(spec({ nix: { ...spec().nix!, enabled: false } }), true)).toContain('nix.enable = false');
    expect(builderRefusal(spec({ writableStore: null, storeImage: false, mountHostNixStore: true }), true)).toContain(
      "the host's, shared read-only",
    );
    expect(builderRefusal(spec({ ssh: { ...spec().ssh, port: 2222 } }), true)).toContain('port 2222');
    expect(builderRefusal(spec(), false)).toContain("nixvm's key does not reach root");
    expect(builderRefusal(spec({ system: 'aarch64-darwin' }), true)).toContain('not Linux');
  });

  it('its machine line: root on its IPv4, the key in the URI (spaces encoded), its systems, cores and features', () => {
    const m = builderMachine(spec(), {
      ipv4: '192.168.64.7',
      identityFile: '/Users/me/Library/Application Support/NixVM/state/vms/builder-vm/keys/nixvm_ed25519',
      hostKey: `${KEY} comment`,
    });
    expect(renderMachine(m)).toBe(
      `ssh-ng://root@192.168.64.7?ssh-key=/Users/me/Library/Application%20Support/NixVM/state/vms/builder-vm/keys/nixvm_ed25519 aarch64-linux,x86_64-linux - 8 1 nixos-test,benchmark,big-parallel,kvm - ${Buffer.from(KEY).toString('base64')}`,
    );
    expect(builderSystems(spec({ nix: { ...spec().nix!, extraPlatforms: [] } }))).toEqual(['aarch64-linux']);
    expect(() => builderMachine(spec(), { ipv4: '192.168.64.7; id', identityFile: '/k', hostKey: KEY })).toThrow(
      /not an IPv4/,
    );
  });
});

const facts = (over: Partial<NixInstallFacts> = {}): NixInstallFacts => ({
  user: 'me',
  uid: 501,
  groups: ['staff', 'admin'],
  trustedUsers: ['root'],
  daemon: true,
  nixDarwin: false,
  builders: '@/etc/nix/machines',
  systemConf: 'build-users-group = nixbld\nbuilders = @/etc/nix/machines # the default\ntrusted-users = root\n',
  ...over,
});
const FILE = '/Users/me/Library/Application Support/NixVM/state/builders/machines';

describe('telling nix', () => {
  it('trusted: by name, *, @group, root, or no daemon', () => {
    expect(isTrusted(facts())).toBe(false);
    expect(isTrusted(facts({ trustedUsers: ['root', 'me'] }))).toBe(true);
    expect(isTrusted(facts({ trustedUsers: ['*'] }))).toBe(true);
    expect(isTrusted(facts({ trustedUsers: ['@admin'] }))).toBe(true);
    expect(isTrusted(facts({ uid: 0 }))).toBe(true);
    expect(isTrusted(facts({ daemon: false }))).toBe(true);
  });

  it('a trusted user: no system change, a nix.conf line offered', () => {
    const p = registrationPlan(facts({ trustedUsers: ['me'] }), FILE, '/s/staged');
    expect(p).toMatchObject({ mode: 'agent', system: null, snippet: null, inPlace: false });
    // nixvm's file alone: it carries the other machines (Nix 2.18 to 2.2x read one @file only).
    expect(p.userConfLine).toBe(`builders = @${FILE}`);
  });

  it('nix-darwin: never its files, a snippet instead, and in place once nix reads the file', () => {
    const p = registrationPlan(facts({ nixDarwin: true }), FILE, '/s/staged');
    expect(p).toMatchObject({ mode: 'nix-darwin', system: null, inPlace: false });
    expect(p.snippet).toBe(`nix.settings.builders = "@${FILE}";`);
    const done = registrationPlan(facts({ nixDarwin: true, builders: `@${FILE}` }), FILE, '/s');
    expect(done).toMatchObject({ inPlace: true, snippet: null });
  });

  it('otherwise /etc/nix/nix.conf, on marked lines, with a backup, the daemon restarted, after one admin prompt', () => {
    const p = registrationPlan(facts(), FILE, '/Users/me/s/nix.conf.staged');
    expect(p.mode).toBe('system');
    expect(p.system!.contents).toBe(
      `build-users-group = nixbld\n# nixvm-was: builders = @/etc/nix/machines # the default\n${MARK}\nbuilders = @${FILE}\ntrusted-users = root\n`,
    );
    expect(p.system!.argv[0]).toBe('osascript');
    expect(p.system!.argv[2]).toBe(
      'do shell script "/bin/cp -p /etc/nix/nix.conf /etc/nix/nix.conf.before-nixvm 2>/dev/null || true && /usr/bin/install -m 0644 -o root /Users/me/s/nix.conf.staged /etc/nix/nix.conf && launchctl kickstart -k system/org.nixos.nix-daemon 2>/dev/null || launchctl kickstart -k system/systems.determinate.nix-daemon" with prompt "NixVM wants to make your Linux builder VM a builder for nix." with administrator privileges',
    );
    // Undo gives back the file as it was, byte for byte.
    expect(confWithoutEntry(p.system!.contents)).toBe(facts().systemConf);
    const u = unregistrationPlan(facts({ systemConf: p.system!.contents, builders: `@${FILE}` }), FILE, '/s');
    expect(u.system!.contents).toBe(facts().systemConf);
    // Without a builders line, nix's default machines file is kept.
    expect(confWithEntry('sandbox = true\n', FILE)).toBe(`sandbox = true\n${MARK}\nbuilders = @${FILE}\n`);
    // Twice is once.
    expect(confWithEntry(p.system!.contents, FILE)).toBe(p.system!.contents);
  });

  it('quotes what it hands to AppleScript and the shell', () => {
    const argv = adminArgv('install "/a b/$(id)" /etc/x', 'say "hi"');
    expect(argv[2]).toBe(
      'do shell script "install \\"/a b/$(id)\\" /etc/x" with prompt "say \\"hi\\"" with administrator privileges',
    );
    const p = registrationPlan(facts(), FILE, "/Users/me/it's $(id)/staged");
    // The shell gets "…it's \$(id)…": the path as one word, nothing run.
    expect(p.system!.argv[2]).toContain('-o root \\"/Users/me/it\'s \\\\$(id)/staged\\" /etc/nix/nix.conf');
  });
});

describe('Builders', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('probes every ssh builder nix knows: a closed port does not answer, a listening sshd-like one does', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-builders-'));
    dirs.push(dir);
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const open = net.createServer((c) => c.end('SSH-2.0-OpenSSH_9.2\r\n'));
    await new Promise<void>((r) => open.listen(0, '127.0.0.1', () => r()));
    const openPort = (open.address() as net.AddressInfo).port;
    const config = {
      system: { value: 'aarch64-darwin' },
      'extra-platforms': { value: ['x86_64-darwin'] },
      'trusted-users': { value: ['root'] },
      builders: {
        value: `ssh-ng://b@127.0.0.1:${closedPort} aarch64-linux ; ssh://b@127.0.0.1:${openPort} x86_64-linux - 2`,
      },
    };
    const { b } = fakeBuilders({
      config: () => config,
      opts: { stateDir: dir, systemConf: path.join(dir, 'no-nix.conf') },
    });
    await b.refresh();
    open.close();
    const info = b.info();
    expect(info.localSystems).toEqual(['aarch64-darwin', 'x86_64-darwin']);
    expect(info.machines.map((m) => [m.uri, m.answers])).toEqual([
      [`ssh-ng://b@127.0.0.1:${closedPort}`, false],
      [`ssh://b@127.0.0.1:${openPort}`, true],
    ]);
    expect(info.mode).toBe('system');
    expect(b.platform(spec({ name: 'linux' }))).toMatchObject({
      buildsOn: 'builder',
      problem: `its aarch64-linux builder does not answer (ssh-ng://b@127.0.0.1:${closedPort}); start it before you build.`,
    });
    expect(b.platform(spec({ name: 'intel', system: 'x86_64-linux' }))).toMatchObject({
      buildsOn: 'builder',
      problem: null,
    });
    expect(b.platform(spec({ name: 'intel', system: 'x86_64-linux' }))!.cannotRun).toContain('Apple silicon');
    // Not trusted and no builder VM: nixvm's builds add nothing.
    expect(b.buildArgs()).toEqual([]);
    expect(b.refusal('nope')).toBe(
      'VM "nope" has no evaluated configuration, so nixvm cannot tell whether it can build.',
    );
  });

  it('an untrusted user: `use` shows the plan and changes nothing without consent; with it, one admin prompt, by argv', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm builders '));
    dirs.push(dir);
    const conf = path.join(dir, 'nix.conf');
    fs.writeFileSync(conf, 'trusted-users = root\n');
    let adminExit = 0;
    let adminStderr = '';
    let settings = defaultSettings();
    const started: string[] = [];
    const { b, calls } = fakeBuilders({
      config: () => ({ system: { value: 'aarch64-darwin' }, 'trusted-users': { value: ['root'] } }),
      other: (argv) => (argv[0] === 'osascript' ? { exitCode: adminExit, stderr: adminStderr } : null),
      opts: {
        stateDir: path.join(dir, 'state'),
        settings: () => settings,
        vm: (name) => (name === 'builder-vm' ? { spec: spec(), rootKey: true, ipv4: null, identityFile: null } : null),
        start: async (name) => {
          started.push(name);
        },
        setBuilderVm: async (name) => {
          settings = { ...settings, builderVm: name };
        },
        systemConf: conf,
      },
    });
    const asked = await b.use('builder-vm', false);
    expect(asked.done).toBe(false);
    expect(asked.plan.mode).toBe('system');
    expect(asked.plan.changes[0]).toContain(
      `/etc/nix/nix.conf: \`builders = @${b.machinesFile}\` (nixvm's machines file`,
    );
    expect(asked.plan.system!.contents).toBe(`trusted-users = root\n${MARK}\nbuilders = @${b.machinesFile}\n`);
    expect(calls.some((c) => c[0] === 'osascript')).toBe(false);
    expect(settings.builderVm).toBeNull();
    expect(started).toEqual([]);

    // The prompt cancelled: nothing changed, said in one sentence.
    adminExit = 1;
    adminStderr = '0:74: execution error: User canceled. (-128)';
    await expect(b.use('builder-vm', true)).rejects.toThrow(
      'Nothing was changed: the administrator prompt to make nix use the builder VM was cancelled.',
    );
    expect(settings.builderVm).toBeNull();

    adminExit = 0;
    const done = await b.use('builder-vm', true);
    expect(done.done).toBe(true);
    const admin = calls.filter((c) => c[0] === 'osascript').at(-1)!;
    expect(admin).toEqual(done.plan.system!.argv);
    // The staged file is exactly what the plan showed; the admin script installs that file.
    expect(fs.readFileSync(done.plan.system!.staged, 'utf8')).toBe(done.plan.system!.contents);
    expect(admin[2]).toContain(`install -m 0644 -o root '${done.plan.system!.staged}' /etc/nix/nix.conf`);
    expect(settings.builderVm).toBe('builder-vm');
    expect(started).toEqual(['builder-vm']);
    // A VM that cannot build is refused before anything is asked.
    await expect(b.use('web', true)).rejects.toThrow('VM "web" has no evaluated configuration');
  });
});

describe("nixvm's machines file", () => {
  it("carries the machines nix knew, read again from their file after nix reads nixvm's alone", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-machines-'));
    try {
      const etc = path.join(dir, 'machines');
      fs.writeFileSync(etc, 'ssh-ng://b@10.0.0.2 aarch64-linux - 4 1 kvm\n');
      let builders = `@${etc}`;
      const { b } = fakeBuilders({
        config: () => ({ system: { value: 'aarch64-darwin' }, builders: { value: builders } }),
        store: { url: 'local', trusted: 1 },
        opts: { stateDir: path.join(dir, 'state'), probeTimeoutMs: 200 },
      });
      await b.refresh();
      const text = () => fs.readFileSync(b.machinesFile, 'utf8');
      expect(text()).toContain(`# nixvm: carries the machines of ${JSON.stringify([etc])}`);
      expect(text()).toContain('ssh-ng://b@10.0.0.2 aarch64-linux - 4 1 kvm - -');
      // nix now reads nixvm's file alone; an edit of the old file still counts.
      builders = `@${b.machinesFile}`;
      fs.writeFileSync(etc, 'ssh-ng://b@10.0.0.3 aarch64-linux - 2 1 kvm\n');
      await b.refresh();
      expect(b.info().machines.map((m) => m.uri)).toEqual(['ssh-ng://b@10.0.0.3']);
      expect(text()).toContain('ssh-ng://b@10.0.0.3 aarch64-linux - 2 1 kvm - -');
      expect(text()).not.toContain('10.0.0.2');
      // Nothing in it splits where nix splits entries.
      expect(
        text()
          .split('\n')
          .filter((l) => l.startsWith('#') && l.includes(';')),
      ).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a build on the builder that fails', () => {
  const ctx = {
    flakeDir: '/f',
    sourceRoot: '/f',
    vm: 'minimal-vm',
    remote: 'ssh-ng://root@192.168.64.5?ssh-key=/k',
    remoteWords: 'the builder VM "builder-vm"',
    remoteFix: 'start it again (`nixvm start builder-vm`)',
  };
  it('because the builder broke (Nix 2.26 and 2.34, recorded): the builder is named, not the derivation blamed', () => {
    const text = [
      "error: build of '/nix/store/c8qcypz1s11m2dlsaj24zhkjdmq3wmcq-system-path-minimal-vm.drv' on 'ssh-ng://root@192.168.64.5?ssh-key=/k' failed: error: the group 'nixbld' specified in 'build-users-group' does not exist",
      "error: builder for '/nix/store/c8qcypz1s11m2dlsaj24zhkjdmq3wmcq-system-path-minimal-vm.drv' failed with exit code 1",
    ].join('\n');
    expect(translateBuildError(text, ctx)?.message).toBe(
      "Building VM \"minimal-vm\" failed on the builder VM \"builder-vm\", not in its own derivation: the group 'nixbld' specified in 'build-users-group' does not exist; fix the builder's nix, then build again.",
    );
  });
  it('because the connection went (Nix 2.8, recorded): the builder VM named, with what to do', () => {
    const text = [
      'error: unexpected end-of-file',
      "error: builder for '/nix/store/i46w2ldxpffgr09zj4ihlswa3jc1wv4d-nixos-system-minimal-vm-25.05.drv' failed with exit code 1",
    ].join('\n');
    const t = translateBuildError(text, ctx)!;
    expect(t.kind).toBe('builder-lost');
    expect(t.message).toBe(
      'Building VM "minimal-vm" stopped: the connection to the builder VM "builder-vm" was lost during the build (unexpected end-of-file); start it again (`nixvm start builder-vm`), then build again.',
    );
    // Nix 2.26 and 2.34 (recorded) say it their way.
    const newer = [
      'error: Nix daemon disconnected unexpectedly (maybe it crashed?)',
      "error: Cannot build '/nix/store/rx3cn5h84i6m2k5v7j3689z805wjxxks-nixos-system-minimal-vm-25.05.drv'.",
    ].join('\n');
    expect(translateBuildError(newer, ctx)?.message).toContain(
      'the connection to the builder VM "builder-vm" was lost during the build (its nix daemon\'s connection closed)',
    );
    // Without a remote build, the same words are the derivation's own failure.
    expect(translateBuildError(text, { ...ctx, remote: null })?.kind).toBe('build-failed');
  });
  it('because the upload was cut and nix went on (Nix 2.8, seen in a soak): the connection, not the builder’s nix', () => {
    const text = [
      'error (ignored): error: writing to file: Broken pipe',
      "error: build of '/nix/store/r9y70d9hkv587lk9vz7l9anmk4gl3sai-nixos-system-remote-vm.drv' on 'ssh-ng://root@192.168.64.5?ssh-key=/k' failed: error: some dependencies of '/nix/store/r9y70d9hkv587lk9vz7l9anmk4gl3sai-nixos-system-remote-vm.drv' are missing",
      "error: builder for '/nix/store/r9y70d9hkv587lk9vz7l9anmk4gl3sai-nixos-system-remote-vm.drv' failed with exit code 1",
    ].join('\n');
    const t = translateBuildError(text, ctx)!;
    expect(t.kind).toBe('builder-lost');
    expect(t.message).toBe(
      'Building VM "minimal-vm" stopped: the connection to the builder VM "builder-vm" was lost during the build (Broken pipe); start it again (`nixvm start builder-vm`), then build again.',
    );
    // Missing dependencies with nothing cut before: the builder's own failure, as nix says it.
    expect(translateBuildError(text.split('\n').slice(1).join('\n'), ctx)?.message).toContain(
      'failed on the builder VM "builder-vm", not in its own derivation: some dependencies of',
    );
  });
});
