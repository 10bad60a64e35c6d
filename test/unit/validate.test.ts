/**
 * The one validator per agent method (src/api/validate.ts) and the UI verbs' (src/app/validate.ts):
 * what every path into the agent (control socket, IPC, in-process call) accepts and refuses.
 */
import { describe, expect, it } from 'vitest';
import { AGENT_METHODS, type AgentMethod } from '../../src/api/types.ts';
import { AGENT_VALIDATORS, validateParams, validateSubscribe } from '../../src/api/validate.ts';
import { validateSettingsPatch } from '../../src/api/settings-schema.ts';
import { isTrustedSenderUrl, validateUiParams } from '../../src/app/validate.ts';
import { parseRequest } from '../../src/control/protocol.ts';
import { IpcDispatcher } from '../../src/app/dispatch.ts';
import { FakePort, agentSnapshot } from '../helpers/fake-port.ts';

const BASE = 'file:///Applications/NixVM.app/Contents/Resources/app.asar/dist/renderer/';

describe('IPC sender check', () => {
  it('accepts our own renderer pages only', () => {
    expect(isTrustedSenderUrl(`${BASE}index.html`, BASE)).toBe(true);
    expect(isTrustedSenderUrl(`${BASE}log.html?vm=web&kind=console`, BASE)).toBe(true);
    expect(isTrustedSenderUrl('file:///tmp/evil.html', BASE)).toBe(false);
    expect(isTrustedSenderUrl(`${BASE}../../../../../../../../tmp/evil.html`, BASE)).toBe(false);
    expect(isTrustedSenderUrl('https://example.com/dist/renderer/index.html', BASE)).toBe(false);
    expect(isTrustedSenderUrl('', BASE)).toBe(false);
    expect(isTrustedSenderUrl(undefined, BASE)).toBe(false);
    expect(isTrustedSenderUrl('not a url', BASE)).toBe(false);
  });

  // Issue 16 (Electron): only the path was compared, so file://<any host>/… passed.
  it('compares the whole file:// URL, host included', () => {
    const path = new URL(BASE).pathname;
    expect(isTrustedSenderUrl(`file://attacker.example${path}index.html`, BASE)).toBe(false);
    // (file://localhost/… is file:///… by the URL standard: the same place.)
    expect(isTrustedSenderUrl(`file://user:pw@${path}index.html`, BASE)).toBe(false);
    expect(isTrustedSenderUrl(`${BASE}index.html#x`, BASE)).toBe(true);
  });
});

describe('one validator per agent method', () => {
  it('has one for every method of the contract', () => {
    expect(Object.keys(AGENT_VALIDATORS).sort()).toEqual(Object.keys(AGENT_METHODS).sort());
  });

  it('passes well-formed params through', () => {
    expect(validateParams('start', { vm: 'web' })).toEqual({ vm: 'web' });
    expect(validateParams('snapshot', undefined)).toEqual({});
    expect(validateParams('logs', { vm: 'web', kind: 'build', lines: 200 })).toEqual({
      vm: 'web',
      kind: 'build',
      lines: 200,
    });
    expect(validateUiParams('copyIp', { vm: 'web', family: 'ipv4' })).toEqual({ vm: 'web', family: 'ipv4' });
    expect(validateUiParams('openFlakeFolder', {})).toEqual({});
  });

  it('refuses malformed params with a bad-request sentence that names the field', () => {
    const cases: [() => unknown, string | RegExp][] = [
      [() => validateParams('start', {}), 'start needs a "vm" parameter naming the VM.'],
      [() => validateParams('start', { vm: 3 }), 'start needs a "vm" parameter naming the VM.'],
      [() => validateParams('start', { vm: 'x'.repeat(300) }), 'start needs a "vm" parameter naming the VM.'],
      [() => validateParams('start', { vm: 'web', extra: 1 }), 'start has no parameter "extra".'],
      [() => validateParams('start', 'web'), 'The params of start must be a JSON object.'],
      [() => validateParams('snapshot', { x: 1 }), 'snapshot has no parameter "x".'],
      [() => validateParams('logs', { vm: 'web', kind: 'serial', lines: 10 }), /"kind" must be "console" or "build"/],
      [() => validateParams('logs', { vm: 'web', kind: 'console', lines: 1e9 }), /"lines" must be a whole number/],
      [() => validateParams('logs', { vm: 'web', kind: 'console', lines: -1 }), /"lines" must be a whole number/],
      [() => validateUiParams('copyIp', { vm: 'web', family: 'ipx' }), /"family" must be/],
      [() => validateUiParams('setLaunchAtLogin', { enabled: 'yes' }), /"enabled" must be true or false/],
      [() => validateSubscribe({ logs: 'all' }, 16), /"logs" must be a list/],
      [() => validateSubscribe({ logs: Array(17).fill({ vm: 'a', kind: 'console' }) }, 16), /at most 16 logs/],
    ];
    for (const [fn, msg] of cases) {
      expect(fn).toThrow(msg);
      expect(fn).toThrow(expect.objectContaining({ code: 'bad-request' }));
    }
  });

  it('checks settings patches with the one settings schema', () => {
    expect(
      validateSettingsPatch({
        autoRebuild: 'restart',
        stopTimeoutSec: 10,
        autostart: { web: true },
        sshUser: { web: 'alice' },
      }),
    ).toEqual({ autoRebuild: 'restart', stopTimeoutSec: 10, autostart: { web: true }, sshUser: { web: 'alice' } });
    expect(() => validateSettingsPatch({ flakes: ['relative/dir'] })).toThrow(/must be an absolute path/);
    expect(() => validateSettingsPatch({ autoRebuild: 'always' })).toThrow(/autoRebuild must be one of/);
    expect(() => validateSettingsPatch({ sshUser: { web: 'a b' } })).toThrow(/sshUser\.web must be a user name/);
    expect(() => validateSettingsPatch({ stopTimeoutSec: 0 })).toThrow(/stopTimeoutSec must be at least 1/);
    expect(() => validateSettingsPatch({ nixPth: '/x' })).toThrow(/There is no setting named "nixPth"/);
  });

  it('refuses the same things on the control socket and over IPC (an ssh user that reads as an option)', async () => {
    const patch = { sshUser: { web: '-oProxyCommand=touch /tmp/x' } };
    const wire = parseRequest(JSON.stringify({ id: 1, method: 'setSettings', params: patch }));
    expect(wire.ok).toBe(false);
    const port = new FakePort(agentSnapshot([]));
    const ipc = new IpcDispatcher(port, {} as never);
    const reply = await ipc.handle('nixvm:call', { method: 'setSettings', params: patch }, { id: 1, send: () => {} });
    expect(reply.ok).toBe(false);
    if (wire.ok || reply.ok) return;
    expect(reply.error).toEqual(wire.error);
    expect(wire.error.message).toMatch(/must be a user name .* does not start with a dash/);
    expect(port.calls).toEqual([]);
    // Every VM method refuses a missing name with the same sentence on both paths.
    for (const m of ['start', 'stop', 'inspect'] as AgentMethod[]) {
      const w = parseRequest(JSON.stringify({ id: 2, method: m, params: {} }));
      const r = await ipc.handle('nixvm:call', { method: m, params: {} }, { id: 1, send: () => {} });
      expect(!w.ok && !r.ok && w.error.message === r.error.message).toBe(true);
    }
  });
});
