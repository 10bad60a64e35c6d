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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { rootOnly } from '../helpers/users.ts';

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
  // The agent has found sshd on vsock (the route a switch takes).
  await t.waitFor((s) => s.vms.some((v) => v.name === 'cred' && v.sshCommand?.includes('ProxyCommand') === true));
}, 180_000);
afterAll(async () => {
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

  it('reports a switch that left units failed in one sentence, and the VM keeps running', async () => {
    const vfkit = pid();
    await edit('rev = 3; switchExit = 4; switchFailedUnits = [ "foo.service" ];');
    await expect(t.agent.call('apply', { vm: 'cred' })).rejects.toMatchObject({
      code: 'failed',
      message: expect.stringMatching(
        /^Switching "cred" left a unit failed \(foo\.service\); it keeps running on what it switched to; see .*apply\.log, or restart it to boot the new closure \(`nixvm restart cred`\)\.$/,
      ),
    });
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
