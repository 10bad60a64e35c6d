/**
 * The seed runner's share words as vfkit gets them, over the real Agent (the seed-exact fixture's
 * minimal-vm, real nix, the vfkit simulator): `${SHARED_DIR:-$TMPDIR/xchg}` from the agent's
 * SHARED_DIR and from the VM's "shared folder" setting, read back from the simulated vfkit's own
 * command line and from what its REST API says it parsed; and the run's scratch directory
 * ($TMPDIR), which must not outlive a run that ended while no agent watched it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import type { VmSnapshot } from '../../src/api/types.ts';
import { createTestAgent, SIMULATOR, type TestAgent } from '../helpers/agent.ts';
import { copyFixture } from '../helpers/fixtures.ts';
import { killVfkitsUnder } from '../helpers/reap.ts';
import { settles, waitFor, watchChild } from '../helpers/wait.ts';
import { restCall } from '../vfkit-sim/harness.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));

const VM = 'minimal-vm';
const agents: TestAgent[] = [];

afterEach(async () => {
  for (const t of agents.splice(0)) await t.dispose();
});

async function agent(opts: Parameters<typeof createTestAgent>[0]): Promise<TestAgent> {
  const t = await createTestAgent({ fixture: 'seed-exact', ...opts });
  agents.push(t);
  return t;
}

/** The command line vfkit (pid) was given, as the kernel has it. */
function argvOf(pid: number): string[] {
  const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  // `node …/vfkit-sim/vfkit <vfkit's arguments>`
  return cmdline.slice(cmdline.findIndex((a) => a.endsWith(`${path.sep}vfkit`)) + 1);
}

/** The command line of the VM's running vfkit. */
function vfkitArgv(t: TestAgent): string[] {
  const pid = t.vm(VM).pid;
  expect(pid, `${VM} has a vfkit pid`).not.toBeNull();
  return argvOf(pid!);
}

/** Gone, or a zombie nobody has reaped yet: either way the process has ended. */
function ended(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** The `--device virtio-fs,…` values of that command line, by mount tag. */
function virtioFs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  argv.forEach((a, i) => {
    if (argv[i - 1] !== '--device' || !a.startsWith('virtio-fs,')) return;
    const kv = Object.fromEntries(
      a
        .slice('virtio-fs,'.length)
        .split(',')
        .map((p) => p.split('=') as [string, string]),
    );
    out[kv.mountTag!] = kv.sharedDir!;
  });
  return out;
}

