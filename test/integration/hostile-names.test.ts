/**
 * VMs named after Object.prototype's members (`constructor`, `__proto__`, `toString`,
 * `hasOwnProperty`) through every path a VM name takes: settings (autostart, ssh user), the
 * snapshot, nixvm's ssh config, the CLI and the app's dispatch (issue 16, High: such a VM was
 * auto-started with no setting, and its ssh user lookup broke every snapshot and the ssh config).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createUiHandlers, type UiHost } from '../../src/app/actions.ts';
import { IpcDispatcher } from '../../src/app/dispatch.ts';
import { main } from '../../src/cli/app.ts';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { collect } from '../helpers/fake-port.ts';
import { waitFor } from '../helpers/wait.ts';

const HOSTILE = ['__proto__', 'constructor', 'hasOwnProperty', 'toString'];
const ALL = [...HOSTILE, 'plain'].sort((a, b) => a.localeCompare(b));

const live: TestAgent[] = [];
afterEach(async () => {
  for (const t of live.splice(0).reverse()) await t.dispose();
});

async function agent(opts: Parameters<typeof createTestAgent>[0] = {}): Promise<TestAgent> {
  const t = await createTestAgent({ fixture: 'hostile-names', ...opts });
  live.push(t);
  return t;
}

function recordingHost(): UiHost & { clipboard: string[] } {
  const clipboard: string[] = [];
  return {
    clipboard,
    writeClipboard: (t) => void clipboard.push(t),
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

describe('VM names that are Object.prototype members', () => {
  it('are plain names to the settings, the snapshot, the ssh config, the CLI and the app', async () => {
    const t = await agent({ settings: { sshUser: { plain: 'root' } } });
    const snap = t.agent.snapshot();
    expect(snap.vms.map((v) => v.name)).toEqual(ALL);
    // Nobody asked for them to start, and no setting says they have a user of their own.
    for (const v of snap.vms) expect([v.name, v.state, v.autostart]).toEqual([v.name, 'stopped', false]);

    // Settings keyed by these names are the user's keys, not the prototype's.
    const saved = await t.agent.call('setSettings', {
      autostart: JSON.parse('{"__proto__": true, "constructor": false}'),
      sshUser: JSON.parse('{"toString": "zoe", "plain": "root"}'),
    });
    expect(Object.hasOwn(saved.autostart, '__proto__')).toBe(true);
    expect(Object.keys(saved.autostart)).toEqual(['__proto__', 'constructor']);
    const onDisk = JSON.parse(fs.readFileSync(path.join(t.root, 'settings.json'), 'utf8'));
    expect(Object.keys(onDisk.autostart)).toEqual(['__proto__', 'constructor']);
    await t.waitFor((s) => s.vms.find((v) => v.name === '__proto__')?.autostart === true, undefined, 'autostart shown');
    expect(t.vm('constructor').autostart).toBe(false);

    // Every one runs, and each has its alias in nixvm's ssh config, with its own user.
    for (const name of ALL) expect((await t.agent.call('start', { vm: name })).state).toBe('running');
    const sshConfig = t.agent.snapshot().agent.sshConfig.path;
    const text = await waitFor(
      () => {
        const s = fs.existsSync(sshConfig) ? fs.readFileSync(sshConfig, 'utf8') : '';
        return (s.match(/^Host /gm)?.length ?? 0) === ALL.length ? s : null;
      },
      { what: 'an ssh config with an entry per VM', detail: () => JSON.stringify(t.agent.snapshot().agent.problems) },
    );
    expect(text).toContain('# VM "constructor"\nHost nixvm-constructor\n');
    expect(text).toMatch(/# VM "toString"\nHost nixvm-tostring\n {2}HostName [^\n]+\n {2}User zoe\n/);
    expect(text).toMatch(/# VM "__proto__"\nHost nixvm-__proto__\n {2}HostName [^\n]+\n {2}User alice\n/);
    expect(t.agent.snapshot().agent.problems).toEqual([]);
    for (const name of HOSTILE) {
      const { target } = await t.agent.call('sshCommand', { vm: name });
      expect(target.user, name).toBe(name === 'toString' ? 'zoe' : 'alice');
    }

    // The CLI, over the same agent.
    const out = collect();
    const err = collect();
    const code = await main(['status', 'hasOwnProperty'], {
      stdout: out,
      stderr: err,
      connect: async () => t.agent,
      defaultSocketPath: async () => '/unused',
    });
    expect(code, err.text()).toBe(0);
    expect(out.text()).toMatch(/^hasOwnProperty\n {2}state: +running/);
    expect(out.text()).toContain('-l alice');

    // The app's dispatch, as a window would ask.
    const host = recordingHost();
    const d = new IpcDispatcher(t.agent, createUiHandlers(t.agent, host));
    const client = { id: 1, send: () => {} };
    for (const name of HOSTILE) {
      const r = await d.handle('nixvm:ui', { verb: 'copySshCommand', params: { vm: name } }, client);
      expect(r, name).toMatchObject({ ok: true });
      expect(host.clipboard.at(-1)).toContain(name === 'toString' ? '-l zoe' : '-l alice');
      expect(await d.handle('nixvm:call', { method: 'stop', params: { vm: name } }, client)).toMatchObject({
        ok: true,
        value: { name, state: 'stopped' },
      });
    }
    const sub = await d.handle('nixvm:subscribe', { logs: [{ vm: '__proto__', kind: 'console' }] }, client);
    expect(sub).toEqual({ ok: true, value: null });
    d.dropAll();
  });

  it('autostart after a restart starts only the VM the setting names', async () => {
    const first = await agent({
      settings: { autostart: JSON.parse('{"__proto__": true}') },
      agent: { autostart: false },
    });
    await first.close();
    live.splice(live.indexOf(first), 1);
    const t = await agent({ root: first.root, flake: first.flake });
    await t.waitFor((s) => s.vms.find((v) => v.name === '__proto__')?.state === 'running', undefined, '__proto__ up');
    for (const name of ALL.filter((n) => n !== '__proto__')) expect(t.vm(name).state, name).toBe('stopped');
  });
});
