/**
 * A stop while a start is still under way cancels that start (issue 16, Low): during the build,
 * `nixvm stop` answered "stopped" and then the VM started anyway; during boot the start printed
 * `started (stopping, …)` and exited 0. Now the start says it was cancelled and fails, and the VM
 * stays stopped.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/app.ts';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { collect } from '../helpers/fake-port.ts';

let t: TestAgent | null = null;
afterEach(async () => {
  await t?.dispose();
  t = null;
});

describe('stop during a start', () => {
  it('while it builds: the start is cancelled, nothing boots, the CLI says so and exits 1', async () => {
    t = await createTestAgent({ fixture: 'build', salt: true });
    t.flake.write('slow-seconds', '2');
    await t.agent.call('reevaluate', {});
    const out = collect();
    const err = collect();
    const cli = main(['start', 'slow'], {
      stdout: out,
      stderr: err,
      connect: async () => t!.agent,
      defaultSocketPath: async () => '/unused',
    });
    await t.waitFor((s) => s.vms.find((v) => v.name === 'slow')?.build.status === 'building', undefined, 'the build');
    const stopped = await t.agent.call('stop', { vm: 'slow' });
    expect(stopped.state).toBe('stopped');
    expect(await cli).toBe(1);
    expect(err.text()).toContain(
      'slow: The start of VM "slow" was cancelled: it was stopped before it finished starting (its build is kept).',
    );
    expect(out.text()).not.toMatch(/slow: started/);
    // The build finished, and still nothing runs.
    await t.waitFor(
      (s) => s.vms.find((v) => v.name === 'slow')?.build.status === 'succeeded',
      undefined,
      'the build to end',
    );
    expect(t.vm('slow').state).toBe('stopped');
    expect(t.vm('slow').pid).toBeNull();
  });

  it('while it boots: the start rejects as cancelled instead of reporting "started (stopping)"', async () => {
    t = await createTestAgent({ vmEnv: { NIXVM_SIM_BOOT_MS: '3000' } });
    await t.agent.call('build', { vm: 'minimal-vm' });
    const start = t.agent.call('start', { vm: 'minimal-vm' }).catch((e: unknown) => e);
    await t.waitFor((s) => s.vms.find((v) => v.name === 'minimal-vm')?.pid != null, undefined, 'vfkit to be spawned');
    await t.agent.call('stop', { vm: 'minimal-vm' });
    expect(await start).toMatchObject({
      code: 'failed',
      message: 'The start of VM "minimal-vm" was cancelled: it was stopped before it finished starting.',
    });
    expect(t.vm('minimal-vm').state).toBe('stopped');
  });
});
