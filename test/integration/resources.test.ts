/**
 * CPUs and memory a VM asks for, bounded by the host (issue 16, Low: `cores = 1000000000` reached
 * vfkit). The refusal is on the VM's row before anything is built, and a start is refused with it.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { recentRuns } from '../../src/host/runner.ts';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';

let t: TestAgent | null = null;
afterEach(async () => {
  await t?.dispose();
  t = null;
});

describe('resources', () => {
  it('refuses more CPUs or memory than this Mac has, before building, with one sentence', async () => {
    t = await createTestAgent({ agent: { hostLimits: { cpus: 2, memoryMiB: 8192, source: 'host' } } });
    expect(t.vm('minimal-vm').error).toBe(
      'Cannot start VM "minimal-vm": it asks for 4 CPUs, more than this Mac has (2), and Virtualization.framework gives a VM no more than the Mac has; set virtualisation.cores to 2 or fewer.',
    );
    const mark = recentRuns().length;
    await expect(t.agent.call('start', { vm: 'minimal-vm' })).rejects.toMatchObject({
      code: 'failed',
      message: expect.stringContaining('it asks for 4 CPUs, more than this Mac has (2)'),
    });
    expect(
      recentRuns()
        .slice(mark)
        .filter((r) => r.argv.some((a) => /nix$|vfkit$/.test(a))),
    ).toEqual([]);
  });

  it('refuses what Virtualization.framework never allows, whatever the host', async () => {
    t = await createTestAgent();
    const host = t.flake.file('hosts/minimal-vm.nix');
    t.flake.write('hosts/minimal-vm.nix', fs.readFileSync(host, 'utf8').replace('cores = 4;', 'cores = 1000000000;'));
    await t.agent.call('reevaluate', {});
    await t.waitFor((s) => /1000000000 CPUs/.test(s.vms.find((v) => v.name === 'minimal-vm')?.error ?? ''));
    await expect(t.agent.call('start', { vm: 'minimal-vm' })).rejects.toMatchObject({
      message: expect.stringMatching(/^Cannot start VM "minimal-vm": it asks for 1000000000 CPUs, more than /),
    });
  });
});
