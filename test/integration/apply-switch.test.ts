/**
 * `apply` without a reboot: a running VM that sees the host's store is switched to its new
 * closure in place, over nixvm's ssh channel (vsock, as root, nixvm's key delivered by the systemd
 * credential) into a real `sshd -i` behind the simulator, which runs the closure's
 * `bin/switch-to-configuration` (a script that records its call, reports failed units and exits
 * as the flake says). What a switch cannot change (memory, the kernel) restarts, saying why; a
 * failed switch is one sentence and the VM keeps running; a guest nixvm cannot log in to is told.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlServer } from '../../src/control/server.ts';
import { controlSocketPath } from '../../src/host/socket-path.ts';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { rootOnly } from '../helpers/users.ts';
import { settles, waitFor, watchChild } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));
// sshd -i runs as the user running the tests and logs root in only when that is root.
const notRoot = rootOnly(
  'apply-switch.test.ts',
  'applying over ssh as root',
  'sshd -i runs as the user running the tests and logs root in only when that is root',
);
const root = notRoot === null;

let t: TestAgent;
let log: string;
const extra = (fields: string) =>
  t.flake.write('extra-cred.nix', `{ nixvmTest = { switchLog = ${JSON.stringify(log)}; ${fields} }; }\n`);
const pid = () => t.vm('cred').pid;
const MEM4096 = 'virtualisation = { cores = 1; memorySize = 4096; };';

/** The `nixvm` CLI, talking to this agent over `server`. */
let server: { close(): Promise<void> };
const cliEnv = () => ({ ...process.env, NIXVM_STATE_DIR: t.root });
const cli = (args: string[]) =>
  execa(process.execPath, [BIN, ...args], { env: cliEnv(), reject: false, timeout: 120_000, stdin: 'ignore' });
