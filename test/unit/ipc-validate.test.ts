import { describe, expect, it } from 'vitest';
import {
  isTrustedSenderUrl,
  validateAgentParams,
  validateSettingsPatch,
  validateUiParams,
} from '../../src/main/validate.ts';

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
});

describe('IPC argument validation', () => {
  it('passes well-formed params through', () => {
    expect(validateAgentParams('start', { vm: 'web' })).toEqual({ vm: 'web' });
    expect(validateAgentParams('snapshot', undefined)).toEqual({});
    expect(validateAgentParams('logs', { vm: 'web', kind: 'build', lines: 200 })).toEqual({
      vm: 'web',
      kind: 'build',
      lines: 200,
    });
    expect(validateUiParams('copyIp', { vm: 'web', family: 'ipv4' })).toEqual({ vm: 'web', family: 'ipv4' });
    expect(validateUiParams('openFlakeFolder', {})).toEqual({});
  });

  it('refuses malformed params with a bad-request error that names the field', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => validateAgentParams('start', {}), /vm must be a non-empty string/],
      [() => validateAgentParams('start', { vm: 3 }), /vm must be a non-empty string/],
      [() => validateAgentParams('start', { vm: 'web', extra: 1 }), /unknown field "extra"/],
      [() => validateAgentParams('start', 'web'), /params must be an object/],
      [() => validateAgentParams('snapshot', { x: 1 }), /unknown field "x"/],
      [() => validateAgentParams('logs', { vm: 'web', kind: 'serial', lines: 10 }), /kind must be/],
      [() => validateAgentParams('logs', { vm: 'web', kind: 'console', lines: 1e9 }), /lines must be/],
      [() => validateUiParams('copyIp', { vm: 'web', family: 'ipx' }), /family must be/],
      [() => validateUiParams('setLaunchAtLogin', { enabled: 'yes' }), /enabled must be true or false/],
    ];
    for (const [fn, msg] of cases) {
      expect(fn).toThrow(msg);
      expect(fn).toThrow(expect.objectContaining({ code: 'bad-request' }));
    }
  });

  it('checks settings patches field by field', () => {
    expect(
      validateSettingsPatch({
        autoRebuild: 'restart',
        stopTimeoutSec: 10,
        autostart: { web: true },
        sshUser: { web: 'alice' },
      }),
    ).toEqual({ autoRebuild: 'restart', stopTimeoutSec: 10, autostart: { web: true }, sshUser: { web: 'alice' } });
    expect(() => validateSettingsPatch({ flakes: ['relative/dir'] })).toThrow(/must be an absolute path/);
    expect(() => validateSettingsPatch({ autoRebuild: 'always' })).toThrow(/autoRebuild/);
    expect(() => validateSettingsPatch({ sshUser: { web: 'a b' } })).toThrow(/not a valid user name/);
    expect(() => validateSettingsPatch({ stopTimeoutSec: 0 })).toThrow(/between 1 and 3600/);
    expect(() => validateSettingsPatch({ nixPth: '/x' })).toThrow(/unknown field "nixPth"/);
  });
});
