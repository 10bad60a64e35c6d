/** NixVM.app's on-quit policy (src/app/actions.ts stopForQuit) against the real Agent. */
import { describe, expect, it } from 'vitest';
import { stopForQuit } from '../../src/app/actions.ts';
import { createTestAgent } from '../helpers/agent.ts';

describe('quitting the app', () => {
  it('stops running VMs when settings say onQuit = stop', async () => {
    const t = await createTestAgent({ fixture: 'ui', settings: { onQuit: 'stop' } });
    try {
      await t.agent.call('start', { vm: 'dev' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'));
      expect(await stopForQuit(t.agent)).toEqual({ stopped: ['dev'], failed: [] });
      expect(t.vm('dev').state).toBe('stopped');
    } finally {
      await t.dispose();
    }
  });

  it('leaves them running when onQuit = keep', async () => {
    const t = await createTestAgent({ fixture: 'ui', settings: { onQuit: 'keep' } });
    try {
      await t.agent.call('start', { vm: 'dev' });
      await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running'));
      expect(await stopForQuit(t.agent)).toEqual({ stopped: [], failed: [] });
      expect(t.vm('dev').state).toBe('running');
    } finally {
      await t.dispose();
    }
  });
});