const said = (r: { stdout: string; stderr: string; exitCode?: number }) =>
  `exit ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/** The agent has found sshd on vsock (the route a switch takes). */
const vsock = () =>
  t.waitFor((s) => s.vms.some((v) => v.name === 'cred' && v.sshCommand?.includes('ProxyCommand') === true));

/** The closures of cred that nixvm's GC roots keep. */
function gcRoots(): Set<string> {
  const dir = path.join(t.root, 'state', 'gcroots');
  return new Set(
    fs
      .readdirSync(dir)
      .map((n) => fs.readlinkSync(path.join(dir, n)))
      .filter((p) => p.endsWith('-nixos-system-cred')),
  );
}

/** Edit the flake and wait until the agent sees the VM stale. */
async function edit(fields: string, vmExtra = ''): Promise<void> {
  const before = t.vm('cred').drvPath;
  t.flake.write('extra-cred.nix', `{ nixvmTest = { switchLog = ${JSON.stringify(log)}; ${fields} }; ${vmExtra} }\n`);
  await t.waitFor((s) => s.vms.some((v) => v.name === 'cred' && v.stale && v.drvPath !== before));
}

beforeAll(async () => {
  if (root) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  t = await createTestAgent({ fixture: 'ssh-credential', agent: { nixvmCommand: [process.execPath, BIN] } });
  log = path.join(t.root, 'switch.log');
  extra('rev = 1;');
  await t.agent.call('reevaluate', {});
  await t.agent.call('start', { vm: 'cred' });
  await vsock();
  server = await startControlServer(t.agent, controlSocketPath(path.join(t.root, 'state')));
}, 180_000);
afterAll(async () => {
  await server?.close();
  await t?.dispose();
});

describe.skipIf(!root)('apply on a running VM', () => {
  it('switches in place when only the closure changed: the same vfkit, no longer stale, both closures shown', async () => {
    const booted = t.vm('cred').bootedOutPath!;
    const vfkit = pid();
    await edit('rev = 2;');
    const after = await t.agent.call('apply', { vm: 'cred' });
    expect(after.applied).toMatchObject({ how: 'switch', reasons: [], error: null });
    expect(after.pid).toBe(vfkit);
    expect(after.state).toBe('running');
    expect(after.stale).toBe(false);
    expect(after.bootedOutPath).toBe(booted);
    expect(after.switchedOutPath).toBe(after.builtOutPath);
    expect(after.switchedOutPath).not.toBe(booted);
    // The guest ran the new toplevel's switch-to-configuration, once, with "switch".
    expect(fs.readFileSync(log, 'utf8')).toBe(`${after.switchedOutPath} switch\n`);
    const applyLog = fs.readFileSync(path.join(t.root, 'logs', 'vms', 'cred', 'apply.log'), 'utf8');
    expect(applyLog).toContain('activating the configuration...');
  }, 120_000);

  it('reports a switch that left units failed in one sentence plus its last lines, and the VM keeps running', async () => {
    const vfkit = pid();
    await edit('rev = 3; switchExit = 4; switchFailedUnits = [ "foo.service" ];');
    const err = await t.agent.call('apply', { vm: 'cred' }).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('failed');
    const [sentence, ...tail] = err?.message.split('\n') ?? [];
    expect(sentence).toMatch(
      /^Switching "cred" left a unit failed \(foo\.service\); it keeps running on what it switched to; see .*apply\.log, or restart it to boot the new closure \(`nixvm restart cred`\)\.$/,
    );
    // Why, without opening the log: the switch's own last words.
    expect(tail).toEqual([
      '  activating the configuration...',
      '  setting up /etc...',
      '  warning: the following units failed: foo.service',
    ]);
    expect(t.vm('cred')).toMatchObject({ state: 'running', pid: vfkit, stale: true });
    expect(t.vm('cred').applied).toMatchObject({ how: 'failed' });
  }, 120_000);

  it('restarts, saying why, when the memory or the kernel changed', async () => {
    const vfkit = pid();
    await edit('rev = 4;', 'virtualisation = { cores = 1; memorySize = 2048; };');
    const mem = await t.agent.call('apply', { vm: 'cred' });
    expect(mem.applied).toMatchObject({ how: 'restart', reasons: ['memorySize 1024 → 2048 needs a restart'] });
    expect(mem.pid).not.toBe(vfkit);
    expect(mem.stale).toBe(false);
    await t.waitFor((s) => s.vms.some((v) => v.name === 'cred' && v.sshCommand?.includes('ProxyCommand') === true));

    await edit('rev = 5; kernel = "6.7";', 'virtualisation = { cores = 1; memorySize = 2048; };');
    const kernel = await t.agent.call('apply', { vm: 'cred' });
    expect(kernel.applied).toMatchObject({ how: 'restart', reasons: ['the kernel changed'] });
  }, 180_000);

  it('says so when the ssh channel is gone, and leaves the VM running', async () => {
    await t.waitFor((s) => s.vms.some((v) => v.name === 'cred' && v.sshCommand?.includes('ProxyCommand') === true));
    const vfkit = pid();
    // The host end of the guest's vsock port disappears: nothing answers there any more.
    fs.rmSync(path.join(t.root, 'state', 'vms', 'cred', 'ssh.sock'));
    await edit('rev = 6; kernel = "6.7";', 'virtualisation = { cores = 1; memorySize = 2048; };');
    const err = await t.agent.call('apply', { vm: 'cred' }).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('failed');
    expect(err?.message).toMatch(/^nixvm cannot reach "cred" over ssh to switch it \(.*\); restart to apply\.$/);
    expect(t.vm('cred')).toMatchObject({ state: 'running', pid: vfkit, stale: true });
  }, 120_000);

  // From here the VM runs on 2048 MiB with kernel 6.7 (the tests above); the one before left its
  // ssh socket gone, so the first test below restarts it. The CLI talks to this agent over a
  // control socket of its own.

  it('nixvm apply says a restart and why: "restarted: memorySize 2048 → 4096 needs a restart"', async () => {
    const vfkit = pid();
    await edit('rev = 10; kernel = "6.7";', MEM4096);
    const r = await cli(['apply', 'cred']);
    expect(r.exitCode, said(r)).toBe(0);
    expect(r.stdout, said(r)).toMatch(/^cred: restarted(?: \([^)]*\))?: memorySize 2048 → 4096 needs a restart$/m);
    expect(t.vm('cred').pid).not.toBe(vfkit);
    await vsock();
  }, 120_000);

  it('nixvm apply prints the switch’s lines as they come, before the switch ends', async () => {
    const hold = path.join(t.root, 'hold-11');
    await edit(`rev = 11; kernel = "6.7"; switchHold = ${JSON.stringify(hold)};`, MEM4096);
    const child = spawn(process.execPath, [BIN, 'apply', 'cred'], { env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const w = watchChild(child, 'nixvm apply', { stdout: true });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    // The switch waits for `hold`: these lines can only be there while it still runs.
    await waitFor(() => out.includes(`cred | nixvm-test: holding the switch until ${hold} exists`), {
      what: 'nixvm apply to print the line the switch prints before it holds',
      process: w,
    });
    expect(out).toContain('cred | activating the configuration...\ncred | setting up /etc...\n');
    expect(out).not.toContain('switched in place');
    fs.writeFileSync(hold, '');
    const exit = await settles(w.exited, { what: 'nixvm apply to finish once the switch goes on' });
    expect(exit.code, `nixvm apply wrote:\n${w.output()}`).toBe(0);
    expect(out).toMatch(/^cred: switched in place/m);
    // Each line once, though many snapshots carried it.
    expect(out.split('\n').filter((l) => l === 'cred | activating the configuration...')).toHaveLength(1);
  }, 120_000);

  it('the auto-rebuild mode "apply" switches a running VM in place when its flake is saved', async () => {
    const vfkit = pid();
    const before = t.vm('cred').drvPath;
    await t.agent.call('setSettings', { autoRebuild: 'apply' });
    try {
      // Saved, and nothing asked: the agent builds and switches by itself.
      t.flake.write(
        'extra-cred.nix',
        `{ nixvmTest = { switchLog = ${JSON.stringify(log)}; rev = 12; kernel = "6.7"; }; ${MEM4096} }\n`,
      );
      const s = await t.waitFor(
        (snap) =>
          snap.vms.some(
            (v) =>
              v.name === 'cred' &&
              v.drvPath !== before &&
              v.applied?.how === 'switch' &&
              v.switchedOutPath === v.builtOutPath &&
              !v.stale,
          ),
        60_000,
        'the saved edit to be switched to in place',
      );
      const v = s.vms.find((x) => x.name === 'cred')!;
      expect(v.pid, 'no new vfkit').toBe(vfkit);
      expect(fs.readFileSync(log, 'utf8').trim().split('\n').at(-1)).toBe(`${v.switchedOutPath} switch`);
    } finally {
      await t.agent.call('setSettings', { autoRebuild: 'off' });
    }
  }, 120_000);

  it('keeps GC roots for the booted and the switched-to closure until the next boot, also past a third build', async () => {
    const booted = t.vm('cred').bootedOutPath!;
    await edit('rev = 13; kernel = "6.7";', MEM4096);
    const switched = (await t.agent.call('apply', { vm: 'cred' })).switchedOutPath!;
    expect(switched).not.toBe(booted);
    expect([...gcRoots()], 'roots for the booted and the switched-to closure').toEqual(
      expect.arrayContaining([booted, switched]),
    );

    // A build of a third closure drops no root the running guest needs: it booted one, runs the other.
    await edit('rev = 14; kernel = "6.7";', MEM4096);
    const third = (await t.agent.call('build', { vm: 'cred' })).builtOutPath!;
    expect([third, booted, switched]).toHaveLength(new Set([third, booted, switched]).size);
    expect(gcRoots(), 'the roots past a third build: booted, switched-to, built').toEqual(
      new Set([booted, switched, third]),
    );

    // The next boot starts the newest build: only its root is left.
    const after = await t.agent.call('restart', { vm: 'cred' });
    expect(after.bootedOutPath).toBe(third);
    expect(after.switchedOutPath ?? null).toBeNull();
    expect(gcRoots(), 'after the next boot only its closure keeps a root').toEqual(new Set([third]));
    await vsock();
  }, 180_000);

  it('boots the switched-to closure at the next restart, and an agent that restarts still knows both', async () => {
    await edit('rev = 15; kernel = "6.7";', MEM4096);
    const vfkit = pid();
    const switched = await t.agent.call('apply', { vm: 'cred' });
    const booted = switched.bootedOutPath!;
    expect(switched.switchedOutPath).toBe(switched.builtOutPath);

    // A new agent adopts the running VM: the boot record says what it was switched to.
    await server.close();
    await t.close();
    t = await createTestAgent({ root: t.root, flake: t.flake, agent: { nixvmCommand: [process.execPath, BIN] } });
    server = await startControlServer(t.agent, controlSocketPath(path.join(t.root, 'state')));
    const adopted = t.vm('cred');
    expect(adopted).toMatchObject({
      state: 'running',
      pid: vfkit,
      stale: false,
      bootedOutPath: booted,
      switchedOutPath: switched.switchedOutPath,
    });
    const st = await cli(['status', 'cred']);
    expect(st.exitCode, said(st)).toBe(0);
    expect(st.stdout).toMatch(new RegExp(`booted: +${booted}\\n`));
    expect(st.stdout).toMatch(
      new RegExp(`switched to: +${switched.switchedOutPath} \\(in place; a restart boots it\\)`),
    );

    await vsock();
    const restarted = await t.agent.call('restart', { vm: 'cred' });
    expect(restarted.pid).not.toBe(vfkit);
    expect(restarted).toMatchObject({ state: 'running', stale: false, bootedOutPath: switched.switchedOutPath });
    expect(restarted.switchedOutPath ?? null).toBeNull();
    expect(gcRoots(), 'after the next boot only its closure keeps a root').toEqual(new Set([switched.switchedOutPath]));
    await vsock();
  }, 180_000);
});

describe("apply on a guest whose root does not take nixvm's key", () => {
  it('restarts it, saying why, without trying a switch', async () => {
    t.flake.write('extra-plain.nix', '{ nixvmTest.rev = 1; }\n');
    await t.agent.call('reevaluate', {});
    await t.agent.call('start', { vm: 'plain' });
    const vfkit = t.vm('plain').pid;
    const before = t.vm('plain').drvPath;
    t.flake.write('extra-plain.nix', '{ nixvmTest.rev = 2; }\n');
    await t.waitFor((s) => s.vms.some((v) => v.name === 'plain' && v.stale && v.drvPath !== before));
    // Said before the click (the app's Apply button shows it), and done so.
    expect(t.vm('plain').applyPreview).toEqual({
      how: 'restart',
      reasons: [
        "nixvm's key does not reach root there (no ssh.authorized_keys.root credential, no $KEYS file its sshd reads for root)",
      ],
    });
    const after = await t.agent.call('apply', { vm: 'plain' });
    expect(after.applied?.how).toBe('restart');
    expect(after.pid).not.toBe(vfkit);
    await t.agent.call('stop', { vm: 'plain' });
  }, 180_000);
});
