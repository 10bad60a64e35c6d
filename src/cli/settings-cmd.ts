/**
 * Settings without the app: `nixvm flake add|remove|ls|include|exclude|default` and
 * `nixvm config get|set|unset`. Through the running agent when there is one (validated there and
 * applied at once), else straight into settings.json, validated by the same schema
 * (src/api/settings-schema.ts), for the agent to read when it starts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type Command, Option } from 'commander';
import { flakeSentence } from '../api/describe.ts';
import {
  SETTINGS_KEYS,
  SETTINGS_SCHEMA,
  defaultSettings,
  filterConfigurations,
  validateSettingsPatch,
  type FieldSchema,
} from '../api/settings-schema.ts';
import type { Settings } from '../api/types.ts';
import { CliError, EXIT } from './errors.ts';
import { commandName, visibleName } from './format.ts';
import type { Session } from './app.ts';

/** Where settings are read and written: the agent (live) or the file. */
export interface SettingsAccess {
  /** 'agent', or the path of settings.json. */
  where: string;
  get(): Promise<Settings>;
  set(patch: Partial<Settings>): Promise<Settings>;
  close(): void;
}

export async function settingsAccess(s: Session): Promise<SettingsAccess> {
  const port = await s.maybePort();
  if (port) {
    return {
      where: 'agent',
      get: () => port.call('getSettings', {}),
      // Checked here too (the agent checks again): the same sentence with or without an agent.
      set: async (patch) => port.call('setSettings', validateSettingsPatch(patch)),
      close: () => {},
    };
  }
  const file = await s.io.settingsFile(s.io.env);
  return {
    where: file.path,
    get: async () => file.get(),
    set: async (patch) => file.update(patch),
    close: () => file.close(),
  };
}

function savedWhere(a: SettingsAccess): string {
  return a.where === 'agent' ? 'the agent applied it' : `saved in ${a.where}; the agent reads it when it starts`;
}

/** What a settings command reports: its lines, or with --json the settings now and where they live. */
function report(s: Session, a: SettingsAccess, settings: Settings, json: boolean | undefined, lines: string[]): void {
  if (json) s.json({ where: a.where, settings });
  else for (const l of lines) s.out(l);
}

type Act = <A extends unknown[]>(fn: (...args: A) => Promise<number>) => (...args: A) => Promise<void>;

async function withSettings<T>(s: Session, fn: (a: SettingsAccess) => Promise<T>): Promise<T> {
  const a = await settingsAccess(s);
  try {
    return await fn(a);
  } finally {
    a.close();
  }
}

/** A flake directory as given (relative to where nixvm runs, `~` for home), checked to hold a flake.nix. */
function flakeDir(s: Session, dir: string, mustExist: boolean): string {
  const home = s.io.env.HOME ?? '';
  const abs = path.resolve(s.io.cwd, dir === '~' ? home : dir.startsWith('~/') ? path.join(home, dir.slice(2)) : dir);
  if (mustExist) {
    if (!fs.existsSync(abs))
      throw new CliError(EXIT.failed, `${abs} does not exist; give the directory that holds your flake.nix.`);
    if (!fs.existsSync(path.join(abs, 'flake.nix'))) {
      throw new CliError(EXIT.failed, `${abs} has no flake.nix; give the directory that holds your flake.nix.`);
    }
  }
  return abs;
}

/** The value a `config set` argument means for a field of this schema: JSON for lists and objects. */
function parseValue(key: string, schema: FieldSchema, raw: string): unknown {
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if (types.includes('null') && raw === 'null') return null;
  if (types.includes('number') || types.includes('integer'))
    return raw.trim() === '' ? raw : Number.isNaN(Number(raw)) ? raw : Number(raw);
  if (types.includes('boolean')) return raw === 'true' ? true : raw === 'false' ? false : raw;
  if (types.includes('array') || types.includes('object')) {
    try {
      return JSON.parse(raw);
    } catch {
      throw new CliError(
        EXIT.usage,
        `${key} takes JSON (${types.includes('array') ? 'a list, e.g. \'["a", "b"]\'' : 'an object'}), which ${JSON.stringify(raw)} is not.`,
      );
    }
  }
  return raw;
}

