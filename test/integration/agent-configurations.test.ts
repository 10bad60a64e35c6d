/**
 * Which configurations the agent shows as VMs, the per-flake include/exclude settings applied
 * live, a configuration that does not boot like a VM refused before anything is built, and the
 * doctor checks as the agent runs them. Real nix, the vfkit simulator.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onRun, type RunRecord } from '../../src/host/runner.ts';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';

let t: TestAgent;
beforeAll(async () => {
  t = await createTestAgent({ fixture: 'mixed' });
});
afterAll(() => t.dispose());

describe('configurations that are VMs', () => {
  it('lists the VMs, counts the other configurations as hidden', () => {
    const snap = t.agent.snapshot();
    expect(snap.vms.map((v) => v.name)).toEqual(['dev', 'disk-vm', 'grub-vm']);
    expect(snap.flakes[0]).toMatchObject({ state: 'ok', hidden: ['laptop', 'server'], source: 'settings' });
  });

  it('refuses to start one that boots from its own disk, with one sentence, before building it', async () => {
    const runs: RunRecord[] = [];
    const off = onRun((r) => runs.push(r));
    try {
      const err = await t.agent.call('start', { vm: 'grub-vm' }).catch((e: unknown) => e as Error);
      expect(err).toMatchObject({
        code: 'failed',
        message:
          '"grub-vm" is not a VM nixvm can boot: it enables a boot loader (boot.loader.grub.enable) and vfkit loads its kernel directly; set boot.loader.grub.enable = false if it is meant to run as a VM.',
      });
      const disk = (await t.agent.call('start', { vm: 'disk-vm' }).catch((e: unknown) => e)) as Error;
      expect(disk.message).toMatch(
        /^"disk-vm" is not a VM nixvm can boot: its root file system is on the disk labelled nixos/,
      );
    } finally {
      off();
    }
    expect(
      runs.filter((r) => r.argv.includes('build')),
      'no nix build ran',
    ).toEqual([]);
    // The snapshot says it too, so `ls` shows it before anyone tries.
    expect(t.vm('grub-vm').error).toMatch(/^"grub-vm" is not a VM nixvm can boot/);
    expect(t.vm('grub-vm').build.status).toBe('idle');
  });

  it('a hidden configuration asked for by name says what it is and how to show it', async () => {
    await expect(t.agent.call('ips', { vm: 'laptop' })).rejects.toMatchObject({
      code: 'no-such-vm',
      message: `"laptop" is a configuration of ${t.flake.dir} that nixvm does not show as a VM (it sets none of the options nixvm reads, or the settings exclude it); \`nixvm flake include ${t.flake.dir} laptop\` makes it one.`,
    });
  });

  it('applies include and exclude from the settings at once', async () => {
    const dir = t.flake.dir;
    await t.agent.call('setSettings', {
      includeConfigurations: { [dir]: ['laptop'] },
      excludeConfigurations: { [dir]: ['dev'] },
    });
    const snap = await t.waitFor((s) => s.vms.some((v) => v.name === 'laptop'), undefined, 'laptop to be shown');
    expect(snap.vms.map((v) => v.name)).toEqual(['disk-vm', 'grub-vm', 'laptop']);
    expect(snap.flakes[0]!.hidden).toEqual(['dev', 'server']);
    expect(t.vm('laptop').error).toMatch(
      /^"laptop" is not a VM nixvm can boot: it enables a boot loader \(boot\.loader\.systemd-boot\.enable\)/,
    );
    await t.agent.call('setSettings', { includeConfigurations: {}, excludeConfigurations: {} });
    await t.waitFor(
      (s) => s.vms.some((v) => v.name === 'dev') && !s.vms.some((v) => v.name === 'laptop'),
      undefined,
      'dev back',
    );
  });

  it('runs the doctor checks with what it knows (its nix, the systems its VMs need)', async () => {
    const report = await t.agent.call('doctor', {});
    const byId = Object.fromEntries(report.checks.map((c) => [c.id, c]));
    expect(byId.nix!.status).not.toBe('fail');
    expect(byId.vfkit).toMatchObject({ status: 'ok' });
    // The fixture's VMs are x86_64-linux, which this machine builds itself.
    expect(byId.builder).toMatchObject({ status: 'ok', summary: 'this machine builds x86_64-linux itself.' });
    await expect(t.agent.call('doctor', { verbose: true } as never)).rejects.toMatchObject({ code: 'bad-request' });
  });
});