/** The shares vfkit says it parsed (`GET /vm/inspect`), by mount tag. */
async function inspectedShares(argv: string[]): Promise<Record<string, string>> {
  const uri = argv[argv.indexOf('--restful-uri') + 1]!;
  const r = await restCall(uri.replace(/^unix:\/\//, ''), 'GET', '/vm/inspect');
  const devices = (JSON.parse(r.body) as { devices: { kind: string; mountTag?: string; sharedDir?: string }[] })
    .devices;
  return Object.fromEntries(devices.filter((d) => d.kind === 'virtiofs').map((d) => [d.mountTag, d.sharedDir]));
}

async function running(t: TestAgent, what: string, pred: (pid: number) => boolean = () => true): Promise<void> {
  await t.waitFor(
    (s) => s.vms.some((v) => v.name === VM && v.state === 'running' && v.pid !== null && pred(v.pid)),
    undefined,
    what,
  );
}

function consoleOf(t: TestAgent): string {
  return fs.readFileSync(t.vm(VM).consoleLog!, 'utf8');
}

describe('${SHARED_DIR:-$TMPDIR/xchg}', () => {
  it("shares the agent's SHARED_DIR (relative to the flake), and the VM's shared-folder setting over it", async () => {
    const t = await agent({ env: { SHARED_DIR: 'from-env' } });
    const fromEnv = path.join(t.flake.dir, 'from-env');
    fs.mkdirSync(fromEnv);
    await t.agent.call('start', { vm: VM });
    await running(t, `${VM} running`);
    const scratch = path.join(t.vm(VM).stateDir, 'tmp');

    let argv = vfkitArgv(t);
    expect(virtioFs(argv), 'the virtio-fs devices on vfkit’s command line').toMatchObject({
      shared: fromEnv,
      xchg: path.join(scratch, 'xchg'),
    });
    expect(await inspectedShares(argv)).toMatchObject({ shared: fromEnv });
    expect(consoleOf(t)).toContain('mounting shared on /tmp/shared...');
    expect(t.vm(VM).shares.find((s) => s.tag === 'shared')?.source).toBe(fromEnv);

    // The per-VM setting wins over the environment; the running VM is told it is stale, and its
    // restart shares the new folder.
    const fromSetting = fs.mkdtempSync(path.join(t.root, 'shared folder '));
    const before = t.vm(VM).pid!;
    await t.agent.call('setSettings', { sharedDir: { [VM]: fromSetting } });
    await t.waitFor(
      (s) => s.vms.some((v) => v.name === VM && v.stale),
      undefined,
      `${VM} stale once its shared folder changed`,
    );
    expect(t.vm(VM).shares.find((s) => s.tag === 'shared')?.source).toBe(fromSetting);
    await t.agent.call('restart', { vm: VM });
    await running(t, `${VM} running again on a new vfkit`, (pid) => pid !== before);
    argv = vfkitArgv(t);
    expect(virtioFs(argv)).toMatchObject({ shared: fromSetting, xchg: path.join(scratch, 'xchg') });
    expect(await inspectedShares(argv)).toMatchObject({ shared: fromSetting });
    expect(t.vm(VM).stale).toBe(false);
  });

  it('falls back to the run’s $TMPDIR/xchg when SHARED_DIR is empty and no folder is set', async () => {
    const t = await agent({ env: { SHARED_DIR: '' } });
    await t.agent.call('start', { vm: VM });
    await running(t, `${VM} running`);
    const xchg = path.join(t.vm(VM).stateDir, 'tmp', 'xchg');
    const argv = vfkitArgv(t);
    expect(virtioFs(argv)).toMatchObject({ shared: xchg, xchg });
    expect(await inspectedShares(argv)).toMatchObject({ shared: xchg, xchg });
  });
});

describe("the run's scratch directory ($TMPDIR)", () => {
  it('is removed by the next agent when the run ended while no agent ran', async () => {
    // The first agent is a `nixvm daemon` process, so that it can die for real (SIGKILL: no
    // cleanup of any kind) and leave the VM running on its own.
    const flake = await copyFixture('seed-exact');
    const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-scratch-')));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NIXVM_STATE_DIR: root,
      NIXVM_VFKIT: SIMULATOR,
      NIXVM_LEASES_FILE: path.join(root, 'dhcpd_leases'),
      NIXVM_SIM_BOOT_MS: '200',
    };
    const daemon = spawn(process.execPath, [BIN, 'daemon', '--flake', flake.dir], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const daemonW = watchChild(daemon, 'the daemon', { stdout: true });
    let handedOver = false;
    try {
      await waitFor(() => daemonW.output().includes('listening on'), {
        what: 'the daemon to listen',
        process: daemonW,
      });
      const started = await execa(process.execPath, [BIN, 'start', VM, '--json'], { env, reject: false });
      expect(started.exitCode, `nixvm start ${VM}:\n${started.stderr}${started.stdout}`).toBe(0);
      const vm = JSON.parse(
        (await execa(process.execPath, [BIN, 'status', VM, '--json'], { env })).stdout,
      ) as VmSnapshot;
      expect(vm.state).toBe('running');
      const scratch = path.join(vm.stateDir, 'tmp');
      // What the guest left in its exchange folder.
      fs.writeFileSync(path.join(scratch, 'xchg', 'left-by-the-guest'), 'x');
      const argv = argvOf(vm.pid!);

      daemon.kill('SIGKILL');
      await settles(daemonW.exited, { what: 'the daemon to die of SIGKILL' });
      // The guest powers off while no agent runs.
      const socket = argv[argv.indexOf('--restful-uri') + 1]!.replace(/^unix:\/\//, '');
      expect((await restCall(socket, 'POST', '/vm/state', '{"state":"Stop"}')).status).toBe(202);
      await waitFor(() => ended(vm.pid!), { what: `vfkit (pid ${vm.pid}) to exit after Stop` });
      expect(fs.existsSync(scratch), 'the scratch directory, before the next agent starts').toBe(true);

      // The daemon's flake came from its command line, not its settings: give the next agent the same.
      fs.rmSync(path.join(root, 'settings.json'), { force: true });
      const t = await agent({ root, flake });
      handedOver = true;
      // Gone by the time the agent is ready (adoption cleans up before anything is offered).
      expect(fs.existsSync(scratch), `${scratch} once the next agent is ready`).toBe(false);
      // The rest of the VM's folder is kept, and the VM is shown stopped (it powered off cleanly).
      expect(fs.existsSync(path.join(vm.stateDir, 'boot.json')), 'the boot record, kept').toBe(true);
      await t.waitFor(
        (s) => s.vms.some((v) => v.name === VM && v.state === 'stopped' && v.error === null),
        undefined,
        `${VM} listed as stopped`,
      );
    } finally {
      if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
      if (!handedOver) {
        killVfkitsUnder(path.join(root, 'state', 'vms'));
        fs.rmSync(root, { recursive: true, force: true });
        flake.remove();
      }
    }
  });
});
