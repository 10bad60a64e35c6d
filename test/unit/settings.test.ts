import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Settings } from '../../src/api/types.ts';
import { AgentError } from '../../src/api/errors.ts';
import Conf from 'conf';
import {
  SETTINGS_SCHEMA,
  checkValue,
  defaultSettings,
  filterConfigurations,
  setConfigurationList,
  validateSettingsPatch,
} from '../../src/api/settings-schema.ts';
import { SettingsStore } from '../../src/core/settings.ts';
import { type Truthy, waitFor } from '../helpers/wait.ts';

let dir: string;
const stores: SettingsStore[] = [];

function open(opts: { watch?: boolean; now?: () => Date } = {}): SettingsStore {
  const s = new SettingsStore({ dir, watch: opts.watch ?? false, ...(opts.now ? { now: opts.now } : {}) });
  stores.push(s);
  return s;
}

function settingsFile(): string {
  return path.join(dir, 'settings.json');
}

function readFileJson(): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(settingsFile(), 'utf8')) as Record<string, unknown>;
}

/** Another process edits the file the way an editor saves (write temp, rename). */
function editFromOtherProcess(text: string): void {
  const script = `
    const fs = require('node:fs');
    const [file, text] = process.argv.slice(1);
    fs.writeFileSync(file + '.tmp', text);
    fs.renameSync(file + '.tmp', file);`;
  const r = spawnSync(process.execPath, ['-e', script, settingsFile(), text], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

function until<T>(what: string, fn: () => T | undefined | false): Promise<Truthy<T>> {
  return waitFor(fn, { what });
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'settings-'));
});

afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('SettingsStore', () => {
  it('starts from documented defaults and writes them to settings.json', () => {
    const s = open();
    const expected: Settings = {
      flakes: [],
      autoRebuild: 'off',
      autostart: {},
      sshUser: {},
      sshKeyCredential: {},
      stopTimeoutSec: 30,
      bridgeInterface: null,
      onQuit: 'keep',
      nixPath: null,
      vfkitPath: null,
      terminalApp: 'Terminal',
      sharedDir: {},
      includeConfigurations: {},
      excludeConfigurations: {},
      builderVm: null,
      builderNixpkgs: 'github:NixOS/nixpkgs/nixpkgs-unstable',
    };
    expect(s.get()).toEqual(expected);
    expect(defaultSettings()).toEqual(expected);
    expect(s.path).toBe(settingsFile());
    expect(readFileJson()).toMatchObject(expected);
    expect(s.warnings).toEqual([]);
  });

  it('uses <configDir>/settings.json from NIXVM_STATE_DIR when no dir is given', () => {
    const before = process.env.NIXVM_STATE_DIR;
    process.env.NIXVM_STATE_DIR = dir;
    try {
      const s = new SettingsStore({ watch: false });
      stores.push(s);
      expect(s.path).toBe(path.join(dir, 'settings.json'));
      expect(fs.existsSync(s.path)).toBe(true);
    } finally {
      if (before === undefined) delete process.env.NIXVM_STATE_DIR;
      else process.env.NIXVM_STATE_DIR = before;
    }
  });

  it('stores valid changes, tells listeners, and a new store reads them back', () => {
    const s = open();
    const seen: Array<[Settings, Settings]> = [];
    s.onChange((now, prev) => seen.push([now, prev]));
    const after = s.update({
      flakes: ['/Users/me/vms/'],
      autoRebuild: 'restart',
      autostart: { web: true },
      stopTimeoutSec: 5,
    });
    expect(after.flakes).toEqual(['/Users/me/vms']);
    expect(after.autoRebuild).toBe('restart');
    expect(after.terminalApp).toBe('Terminal');
    expect(seen).toHaveLength(1);
    expect(seen[0]?.[0].autostart).toEqual({ web: true });
    expect(seen[0]?.[1].autostart).toEqual({});
    // The same values again change nothing and tell no one.
    s.update({ autoRebuild: 'restart' });
    expect(seen).toHaveLength(1);
    expect(open().get()).toEqual(after);
  });

  it('hands out copies: mutating what get() returned changes nothing', () => {
    const s = open();
    const got = s.get();
    got.flakes.push('/x');
    expect(s.get().flakes).toEqual([]);
  });

  const invalid: Array<[Record<string, unknown>, string, string]> = [
    [{ stopTimeoutSec: 0 }, 'stopTimeoutSec', 'at least 1'],
    [{ stopTimeoutSec: '30' }, 'stopTimeoutSec', 'a number'],
    [{ autoRebuild: 'always' }, 'autoRebuild', '"off", "build", "apply", "restart"'],
    [{ onQuit: 'pause' }, 'onQuit', '"keep", "stop"'],
    [{ flakes: ['relative/dir'] }, 'flakes[0]', 'absolute path'],
    [{ flakes: '/one/dir' }, 'flakes', 'a list'],
    [{ flakes: ['/a', '/a/'] }, 'flakes', 'twice'],
    [{ autostart: { web: 'yes' } }, 'autostart.web', 'true or false'],
    [{ sshUser: { web: '-oProxyCommand=touch /tmp/x' } }, 'sshUser.web', 'user name'],
    [{ bridgeInterface: 'bridge 100' }, 'bridgeInterface', 'interface name'],
    [{ nixPath: 'nix' }, 'nixPath', 'absolute path'],
    [{ vfkitPath: 7 }, 'vfkitPath', 'a string or null'],
    [{ terminalApp: '' }, 'terminalApp', 'must not be empty'],
    [{ colour: 'blue' }, '"colour"', 'no setting named'],
  ];

  it('phrases exactly what the JSON schema given to conf (ajv) enforces', () => {
    const conf = new Conf<Record<string, unknown>>({
      cwd: dir,
      configName: 'ajv-check',
      schema: SETTINGS_SCHEMA as never,
      ajvOptions: { allowUnionTypes: true },
      accessPropertiesByDotNotation: false,
    });
    const cases: Array<[string, unknown]> = [
      ...invalid.filter(([p]) => !('colour' in p)).map(([p]) => Object.entries(p)[0] as [string, unknown]),
      ['flakes', ['/a', '/b']],
      ['sshUser', { web: 'alice', db: 'postgres_1' }],
      ['bridgeInterface', null],
      ['stopTimeoutSec', 2.5],
      ['terminalApp', 'iTerm'],
    ];
    for (const [k, v] of cases) {
      const ours = checkValue(k, SETTINGS_SCHEMA[k as keyof typeof SETTINGS_SCHEMA], v) === null;
      let theirs = true;
      try {
        conf.set(k, v);
      } catch {
        theirs = false;
      }
      expect(ours, `${k} = ${JSON.stringify(v)}`).toBe(theirs);
    }
  });

  it.each(invalid)('refuses %j with one sentence naming %s, storing nothing', (partial, field, phrase) => {
    const s = open();
    s.update({ autoRebuild: 'build' });
    const fileBefore = fs.readFileSync(settingsFile(), 'utf8');
    let changes = 0;
    s.onChange(() => changes++);
    let err: unknown;
    try {
      // A valid field alongside: nothing at all is stored when one field is wrong.
      s.update({ terminalApp: 'iTerm', ...partial });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AgentError);
    const e = err as AgentError;
    expect(e.code).toBe('bad-request');
    expect(e.message).toContain(field);
    expect(e.message).toContain(phrase);
    expect(e.message.trim().endsWith('.')).toBe(true);
    expect(e.message.split('. ').length).toBe(1);
    expect(s.get().terminalApp).toBe('Terminal');
    expect(s.get().autoRebuild).toBe('build');
    expect(fs.readFileSync(settingsFile(), 'utf8')).toBe(fileBefore);
    expect(changes).toBe(0);
  });

  it('accepts null for the nullable fields and clears them again', () => {
    const s = open();
    s.update({ nixPath: '/nix/var/nix/profiles/default/bin/nix', bridgeInterface: 'bridge101' });
    expect(s.get().nixPath).toBe('/nix/var/nix/profiles/default/bin/nix');
    const back = s.update({ nixPath: null, bridgeInterface: null });
    expect(back.nixPath).toBeNull();
    expect(back.bridgeInterface).toBeNull();
  });

  it('moves a file that is not JSON aside, warns where it went, loads defaults, and leaves other files alone', () => {
    const broken = '{ "flakes": ["/Users/me/vms"], "autoRebuild": ';
    fs.writeFileSync(settingsFile(), broken);
    fs.mkdirSync(path.join(dir, 'state', 'vms', 'web'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'state', 'vms', 'web', 'booted.json'), '{"keep":1}');
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');

    const s = open({ now: () => new Date('2030-01-02T03:04:05.678Z') });
    const aside = `${settingsFile()}.corrupt-2030-01-02T03-04-05-678Z`;
    expect(s.get()).toEqual(defaultSettings());
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toContain('not valid JSON');
    expect(s.warnings[0]).toContain(aside);
    expect(fs.readFileSync(aside, 'utf8')).toBe(broken);
    expect(readFileJson()).toMatchObject({ autoRebuild: 'off' });
    expect(fs.readFileSync(path.join(dir, 'state', 'vms', 'web', 'booted.json'), 'utf8')).toBe('{"keep":1}');
    expect(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8')).toBe('mine');
    expect(fs.readdirSync(dir).sort()).toEqual([
      'notes.txt',
      'settings.json',
      'settings.json.corrupt-2030-01-02T03-04-05-678Z',
      'state',
    ]);
  });

  it('moves a file that breaks the schema aside, naming the field, and keeps its good fields', () => {
    const bad = JSON.stringify({
      flakes: ['/ok'],
      stopTimeoutSec: -5,
      autoRebuild: 'sometimes',
      onQuit: 'stop',
      futureKnob: 1,
    });
    fs.writeFileSync(settingsFile(), bad);
    const s = open();
    expect(s.get().stopTimeoutSec).toBe(30);
    expect(s.get().autoRebuild).toBe('off');
    // One mistyped value must not also cost the user their flakes.
    expect(s.get().flakes).toEqual(['/ok']);
    expect(s.get().onQuit).toBe('stop');
    expect(readFileJson()).toMatchObject({ flakes: ['/ok'], onQuit: 'stop', futureKnob: 1, stopTimeoutSec: 30 });
    expect(s.warnings[0]).toContain('stopTimeoutSec must be at least 1');
    expect(s.warnings[0]).toContain('defaults for stopTimeoutSec, autoRebuild');
    const asides = fs.readdirSync(dir).filter((f) => f.startsWith('settings.json.corrupt-'));
    expect(asides).toHaveLength(1);
    expect(fs.readFileSync(path.join(dir, asides[0] as string), 'utf8')).toBe(bad);
  });

  it('keeps a good file with keys from a newer version as it is', () => {
    fs.writeFileSync(settingsFile(), JSON.stringify({ flakes: ['/a'], futureKnob: 3 }));
    const s = open();
    expect(s.warnings).toEqual([]);
    expect(s.get().flakes).toEqual(['/a']);
    s.update({ onQuit: 'stop' });
    expect(readFileJson()).toMatchObject({ flakes: ['/a'], futureKnob: 3, onQuit: 'stop' });
  });

  it('an update over a file broken since loading moves it aside and stores last-good settings plus the change', () => {
    const s = open();
    s.update({ flakes: ['/a'] });
    fs.writeFileSync(settingsFile(), 'garbage');
    const after = s.update({ onQuit: 'stop' });
    expect(after).toMatchObject({ flakes: ['/a'], onQuit: 'stop' });
    expect(readFileJson()).toMatchObject({ flakes: ['/a'], onQuit: 'stop' });
    expect(s.warnings.join('\n')).toContain('moved to');
    expect(fs.readdirSync(dir).filter((f) => f.includes('corrupt'))).toHaveLength(1);
  });

  // Issue 16 (Low): the warning said "default settings were loaded" while the old ones were kept.
  it('says the current settings were kept when an update had to move a broken file aside', () => {
    const s = open();
    s.update({ flakes: ['/a'] });
    fs.writeFileSync(settingsFile(), 'garbage');
    s.update({ onQuit: 'stop' });
    const w = s.warnings.join('\n');
    expect(w).toContain('your current settings (with this change) were written in its place');
    expect(w).not.toContain('default settings were loaded');
  });

  // Issue 16 (Low): settings.json was written 0644 while the rest of the state is private.
  it('writes settings.json 0600, and tightens one an older version left readable', () => {
    const s = open();
    s.update({ flakes: ['/a'] });
    expect(fs.statSync(settingsFile()).mode & 0o777).toBe(0o600);
    s.close();
    fs.chmodSync(settingsFile(), 0o644);
    open();
    expect(fs.statSync(settingsFile()).mode & 0o777).toBe(0o600);
  });

  // Issue 16 (Medium): EISDIR escaped the settings watcher and took the agent down.
  it('survives settings.json being replaced by a folder while it runs: one sentence, the settings stay', async () => {
    const s = open({ watch: true });
    s.update({ flakes: ['/good'] });
    const warnings: string[] = [];
    s.onWarning((w) => warnings.push(w));
    const crashes: unknown[] = [];
    const onCrash = (e: unknown) => crashes.push(e);
    process.on('uncaughtException', onCrash);
    try {
      fs.rmSync(settingsFile());
      fs.mkdirSync(settingsFile());
      fs.writeFileSync(path.join(settingsFile(), 'inside'), 'x');
      await until('a warning about the folder', () => warnings.length > 0);
      expect(warnings[0]).toMatch(
        /^The settings file .*settings\.json has an error \(it cannot be read: a folder is where a file should be; move the folder away\)/,
      );
      expect(warnings[0]).not.toMatch(/EISDIR/);
      expect(s.get().flakes).toEqual(['/good']);
      // Saving now moves the folder aside and writes the settings in effect.
      expect(s.update({ onQuit: 'stop' })).toMatchObject({ flakes: ['/good'], onQuit: 'stop' });
      expect(fs.statSync(settingsFile()).isFile()).toBe(true);
      expect(crashes).toEqual([]);
    } finally {
      process.off('uncaughtException', onCrash);
    }
  });

  it('writes the settings in effect back when settings.json is deleted (with its folder), instead of falling back to defaults', async () => {
    const s = open({ watch: true });
    s.update({ flakes: ['/keep-me'] });
    const seen: Settings[] = [];
    s.onChange((now) => seen.push(now));
    fs.rmSync(settingsFile());
    await until('settings.json to be written back', () => fs.existsSync(settingsFile()));
    expect(readFileJson()).toMatchObject({ flakes: ['/keep-me'] });
    expect(s.get().flakes).toEqual(['/keep-me']);
    expect(seen.filter((x) => x.flakes.length === 0)).toEqual([]);
  });

  it('applies an edit made by another process live', async () => {
    const s = open({ watch: true });
    const seen: Settings[] = [];
    s.onChange((now) => seen.push(now));
    editFromOtherProcess(JSON.stringify({ ...defaultSettings(), autoRebuild: 'build', flakes: ['/from/editor'] }));
    const got = await until('the change to arrive', () => seen.at(-1));
    expect(got.autoRebuild).toBe('build');
    expect(got.flakes).toEqual(['/from/editor']);
    expect(s.get().flakes).toEqual(['/from/editor']);
  });

  it('keeps the last good settings through a broken edit, warns, and recovers when it is fixed', async () => {
    const s = open({ watch: true });
    s.update({ flakes: ['/good'] });
    const warnings: string[] = [];
    s.onWarning((w) => warnings.push(w));
    const seen: Settings[] = [];
    s.onChange((now) => seen.push(now));

    editFromOtherProcess('{ "flakes": [');
    await until('a warning', () => warnings.length > 0);
    expect(warnings[0]).toContain('has an error');
    expect(s.warnings.join('\n')).toContain('previous settings stay in effect');
    expect(s.get().flakes).toEqual(['/good']);
    // Not moved aside while the user may still be editing it.
    expect(fs.readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);

    editFromOtherProcess(JSON.stringify({ flakes: ['/fixed'] }));
    await until('the fix to arrive', () => seen.at(-1)?.flakes[0] === '/fixed');
    expect(s.warnings).toEqual([]);

    // Valid JSON that breaks the schema is refused the same way (our checks, not conf's).
    warnings.length = 0;
    editFromOtherProcess(JSON.stringify({ flakes: ['/fixed'], sshUser: { web: '-oProxyCommand=x' } }));
    await until('a schema warning', () => warnings.length > 0);
    expect(warnings[0]).toContain('sshUser.web must be a user name');
    expect(s.get().sshUser).toEqual({});
  });
});

describe('which configurations of a flake are VMs (include / exclude)', () => {
  const A = '/flakes/a';
  const B = '/flakes/b';
  const cur = {
    includeConfigurations: { [A]: ['laptop'], [B]: ['x'] },
    excludeConfigurations: { [A]: ['old-vm'] },
  };

  it('include, exclude and default move a name between the lists, one list at most, other flakes untouched', () => {
    expect(filterConfigurations(cur, A, ['old-vm', 'server'], 'include')).toEqual({
      includeConfigurations: { [A]: ['laptop', 'old-vm', 'server'], [B]: ['x'] },
      excludeConfigurations: {},
    });
    expect(filterConfigurations(cur, A, ['laptop'], 'exclude')).toEqual({
      includeConfigurations: { [B]: ['x'] },
      excludeConfigurations: { [A]: ['old-vm', 'laptop'] },
    });
    expect(filterConfigurations(cur, A, ['laptop', 'old-vm'], 'default')).toEqual({
      includeConfigurations: { [B]: ['x'] },
      excludeConfigurations: {},
    });
    // Asking twice changes nothing more.
    const once = filterConfigurations(cur, A, ['laptop'], 'include');
    expect(filterConfigurations(once, A, ['laptop'], 'include')).toEqual(once);
  });

  it("the settings window's field sets a list whole, as typed: a name given twice is the schema's to refuse", () => {
    expect(setConfigurationList(cur, A, 'exclude', ['laptop', 'dev'])).toEqual({
      includeConfigurations: { [B]: ['x'] },
      excludeConfigurations: { [A]: ['laptop', 'dev'] },
    });
    expect(setConfigurationList(cur, A, 'include', [])).toEqual({
      includeConfigurations: { [B]: ['x'] },
      excludeConfigurations: { [A]: ['old-vm'] },
    });
    const twice = setConfigurationList(cur, A, 'include', ['laptop', 'laptop']);
    expect(() => validateSettingsPatch(twice)).toThrow(
      new AgentError('bad-request', `Setting includeConfigurations.${A} lists "laptop" twice.`),
    );
  });
});
