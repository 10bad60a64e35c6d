/**
 * The Agent end to end in-process: real nix on a copy of the seed fixture, the vfkit simulator,
 * a private state root. What a user of the app or CLI would see.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentEvent } from '../../src/api/types.ts';
import { AgentError } from '../../src/api/errors.ts';
import { recentRuns } from '../../src/host/runner.ts';
import { Agent } from '../../src/core/agent.ts';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { copyFixture } from '../helpers/fixtures.ts';
import { waitFor } from '../helpers/wait.ts';

const live: TestAgent[] = [];
async function agent(opts: Parameters<typeof createTestAgent>[0] = {}): Promise<TestAgent> {
  const t = await createTestAgent(opts);
  live.push(t);
  return t;
}
afterEach(async () => {
  // Newest first: a later agent may share an earlier one's state root and flake.
  for (const t of live.splice(0).reverse()) await t.dispose();
});

const nixRunsSince = (i: number) =>
  recentRuns()
    .slice(i)
    .filter((r) => r.argv[0]?.endsWith('/nix'));

describe('Agent', () => {
  it('lists every VM of the flake with its spec, stopped and not stale', async () => {
    const t = await agent();
    const s = t.agent.snapshot();
    expect(s.flakes).toHaveLength(1);
    expect(s.flakes[0]!.error).toBeNull();
    expect(s.vms.map((v) => v.name)).toEqual(['builder-vm', 'minimal-vm']);
    const m = t.vm('minimal-vm');
    expect(m).toMatchObject({ state: 'stopped', stale: false, cpus: 4, memoryMiB: 4096, mac: 'f6:25:e2:48:58:1e' });
    expect(m.ipv6).toBe('fe80::f425:e2ff:fe48:581e%bridge100');
    expect(s.agent.vfkit?.path).toMatch(/vfkit-sim\/vfkit$/);
    expect(s.agent.problems).toEqual([]);
  });

  it('builds on first start, then starts an up-to-date VM without running nix', async () => {
    const t = await agent();
    let mark = recentRuns().length;
    const started = await t.agent.call('start', { vm: 'minimal-vm' });
    expect(started.state).toBe('running');
    expect(started.bootedDrvPath).toBe(started.drvPath);
    expect(nixRunsSince(mark).some((r) => r.argv.includes('build'))).toBe(true);

    await t.agent.call('stop', { vm: 'minimal-vm' });
    expect(t.vm('minimal-vm').state).toBe('stopped');

    mark = recentRuns().length;
    const again = await t.agent.call('start', { vm: 'minimal-vm' });
    expect(again.state).toBe('running');
    expect(nixRunsSince(mark)).toEqual([]);

    // The agent's log has what it decided and every program it ran, with duration and exit.
    const log = fs.readFileSync(path.join(t.root, 'logs', 'agent.log'), 'utf8');
    expect(log).toMatch(/ run \[".*\/nix",.*"build".*\] \d+ ms exit 0\n/);
    expect(log).toContain(`starting "minimal-vm" on ${again.bootedOutPath}`);
    expect(log).toContain('stopping "minimal-vm"');
  });

  it('gives addresses, an ssh command for the configured user and the boot log', async () => {
    const t = await agent();
    await t.agent.call('start', { vm: 'minimal-vm' });
    const s = await t.waitFor((x) => x.vms.some((v) => v.name === 'minimal-vm' && v.ipv4 !== null));
    const vm = s.vms.find((v) => v.name === 'minimal-vm')!;
    expect(vm.ipv4).toMatch(/^192\.168\.64\.\d+$/);
    const ips = await t.agent.call('ips', { vm: 'minimal-vm' });
    expect(ips).toEqual({ ipv4: vm.ipv4, ipv6: vm.ipv6 });
    // Its sshd answers over vsock soon after boot (probed in the background); from then on
    // the command goes that way, with the lease's address only as the fallback.
    await t.waitFor(
      (x) => x.vms.find((v) => v.name === 'minimal-vm')?.sshCommand?.includes('ProxyCommand') === true,
      20_000,
      'the ssh command to go over vsock once sshd answered there',
    );
    const ssh = await t.agent.call('sshCommand', { vm: 'minimal-vm' });
    expect(ssh.route).toBe('vsock');
    expect(ssh.target.ipv4).toBe(vm.ipv4);
    expect(ssh.argv.slice(-3)).toEqual(['-l', 'alice', 'nixvm-minimal-vm']);
    // Host keys are checked, against the VM's own known_hosts under its alias.
    expect(ssh.command).toContain('StrictHostKeyChecking=accept-new');
    expect(ssh.command).toContain(
      `UserKnownHostsFile=${path.join(t.root, 'state', 'vms', 'minimal-vm', 'known_hosts')}`,
    );
    expect(ssh.command).not.toContain('/dev/null');

    // A per-VM ssh user override applies live.
    await t.agent.call('setSettings', { sshUser: { 'minimal-vm': 'root' } });
    expect((await t.agent.call('sshCommand', { vm: 'minimal-vm' })).argv.slice(-3)).toEqual([
      '-l',
      'root',
      'nixvm-minimal-vm',
    ]);

    const logs = await t.agent.call('logs', { vm: 'minimal-vm', kind: 'console', lines: 200 });
    expect(logs.lines.join('\n')).toMatch(/login:/);

    // Our own ssh config file holds a Host alias; ~/.ssh/config is never touched.
    const cfg = await waitForFile(
      path.join(t.root, 'state', 'ssh_config'),
      (c) => c.includes('ProxyCommand') && c.includes('User root'),
      'the ssh config to reach the VM over vsock as the user set last',
    );
    expect(cfg).toContain('Host nixvm-minimal-vm');
  });

  it('marks exactly the edited VM stale, and apply restarts it on the new closure', async () => {
    const t = await agent({ settings: {} });
    await t.agent.call('start', { vm: 'minimal-vm' });
    await t.agent.call('build', { vm: 'builder-vm' });
    const before = t.vm('minimal-vm');

    // A comment-only edit changes nothing.
    const host = t.flake.file('hosts/minimal-vm.nix');
    fs.appendFileSync(host, '\n# just a comment\n');
    await t.agent.call('reevaluate', {});
    expect(t.vm('minimal-vm').stale).toBe(false);

    const text = fs.readFileSync(host, 'utf8');
    fs.writeFileSync(
      host,
      text.replace(
        'networking.hostName = "minimal-vm";',
        'networking.hostName = "minimal-vm";\n  boot.kernelParams = [ "console=hvc0" "edited" ];',
      ),
    );
    await t.waitFor((s) => s.vms.find((v) => v.name === 'minimal-vm')?.stale === true);
    expect(t.vm('builder-vm').stale).toBe(false);
    expect(t.vm('minimal-vm').state).toBe('running');

    const applied = await t.agent.call('apply', { vm: 'minimal-vm' });
    expect(applied.state).toBe('running');
    expect(applied.stale).toBe(false);

    // The closures in use are GC roots (nix-collect-garbage must not delete a running VM's
    // system); the one minimal-vm left behind is not.
    const roots = (out: string) => execFileSync('nix-store', ['--query', '--roots', out], { encoding: 'utf8' });
    const gcroots = path.join(t.root, 'state', 'gcroots');
    expect(roots(applied.bootedOutPath!)).toContain(path.join(gcroots, path.basename(applied.bootedOutPath!)));
    expect(roots(t.vm('builder-vm').builtOutPath!)).toContain(gcroots);
    expect(roots(before.bootedOutPath!)).not.toContain(gcroots);
    expect(applied.bootedDrvPath).not.toBe(before.bootedDrvPath);
    expect(applied.pid).not.toBe(before.pid);
    const args = await t.agent.call('inspect', { vm: 'minimal-vm' });
    expect(args.argv.find((a) => a.startsWith('linux,'))).toContain('edited');
  });

  it('auto-rebuild "restart" rebuilds and restarts a running VM when its config changes', async () => {
    const t = await agent({ settings: { autoRebuild: 'restart' } });
    await t.agent.call('start', { vm: 'minimal-vm' });
    const before = t.vm('minimal-vm');
    editKernelParams(t, 'auto-restart');
    const s = await t.waitFor((x) => {
      const v = x.vms.find((y) => y.name === 'minimal-vm')!;
      return v.state === 'running' && v.bootedDrvPath !== before.bootedDrvPath && !v.stale;
    }, 30_000);
    expect(s.vms.find((v) => v.name === 'minimal-vm')!.bootedDrvPath).toBe(
      s.vms.find((v) => v.name === 'minimal-vm')!.drvPath,
    );
  });

  it('auto-rebuild "build" builds changed VMs but leaves running ones on their closure', async () => {
    const t = await agent({ settings: { autoRebuild: 'build' } });
    await t.agent.call('start', { vm: 'minimal-vm' });
    const before = t.vm('minimal-vm');
    editKernelParams(t, 'auto-build');
    const s = await t.waitFor((x) => {
      const v = x.vms.find((y) => y.name === 'minimal-vm')!;
      return v.builtDrvPath === v.drvPath && v.drvPath !== before.drvPath && v.build.status === 'succeeded';
    }, 30_000);
    const vm = s.vms.find((v) => v.name === 'minimal-vm')!;
    expect(vm.bootedDrvPath).toBe(before.bootedDrvPath);
    expect(vm.pid).toBe(before.pid);
    expect(vm.stale).toBe(true);
  });

  it('keeps running VMs when the flake stops evaluating, and shows the error', async () => {
    const t = await agent();
    await t.agent.call('start', { vm: 'minimal-vm' });
    fs.writeFileSync(t.flake.file('flake.nix'), '{ outputs = { self }: { nixosConfigurations = ');
    const s = await t.waitFor((x) => x.flakes[0]!.error !== null);
    expect(s.flakes[0]!.error).toMatch(/syntax|unexpected|parse/i);
    const vm = s.vms.find((v) => v.name === 'minimal-vm')!;
    expect(vm.state).toBe('running');
    expect(vm.spec).not.toBeNull();
  });

  it('answers bad input with one sentence and keeps going', async () => {
    const t = await agent();
    const err = await t.agent.call('start', { vm: 'nope' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).code).toBe('no-such-vm');
    expect((err as AgentError).message).toMatch(/no VM named "nope".*minimal-vm/);
    const bad = await t.agent.call('setSettings', { stopTimeoutSec: -3 } as never).catch((e: unknown) => e);
    expect((bad as AgentError).code).toBe('bad-request');
    expect(t.agent.snapshot().settings.stopTimeoutSec).toBe(30);
    const noSsh = await t.agent.call('sshCommand', { vm: 'minimal-vm' }).catch((e: unknown) => e);
    expect((noSsh as AgentError).message).toMatch(/"minimal-vm" is not running; start it/);
  });

  it('refuses a second agent on the same state dir, naming the holder', async () => {
    const t = await agent();
    const err = await Agent.create({ env: t.env }).catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(new RegExp(`already running \\(pid ${process.pid}`));
  });

  it('reports missing nix and vfkit as problems and stays up', async () => {
    const t = await agent({ settings: { nixPath: '/nonexistent/nix', vfkitPath: '/nonexistent/vfkit' } });
    const s = t.agent.snapshot();
    expect(s.agent.problems).toContain(
      'The nix path in the settings, /nonexistent/nix, is not an executable file; fix or clear it.',
    );
    expect(s.agent.problems).toContain(
      'The vfkit path in the settings, /nonexistent/vfkit, is not an executable file; fix or clear it.',
    );
    expect(s.flakes[0]!.error).toMatch(/nix path/);
    // Fixing the setting live brings nix back, and the flake is evaluated again.
    await t.agent.call('setSettings', { nixPath: null });
    const fixed = await t.waitFor((x) => x.flakes[0]!.error === null && x.vms.length === 2);
    expect(fixed.agent.nix).toMatch(/nix$/);
    expect(fixed.agent.problems.join('\n')).not.toMatch(/nix path/);

    // Losing nix again keeps the VMs listed, with the flake's error.
    await t.agent.call('setSettings', { nixPath: '/nonexistent/nix' });
    const lost = await t.waitFor((x) => x.flakes[0]?.error != null);
    expect(lost.vms.map((v) => v.name)).toEqual(['builder-vm', 'minimal-vm']);
  });

  it('moves a corrupt settings file aside, loads defaults and keeps everything else', async () => {
    const first = await agent();
    await first.agent.call('build', { vm: 'minimal-vm' });
    await first.close();
    const file = path.join(first.root, 'settings.json');
    fs.writeFileSync(file, '{ "flakes": [ "unterminated');
    const t = await agent({ root: first.root, flake: first.flake, agent: { flakes: [first.flake.dir] } });
    const s = t.agent.snapshot();
    expect(s.agent.problems.join('\n')).toMatch(/settings\.json\.corrupt-/);
    expect(fs.readdirSync(first.root).some((f) => f.startsWith('settings.json.corrupt-'))).toBe(true);
    expect(s.settings.autoRebuild).toBe('off');
    // The build record survived: the VM is known to be built and not stale.
    expect(t.vm('minimal-vm').builtDrvPath).toBe(t.vm('minimal-vm').drvPath);
  });

  it('warns when two flakes define a VM of the same name, and runs the first', async () => {
    const other = await copyFixture('seed');
    try {
      const t = await agent({ agent: { flakes: [other.dir] } });
      const s = t.agent.snapshot();
      expect(s.flakes).toHaveLength(2);
      expect(s.vms.map((v) => v.name)).toEqual(['builder-vm', 'minimal-vm']);
      expect(s.flakes[1]!.warnings.join('\n')).toContain(
        `"minimal-vm" is also defined by ${t.flake.dir}, which nixvm uses`,
      );
    } finally {
      other.remove();
    }
  });

  it('adopts VMs a previous agent left running and still sees them end', async () => {
    const t = await agent();
    await t.agent.call('start', { vm: 'minimal-vm' });
    const pid = t.vm('minimal-vm').pid;
    await t.close();

    const t2 = await agent({ root: t.root, flake: t.flake });
    const vm = t2.vm('minimal-vm');
    expect(vm.state).toBe('running');
    expect(vm.pid).toBe(pid);
    await t2.agent.call('stop', { vm: 'minimal-vm' });
    expect(t2.vm('minimal-vm').state).toBe('stopped');
  });

  it('autostarts marked VMs', async () => {
    const t = await agent({ settings: { autostart: { 'minimal-vm': true } } });
    const s = await t.waitFor((x) => x.vms.find((v) => v.name === 'minimal-vm')?.state === 'running');
    expect(s.vms.find((v) => v.name === 'builder-vm')?.state).toBe('stopped');
  });

  it('reports a crash with its exit code and notifies', async () => {
    const t = await agent({ vmEnv: { NIXVM_SIM_CRASH_AFTER_MS: '1500', NIXVM_SIM_CRASH_CODE: '3' } });
    await t.agent.call('start', { vm: 'minimal-vm' });
    const s = await t.waitFor((x) => x.vms.find((v) => v.name === 'minimal-vm')?.state === 'crashed');
    const vm = s.vms.find((v) => v.name === 'minimal-vm')!;
    expect(vm.exit?.code).toBe(3);
    expect(vm.exit?.lastLines.length).toBeGreaterThan(0);
    const notices = () => t.events.filter((e): e is Extract<AgentEvent, { type: 'notice' }> => e.type === 'notice');
    const crashed = await waitFor(() => notices().find((n) => n.notice.title === '"minimal-vm" crashed'), {
      what: 'the "minimal-vm crashed" notice',
    });
    expect(crashed.notice.log).toBe('console');
  });

  it('stops showing a failed build once the flake is fixed', async () => {
    const t = await agent({ fixture: 'build', salt: true });
    t.flake.write('break-app', '1');
    await t.agent.call('reevaluate', {});
    const err = await t.agent.call('build', { vm: 'app' }).catch((e: unknown) => e);
    expect((err as AgentError).code).toBe('failed');
    expect(t.vm('app').build.status).toBe('failed');
    expect(t.vm('app').build.error).toMatch(/app/);

    fs.rmSync(t.flake.file('break-app'));
    const s = await t.waitFor((x) => x.vms.find((v) => v.name === 'app')?.build.status === 'idle');
    expect(s.vms.find((v) => v.name === 'app')!.build.error).toBeNull();
  });

  it('pushes at most about ten snapshots a second during a build', async () => {
    const t = await agent({ fixture: 'build', salt: true });
    const names = ['app'];
    const times: number[] = [];
    const off = t.agent.subscribe((e) => {
      if (e.type === 'snapshot') times.push(Date.now());
    });
    await Promise.allSettled(names.map((vm) => t.agent.call('build', { vm })));
    off();
    expect(times.length).toBeGreaterThan(1);
    // Snapshots are ≥ 100 ms apart when sent; each is seen here after it was computed, which takes
    // longer on a busy machine, so count them over the whole build instead of gap by gap.
    const span = times.at(-1)! - times[0]!;
    expect(times.length, `${times.length} snapshots in ${span} ms`).toBeLessThanOrEqual(Math.floor(span / 100) + 2);
  });
});

function editKernelParams(t: TestAgent, marker: string): void {
  const host = t.flake.file('hosts/minimal-vm.nix');
  const text = fs.readFileSync(host, 'utf8');
  fs.writeFileSync(
    host,
    text.replace('services.getty', `boot.kernelParams = [ "console=hvc0" "${marker}" ];\n  services.getty`),
  );
}

function waitForFile(file: string, ok: (content: string) => boolean, what: string): Promise<string> {
  let last = '';
  return waitFor(
    () => {
      last = fs.readFileSync(file, 'utf8');
      return ok(last) ? last : '';
    },
    { what, detail: () => `${file} holds: ${last}` },
  );
}