/** `name` or `name.sub` (an entry of a by-VM or by-flake setting), checked against the schema. */
function settingKey(key: string): { name: keyof Settings; sub: string | null } {
  const dot = key.indexOf('.');
  const name = (dot < 0 ? key : key.slice(0, dot)) as keyof Settings;
  const sub = dot < 0 ? null : key.slice(dot + 1);
  if (!Object.hasOwn(SETTINGS_SCHEMA, name)) {
    throw new CliError(
      EXIT.usage,
      `There is no setting named ${JSON.stringify(name)}; known settings are ${SETTINGS_KEYS.join(', ')}.`,
    );
  }
  const schema: FieldSchema = SETTINGS_SCHEMA[name];
  if (sub !== null && !schema.additionalProperties) {
    throw new CliError(
      EXIT.usage,
      `${name} is not a setting by name, so ${key} means nothing; use \`nixvm config set ${name} VALUE\`.`,
    );
  }
  if (sub === '') throw new CliError(EXIT.usage, `${key} needs a name after the dot.`);
  return { name, sub };
}

function show(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export function registerSettingsCommands(program: Command, s: Session, act: Act): void {
  const json = (): Option => new Option('--json', 'print JSON instead of text');

  const flake = program
    .command('flake')
    .description('the flake folders the agent runs: add, remove, ls, include, exclude, default');

  flake
    .command('ls')
    .description('the flakes, where each stands, their VMs and hidden configurations')
    .addOption(json())
    .action(
      act(async (opts: { json?: boolean }) => {
        const port = await s.maybePort();
        if (port) {
          const snap = await port.call('snapshot', {});
          if (opts.json)
            s.json(
              snap.flakes.map((f) => ({ ...f, vms: snap.vms.filter((v) => v.flake === f.dir).map((v) => v.name) })),
            );
          else if (snap.flakes.length === 0) s.out('No flake configured; add one with `nixvm flake add DIR`.');
          else
            for (const f of snap.flakes) {
              const vms = snap.vms.filter((v) => v.flake === f.dir).map((v) => v.name);
              const from = f.source === 'command-line' ? ' (from `daemon --flake`, this run only)' : '';
              s.out(`${f.dir}${from}`);
              s.out(`  VMs: ${vms.length ? vms.map(visibleName).join(', ') : 'none'}`);
              if (f.hidden.length) s.out(`  hidden: ${f.hidden.map(visibleName).join(', ')}`);
              const sentence = flakeSentence(f, s.io.now(), vms.length, commandName);
              if (sentence && (f.error || f.state === 'evaluating')) s.out(`  ${sentence}`);
            }
          return EXIT.ok;
        }
        const settings = await withSettings(s, (a) => a.get());
        if (opts.json) s.json(settings.flakes.map((dir) => ({ dir, source: 'settings' })));
        else if (settings.flakes.length === 0) s.out('No flake configured; add one with `nixvm flake add DIR`.');
        else {
          s.out('(No agent is running; these are the settings. Their VMs show once one runs.)');
          for (const dir of settings.flakes) s.out(dir);
        }
        return EXIT.ok;
      }),
    );

  flake
    .command('add')
    .description('add flake folders to the settings (kept; the agent evaluates them at once)')
    .argument('<dir...>')
    .addOption(json())
    .action(
      act(async (dirs: string[], opts: { json?: boolean }) => {
        const abs = dirs.map((d) => flakeDir(s, d, true));
        await withSettings(s, async (a) => {
          const before = await a.get();
          const added = abs.filter((d) => !before.flakes.includes(d));
          const after = added.length ? await a.set({ flakes: [...before.flakes, ...added] }) : before;
          const lines = abs.map((d) =>
            added.includes(d) ? `Added ${d}; ${savedWhere(a)}.` : `${d} is already in the settings.`,
          );
          report(s, a, after, opts.json, lines);
        });
        return EXIT.ok;
      }),
    );

  flake
    .command('remove')
    .alias('rm')
    .description('remove flake folders from the settings (their running VMs keep running)')
    .argument('<dir...>')
    .addOption(json())
    .action(
      act(async (dirs: string[], opts: { json?: boolean }) => {
        await withSettings(s, async (a) => {
          const cur = await a.get();
          const abs = dirs.map((d) => flakeDir(s, d, false));
          const unknown = abs.filter((d) => !cur.flakes.includes(d));
          if (unknown.length) {
            throw new CliError(
              EXIT.failed,
              `${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not in the settings (${cur.flakes.length ? `they list ${cur.flakes.join(', ')}` : 'they list no flake'}).`,
            );
          }
          let include = cur.includeConfigurations;
          let exclude = cur.excludeConfigurations;
          for (const d of abs) {
            include = Object.fromEntries(Object.entries(include).filter(([k]) => k !== d));
            exclude = Object.fromEntries(Object.entries(exclude).filter(([k]) => k !== d));
          }
          const after = await a.set({
            flakes: cur.flakes.filter((d) => !abs.includes(d)),
            includeConfigurations: include,
            excludeConfigurations: exclude,
          });
          report(
            s,
            a,
            after,
            opts.json,
            abs.map((d) => `Removed ${d}; ${savedWhere(a)}.`),
          );
        });
        return EXIT.ok;
      }),
    );

  const filter = (verb: 'include' | 'exclude' | 'default', description: string): void => {
    flake
      .command(verb)
      .description(description)
      .argument('<dir>', 'the flake folder')
      .argument('<name...>', 'nixosConfigurations entries')
      .addOption(json())
      .action(
        act(async (dir: string, names: string[], opts: { json?: boolean }) => {
          const abs = flakeDir(s, dir, false);
          await withSettings(s, async (a) => {
            const after = await a.set(filterConfigurations(await a.get(), abs, names, verb));
            const what =
              verb === 'include'
                ? 'shown as VMs'
                : verb === 'exclude'
                  ? 'hidden'
                  : 'shown when they set an option nixvm reads';
            report(s, a, after, opts.json, [`${names.join(', ')} of ${abs}: ${what}; ${savedWhere(a)}.`]);
          });
          return EXIT.ok;
        }),
      );
  };
  filter('include', 'show configurations as VMs although they set none of the options nixvm reads');
  filter('exclude', 'hide configurations, even ones that look like VMs');
  filter('default', 'let nixvm decide again from what the configurations set');

  const config = program
    .command('config')
    .description('read and change settings: get, set, unset (validated, applied live)');

  config
    .command('get')
    .description('print a setting (name, or name.entry for a setting by VM or by flake), or all of them')
    .argument('[key]')
    .addOption(json())
    .action(
      act(async (key: string | undefined, opts: { json?: boolean }) => {
        const settings = await withSettings(s, (a) => a.get());
        if (key === undefined) {
          if (opts.json) s.json(settings);
          else for (const k of SETTINGS_KEYS) s.out(`${k} = ${show(settings[k])}`);
          return EXIT.ok;
        }
        const { name, sub } = settingKey(key);
        const whole = settings[name] as unknown;
        const value =
          sub === null
            ? whole
            : Object.hasOwn(whole as object, sub)
              ? (whole as Record<string, unknown>)[sub]
              : undefined;
        if (value === undefined) throw new CliError(EXIT.failed, `${key} is not set.`);
        if (opts.json) s.json(value);
        else s.out(show(value));
        return EXIT.ok;
      }),
    );

  config
    .command('set')
    .description(
      'change a setting: nixvm config set autoRebuild build, … set autostart.<vm> true, … set flakes \'["/a"]\'',
    )
    .argument('<key>')
    .argument('<value>')
    .addOption(json())
    .action(
      act(async (key: string, raw: string, opts: { json?: boolean }) => {
        const { name, sub } = settingKey(key);
        const schema: FieldSchema = SETTINGS_SCHEMA[name];
        await withSettings(s, async (a) => {
          let value: unknown;
          if (sub === null) value = parseValue(key, schema, raw);
          else {
            const cur = (await a.get())[name] as Record<string, unknown>;
            value = { ...cur, [sub]: parseValue(key, schema.additionalProperties!, raw) };
          }
          const after = await a.set({ [name]: value } as Partial<Settings>);
          const shown = show(sub === null ? value : (value as Record<string, unknown>)[sub]);
          report(s, a, after, opts.json, [`${key} = ${shown}; ${savedWhere(a)}.`]);
        });
        return EXIT.ok;
      }),
    );

  config
    .command('unset')
    .description('put a setting back to its default (or remove one entry of a setting by VM or by flake)')
    .argument('<key>')
    .addOption(json())
    .action(
      act(async (key: string, opts: { json?: boolean }) => {
        const { name, sub } = settingKey(key);
        await withSettings(s, async (a) => {
          let value: unknown;
          if (sub === null) value = defaultSettings()[name];
          else {
            const cur = { ...((await a.get())[name] as Record<string, unknown>) };
            delete cur[sub];
            value = cur;
          }
          const after = await a.set({ [name]: value } as Partial<Settings>);
          const what = sub === null ? `= ${show(value)} (the default)` : 'removed';
          report(s, a, after, opts.json, [`${key} ${what}; ${savedWhere(a)}.`]);
        });
        return EXIT.ok;
      }),
    );
}
