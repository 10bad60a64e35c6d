/**
 * A VM as this machine's remote builder, with nix's own distributed builds for real: the seed's
 * builder-vm (nixpkgs' nix-builder-vm profile) on the simulator, leased a loopback address whose
 * port 22 is a real OpenSSH `sshd -i` logging root in with nixvm's key, and whose nix is a real
 * nix on a store of its own (a chroot store beside its writable store image). minimal-vm is
 * built for a system only the builder's nix builds (its nix.settings.extra-platforms), so its
 * build must go remote. The state folder has a space in it, as "Application Support" does.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentSnapshot } from '../../src/api/types.ts';
import { formatVmTable } from '../../src/cli/format.ts';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { caBundle, FOREIGN, loopbackIp, seedWithForeignVm, sshdReady } from '../helpers/builder-fixture.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';

let flake: FlakeCopy;
let root: string;
let t: TestAgent;
let ip: string;

const builders = (s: AgentSnapshot) => s.agent.builders!;
// The state folder has a space: nixvm's machines file goes to ~/.config/nixvm (see machinesFilePath).
let home: string;
const machinesFile = () => path.join(home, '.config', 'nixvm', 'machines');

beforeAll(async () => {
  sshdReady();
  flake = await seedWithForeignVm();
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm builder ')));
  home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-builder-home-')));
  const certs = caBundle(root);
  ip = loopbackIp();
  t = await createTestAgent({
    flake,
    root,
    env: { NIX_SSL_CERT_FILE: certs, HOME: home },
    vmEnv: { NIXVM_SIM_IP: ip },
  });
}, 180_000);

afterAll(async () => {
  if (process.env.NIXVM_KEEP_TEST_ROOT) return;
  await t?.dispose();
  fs.rmSync(home, { recursive: true, force: true });
});

describe('builders', () => {
  it('knows before a build that nothing here builds the foreign VM, and says the fix', async () => {
    const vm = t.vm('minimal-vm');
    expect(vm.platform, JSON.stringify(vm.platform)).toMatchObject({ buildsOn: 'none', cannotRun: null });
    expect(vm.platform!.problem).toContain(`nothing here builds ${FOREIGN}`);
    expect(vm.platform!.problem).toContain('nixvm builder use <vm>');
    expect(t.vm('builder-vm').platform?.buildsOn).toBe('local');
    // `nixvm ls` says it on the row, before anyone starts it.
    expect(formatVmTable(t.agent.snapshot(), 200)).toMatch(
      new RegExp(`\nminimal-vm [^\n]*\n  nothing here builds ${FOREIGN}`),
    );
  });

  it('makes builder-vm the builder: starts it, lists it once nix reaches it, and the foreign build runs there', async () => {
    const r = await t.agent.call('builderUse', { vm: 'builder-vm' });
    // Root is trusted by nix: nixvm's own builds pass the builder; nothing in /etc changes.
    expect(r.done).toBe(true);
    expect(r.plan.mode).toBe('agent');
    expect(r.plan.system).toBeNull();
    // The nix.conf line names a path without white space, which every Nix reads as one file.
    expect(r.builders.machinesFile).toBe(machinesFile());
    expect(r.plan.userConfLine).toBe(`builders = @${machinesFile()}`);
    const s = await t.waitFor(
      (x) => builders(x).status === 'ready' || builders(x).status === 'failed',
      120_000,
      'the builder VM to be ready',
    );
    expect(builders(s).status, builders(s).note ?? '').toBe('ready');
    const line = fs
      .readFileSync(machinesFile(), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('ssh-ng://'))!;
    // root on its IPv4 address, the key (percent-encoded: the path has a space) and its pinned host key.
    expect(line).toMatch(new RegExp(`^ssh-ng://root@${ip.replace(/\./g, '\\.')}\\?ssh-key=\\S*nixvm%20builder%20`));
    const pinned = fs
      .readFileSync(flake.file('keys/ssh_host_ed25519_key.pub'), 'utf8')
      .split(' ')
      .slice(0, 2)
      .join(' ');
    expect(line.split(' ')[7]).toBe(Buffer.from(pinned).toString('base64'));
    // Its systems and jobs as its configuration says: cores 8, the NixOS features, the extra platform.
    expect(line.split(' ').slice(1, 6)).toEqual([
      `aarch64-linux,${FOREIGN}`,
      '-',
      '8',
      '1',
      'nixos-test,benchmark,big-parallel,kvm',
    ]);
    const minimal = s.vms.find((v) => v.name === 'minimal-vm')!;
    expect(minimal.platform).toMatchObject({ buildsOn: 'builder', problem: null });

    const built = await t.agent.call('build', { vm: 'minimal-vm' }).catch((err: Error) => {
      const log = path.join(root, 'logs', 'builds', 'minimal-vm', 'build.log');
      throw new Error(
        `${err.message}\n${fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-4000) : '(no build log)'}`,
      );
    });
    expect(built.build.status, built.build.error ?? '').toBe('succeeded');
    const out = built.builtOutPath!;
    // Built there: the builder's own store has it; and copied back here.
    const guestStore = fs
      .readdirSync(path.join(root, 'state', 'vms', 'builder-vm'))
      .find((f) => f.endsWith('.sim-store'));
    expect(guestStore, 'the builder has a store of its own').toBeDefined();
    expect(fs.existsSync(path.join(root, 'state', 'vms', 'builder-vm', guestStore!, out.slice(1)))).toBe(true);
    expect(fs.existsSync(out)).toBe(true);
    expect(execFileSync('nix-store', ['--query', '--deriver', out], { encoding: 'utf8' })).toContain('.drv');
    // The progress named the builder; the log says where it built.
    expect(built.build.progress?.remote ?? '').toContain(`root@${ip}`);
    const log = fs.readFileSync(built.build.logPath!, 'utf8');
    expect(log).toContain('--option');
    expect(log).toMatch(
      new RegExp(
        `building '/nix/store/[^']+-nixos-system-minimal-vm-25\\.05\\.drv' on 'ssh-ng://root@${ip.replace(/\./g, '\\.')}`,
      ),
    );
  });

  it('a builder VM that stops in the middle of a build: the build fails in one sentence, nothing stays listed', async () => {
    const host = flake.file('hosts/minimal-vm.nix');
    fs.writeFileSync(host, fs.readFileSync(host, 'utf8').replace(/\}\s*$/, '  nixvmTest.buildHang = true;\n}\n'));
    await t.agent.call('reevaluate', {});
    const failed = t.agent.call('build', { vm: 'minimal-vm' }).then(
      () => null,
      (err: Error) => err,
    );
    await t.waitFor(
      (x) => (x.vms.find((v) => v.name === 'minimal-vm')!.build.progress?.lastLine ?? '').includes('then hanging'),
      60_000,
      'the build to run on the builder',
    );
    await t.agent.call('stop', { vm: 'builder-vm' });
    const err = await failed;
    expect(err, 'the build failed').toBeInstanceOf(Error);
    const logTail = () =>
      fs.readFileSync(path.join(root, 'logs', 'builds', 'minimal-vm', 'build.log'), 'utf8').slice(-3000);
    expect(err!.message.split('\n'), logTail()).toHaveLength(1);
    // The reason is nix's (Nix 2.8: unexpected end-of-file; 2.26 and 2.34: the daemon disconnected).
    expect(err!.message, logTail()).toMatch(
      /^Building VM "minimal-vm" stopped: the connection to the builder VM "builder-vm" was lost during the build \(.+\); start it again \(`nixvm start builder-vm`\)/,
    );
    const s = await t.waitFor((x) => builders(x).status === 'waiting', 30_000, 'the builder to be unlisted');
    expect(fs.readFileSync(machinesFile(), 'utf8')).not.toContain('ssh-ng://root@');
    expect(s.vms.find((v) => v.name === 'minimal-vm')!.platform?.buildsOn).toBe('none');
  });

  it('`builder off` forgets it', async () => {
    const off = await t.agent.call('builderOff', {});
    expect(off.done).toBe(true);
    expect(off.builders).toMatchObject({ vm: null, status: 'off' });
    expect(t.agent.snapshot().settings.builderVm).toBeNull();
    expect(fs.readFileSync(machinesFile(), 'utf8')).not.toContain('ssh-ng://root@');
  });
});

describe('builders, refused', () => {
  let f2: FlakeCopy;
  let t2: TestAgent;
  let root2: string;
  beforeAll(async () => {
    f2 = await copyFixture('seed-exact');
    // The closure pins a host key the guest's sshd does not have.
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'other', '-f', f2.file('keys/other_ed25519')]);
    const builder = f2.file('hosts/builder-vm.nix');
    fs.writeFileSync(
      builder,
      fs
        .readFileSync(builder, 'utf8')
        .replace(
          '"ssh/ssh_host_ed25519_key.pub".source = ../keys/ssh_host_ed25519_key.pub;',
          '"ssh/ssh_host_ed25519_key.pub".source = ../keys/other_ed25519.pub;',
        ),
    );
    // An Intel VM, on an Apple-silicon Mac.
    const minimal = f2.file('hosts/minimal-vm.nix');
    fs.writeFileSync(
      minimal,
      fs.readFileSync(minimal, 'utf8').replace(/\}\s*$/, '  nixpkgs.hostPlatform.system = "x86_64-linux";\n}\n'),
    );
    root2 = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-builder-refused-')));
    const certs = caBundle(root2);
    const ip2 = loopbackIp();
    t2 = await createTestAgent({
      flake: f2,
      root: root2,
      env: { NIX_SSL_CERT_FILE: certs },
      vmEnv: { NIXVM_SIM_IP: ip2 },
      agent: { hostMachine: { platform: 'darwin', arch: 'arm64' } },
    });
  }, 180_000);
  afterAll(async () => {
    await t2?.dispose();
  });

  it('an x86_64-linux VM on Apple silicon: said on its row, and Start refuses before building anything', async () => {
    const vm = t2.vm('minimal-vm');
    expect(vm.platform?.cannotRun).toContain('Virtualization.framework on Apple silicon boots only aarch64 guests');
    expect(formatVmTable(t2.agent.snapshot(), 300)).toMatch(
      /minimal-vm[^\n]*\n {2}cannot run on this Mac: it is built for x86_64-linux/,
    );
    const err = await t2.agent.call('start', { vm: 'minimal-vm' }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/^VM "minimal-vm" cannot run on this Mac: it is built for x86_64-linux, /);
    expect(t2.vm('minimal-vm')).toMatchObject({ state: 'stopped', builtOutPath: null });
    expect(t2.vm('minimal-vm').build.status).toBe('idle');
  });

  it('a builder whose host key is not the pinned one is never listed, and says why in one sentence', async () => {
    const r = await t2.agent.call('builderUse', { vm: 'builder-vm' });
    expect(r.done).toBe(true);
    const s = await t2.waitFor((x) => x.agent.builders!.status === 'failed', 120_000, 'the builder VM to be refused');
    const note = s.agent.builders!.note!;
    expect(note.split('\n')).toHaveLength(1);
    expect(note).toMatch(/^its sshd shows a different host key than the one its configuration pins /);
    expect(fs.readFileSync(path.join(root2, 'state', 'builders', 'machines'), 'utf8')).not.toContain('ssh-ng://root@');
    // Refusals that need no VM at all: the VM that runs no nix store of its own, an unknown VM.
    await expect(t2.agent.call('builderUse', { vm: 'minimal-vm' })).rejects.toThrow(
      /^VM "minimal-vm" cannot be this machine's builder: /,
    );
    await expect(t2.agent.call('builderUse', { vm: 'nope' })).rejects.toThrow(/"nope"/);
    await t2.agent.call('builderOff', {});
  });
});
