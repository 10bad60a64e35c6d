import { describe, expect, it } from 'vitest';
import { IpcDispatcher } from '../../src/app/dispatch.ts';
import { createUiHandlers, type UiHost } from '../../src/app/actions.ts';
import { agentSnapshot, FakePort, vmSnapshot } from '../helpers/fake-port.ts';
import type { AgentEvent } from '../../src/api/types.ts';

function host(): UiHost & { clip: string[] } {
  const clip: string[] = [];
  return {
    clip,
    writeClipboard: (t) => void clip.push(t),
    openTerminal: async () => {},
    nixvmCommand: () => ['nixvm'],
    exampleFlake: () => null,
    confirm: async () => false,
    openFolder: async () => {},
    revealPath: () => {},
    openLogWindow: () => {},
    openFlakeErrorWindow: () => {},
    openConsoleApp: async () => {},
    chooseFolder: async () => null,
    openSettings: () => {},
    getLaunchAtLogin: async () => false,
    setLaunchAtLogin: async (e) => e,
    quit: () => {},
    fitDropdown: () => {},
  };
}

function setup() {
  const port = new FakePort(agentSnapshot([vmSnapshot({ name: 'web', ipv4: '192.168.64.5' })]), {
    start: (p, f) => f.vm(p.vm),
    ips: (p, f) => ({ ipv4: f.vm(p.vm).ipv4, ipv6: null }),
  });
  const h = host();
  const d = new IpcDispatcher(port, createUiHandlers(port, h));
  const sent: AgentEvent[] = [];
  const client = { id: 1, send: (ev: AgentEvent) => void sent.push(ev) };
  return { port, h, d, sent, client };
}

describe('IPC dispatcher', () => {
  it('runs valid agent calls and UI verbs and answers with envelopes', async () => {
    const { d, port, h, client } = setup();
    const r = await d.handle('nixvm:call', { method: 'start', params: { vm: 'web' } }, client);
    expect(r).toMatchObject({ ok: true, value: { name: 'web' } });
    expect(port.calls.at(-1)).toEqual({ method: 'start', params: { vm: 'web' } });
    expect(await d.handle('nixvm:ui', { verb: 'copyIp', params: { vm: 'web', family: 'ipv4' } }, client)).toEqual({
      ok: true,
      value: { text: '192.168.64.5' },
    });
    expect(h.clip).toEqual(['192.168.64.5']);
  });

  it('refuses unknown methods, verbs, channels and bad params before anything runs', async () => {
    const { d, port, client } = setup();
    const cases: [string, unknown, RegExp][] = [
      ['nixvm:call', { method: 'rm -rf', params: {} }, /Unknown method "rm -rf"/],
      ['nixvm:call', { method: 'start', params: { vm: '' } }, /start needs a "vm" parameter/],
      ['nixvm:call', { method: '__proto__', params: {} }, /Unknown method/],
      ['nixvm:ui', { verb: 'openExternal', params: {} }, /unknown action "openExternal"/],
      ['nixvm:app', { verb: 'constructor', params: {} }, /unknown app action "constructor"/],
      // A dispatcher given no app verbs (this one) refuses even the real ones.
      ['nixvm:app', { verb: 'installCliTool', params: {} }, /unknown app action "installCliTool"/],
      ['nixvm:other', {}, /unknown channel/],
      ['nixvm:subscribe', { logs: 'all' }, /"logs" must be a list/],
    ];
    for (const [ch, arg, msg] of cases) {
      const r = await d.handle(ch, arg, client);
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.error.code).toBe('bad-request');
        expect(r.error.message).toMatch(msg);
      }
    }
    expect(port.calls).toEqual([]);
  });

  it("keeps the agent's error code across the envelope", async () => {
    const { d, client } = setup();
    expect(await d.handle('nixvm:call', { method: 'start', params: { vm: 'nope' } }, client)).toEqual({
      ok: false,
      error: { code: 'no-such-vm', message: 'No VM named nope.' },
    });
  });

  it('holds one subscription per window, replaced on resubscribe and dropped when the window goes', async () => {
    const { d, port, sent, client } = setup();
    await d.handle('nixvm:subscribe', { logs: [{ vm: 'web', kind: 'console' }] }, client);
    await d.handle('nixvm:subscribe', { logs: [{ vm: 'web', kind: 'build' }] }, client);
    expect(port.subscriptions).toEqual([
      { logs: [{ vm: 'web', kind: 'console' }] },
      { logs: [{ vm: 'web', kind: 'build' }] },
    ]);
    expect(port.listenerCount).toBe(1);
    port.emit({ type: 'notice', notice: { level: 'info', title: 'Built', body: 'web' } });
    expect(sent).toHaveLength(1);
    d.drop(client.id);
    expect(port.listenerCount).toBe(0);
  });
});
