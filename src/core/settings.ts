/**
 * The user's settings: <configDir>/settings.json through `conf` (atomic writes, a file watcher)
 * with a JSON schema for every field. conf 16 throws from its constructor on a file that is not
 * JSON or violates the schema, and with `clearInvalidConfig` would silently overwrite it; we do
 * neither: a bad file is moved aside (settings.json.corrupt-<time>), a warning says where, and
 * defaults load. Edits by another process (a text editor, a second CLI) apply live; a broken
 * edit keeps the last good settings and raises a warning until it is fixed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import Conf from 'conf';
import { AgentError, type Settings } from '../api/types.ts';
import { resolvePaths } from '../host/paths.ts';

export const SETTINGS_FILE = 'settings.json';

/** The JSON schema subset we use (and check ourselves, to phrase errors for people). */
export interface FieldSchema {
  type?: 'string' | 'number' | 'integer' | 'boolean' | 'array' | 'object' | ReadonlyArray<'string' | 'null'>;
  enum?: readonly string[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  items?: FieldSchema;
  uniqueItems?: boolean;
  additionalProperties?: FieldSchema;
  default?: unknown;
  description?: string;
}

const ABSOLUTE = '^/';
// A user name that cannot be read as an ssh option (`-oProxyCommand=…`) or split by a shell.
const SSH_USER = '^[A-Za-z0-9_][A-Za-z0-9_.-]*$';
const IFNAME = '^[A-Za-z0-9][A-Za-z0-9._-]*$';

/** What a pattern means, for error sentences. */
const PATTERN_MEANING: Record<string, string> = {
  [ABSOLUTE]: 'an absolute path (starting with /)',
  [SSH_USER]: 'a user name of letters, digits, dots, dashes and underscores that does not start with a dash or dot',
  [IFNAME]: 'a network interface name like bridge100',
};

export const SETTINGS_SCHEMA = {
  flakes: {
    type: 'array',
    items: { type: 'string', minLength: 1, pattern: ABSOLUTE },
    uniqueItems: true,
    default: [],
    description: 'Flake directories whose nixosConfigurations are the VMs.',
  },
  autoRebuild: {
    type: 'string',
    enum: ['off', 'build', 'restart'],
    default: 'off',
    description: 'On a flake change: nothing, build stale VMs, or build and restart running ones.',
  },
  autostart: {
    type: 'object',
    additionalProperties: { type: 'boolean' },
    default: {},
    description: 'VM name → start when the agent starts.',
  },
  sshUser: {
    type: 'object',
    additionalProperties: { type: 'string', minLength: 1, maxLength: 64, pattern: SSH_USER },
    default: {},
    description: 'VM name → ssh user instead of the first normal user.',
  },
  stopTimeoutSec: {
    type: 'number',
    minimum: 1,
    maximum: 3600,
    default: 30,
    description: 'Seconds a guest gets to shut down before a hard stop.',
  },
  bridgeInterface: {
    type: ['string', 'null'],
    minLength: 1,
    maxLength: 15,
    pattern: IFNAME,
    default: null,
    description: 'The vmnet bridge for link-local addresses; null detects it.',
  },
  onQuit: {
    type: 'string',
    enum: ['keep', 'stop'],
    default: 'keep',
    description: 'When the app quits: keep VMs running or stop them.',
  },
  nixPath: {
    type: ['string', 'null'],
    minLength: 1,
    pattern: ABSOLUTE,
    default: null,
    description: 'The nix binary; null finds it.',
  },
  vfkitPath: {
    type: ['string', 'null'],
    minLength: 1,
    pattern: ABSOLUTE,
    default: null,
    description: 'The vfkit binary; null finds it.',
  },
  terminalApp: {
    type: 'string',
    minLength: 1,
    maxLength: 200,
    default: 'Terminal',
    description: 'Terminal used by "Open ssh in Terminal".',
  },
} as const satisfies Record<keyof Settings, FieldSchema>;

export const SETTINGS_KEYS = Object.keys(SETTINGS_SCHEMA) as Array<keyof Settings>;

export function defaultSettings(): Settings {
  const out: Record<string, unknown> = {};
  for (const k of SETTINGS_KEYS) out[k] = structuredClone(SETTINGS_SCHEMA[k].default);
  return out as unknown as Settings;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

function typeName(t: NonNullable<FieldSchema['type']>): string {
  const one = (x: string): string =>
    ({
      string: 'a string',
      number: 'a number',
      integer: 'a whole number',
      boolean: 'true or false',
      array: 'a list',
      object: 'an object',
      null: 'null',
    })[x] ?? x;
  return typeof t === 'string' ? one(t) : t.map(one).join(' or ');
}

function hasType(v: unknown, t: string): boolean {
  switch (t) {
    case 'null':
      return v === null;
    case 'array':
      return Array.isArray(v);
    case 'object':
      return v !== null && typeof v === 'object' && !Array.isArray(v);
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    default:
      return typeof v === t;
  }
}

/**
 * Check `value` against `schema`; the problem as the end of a sentence ("must be …, got …"),
 * prefixed by where (`name`), or null. Mirrors what ajv enforces inside conf for the same schema.
 */
export function checkValue(name: string, schema: FieldSchema, value: unknown): string | null {
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => hasType(value, t)))
      return `${name} must be ${typeName(schema.type)}, got ${describe(value)}`;
    if (value === null) return null;
  }
  if (schema.enum && !schema.enum.includes(value as string)) {
    return `${name} must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${describe(value)}`;
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum)
      return `${name} must be at least ${schema.minimum}, got ${value}`;
    if (schema.maximum !== undefined && value > schema.maximum)
      return `${name} must be at most ${schema.maximum}, got ${value}`;
  }
  if (typeof value === 'string') {
    // JSON schema counts code points.
    const len = [...value].length;
    if (schema.minLength !== undefined && len < schema.minLength) return `${name} must not be empty`;
    if (schema.maxLength !== undefined && len > schema.maxLength)
      return `${name} must be at most ${schema.maxLength} characters, got ${len}`;
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) {
      return `${name} must be ${PATTERN_MEANING[schema.pattern] ?? `text matching ${schema.pattern}`}, got ${describe(value)}`;
    }
  }
  if (Array.isArray(value)) {
    if (schema.items) {
      for (const [i, item] of value.entries()) {
        const p = checkValue(`${name}[${i}]`, schema.items, item);
        if (p) return p;
      }
    }
    if (schema.uniqueItems) {
      for (let i = 0; i < value.length; i++) {
        for (let j = 0; j < i; j++) {
          if (isDeepStrictEqual(value[i], value[j])) return `${name} lists ${describe(value[i])} twice`;
        }
      }
    }
  }
  if (schema.additionalProperties && hasType(value, 'object')) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const p = checkValue(`${name}.${k}`, schema.additionalProperties, v);
      if (p) return p;
    }
  }
  return null;
}

/** Every problem with a whole stored settings object (unknown keys are left alone, for newer versions). */
export function checkSettings(obj: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const k of SETTINGS_KEYS) {
    if (!(k in obj)) continue;
    const p = checkValue(k, SETTINGS_SCHEMA[k], obj[k]);
    if (p) out.push(p);
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function pick(store: Record<string, unknown>): Settings {
  const out = defaultSettings() as unknown as Record<string, unknown>;
  for (const k of SETTINGS_KEYS) if (store[k] !== undefined) out[k] = structuredClone(store[k]);
  return out as unknown as Settings;
}

export interface SettingsStoreOptions {
  /** Directory holding settings.json (default: resolvePaths().configDir). */
  dir?: string;
  /** Watch the file for edits by other processes (default true). */
  watch?: boolean;
  /** Clock for the corrupt-<timestamp> suffix (tests). */
  now?: () => Date;
}

type ChangeFn = (settings: Settings, previous: Settings) => void;

export class SettingsStore {
  readonly path: string;
  readonly #conf: Conf<Settings>;
  readonly #now: () => Date;
  readonly #listeners = new Set<ChangeFn>();
  readonly #warningListeners = new Set<(warning: string) => void>();
  /** Warnings from moving bad files aside: they stay for the agent's lifetime. */
  readonly #movedAside: string[] = [];
  /** The file on disk is broken right now (an edit in progress): cleared when it is fixed. */
  #liveProblem: string | null = null;
  #current: Settings;

  constructor(options: SettingsStoreOptions = {}) {
    const dir = options.dir ?? resolvePaths().configDir;
    this.path = path.join(dir, SETTINGS_FILE);
    this.#now = options.now ?? (() => new Date());
    fs.mkdirSync(dir, { recursive: true });
    const problem = this.#fileProblem();
    if (problem) this.#moveAside(problem, this.#salvage());
    this.#conf = this.#openConf(dir, options.watch ?? true);
    this.#current = pick(this.#conf.store as unknown as Record<string, unknown>);
    // Our own writes and conf's watcher (edits from elsewhere) both arrive here.
    this.#conf.events.addEventListener('change', () => this.#reload());
  }

  /** Problems the user should hear about (a corrupt file moved aside, a broken edit). */
  get warnings(): string[] {
    return this.#liveProblem ? [...this.#movedAside, this.#liveProblem] : [...this.#movedAside];
  }

  /** A copy of the current settings. */
  get(): Settings {
    return structuredClone(this.#current);
  }

  /**
   * Validate and store `partial`. Throws AgentError('bad-request', one sentence naming the field)
   * and stores nothing when any field is wrong.
   */
  update(partial: unknown): Settings {
    if (!isPlainObject(partial)) {
      throw new AgentError('bad-request', 'Settings must be given as an object of fields to change.');
    }
    const changes: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(partial)) {
      if (!Object.hasOwn(SETTINGS_SCHEMA, k)) {
        throw new AgentError(
          'bad-request',
          `There is no setting named ${JSON.stringify(k)}; known settings are ${SETTINGS_KEYS.join(', ')}.`,
        );
      }
      if (v === undefined) continue;
      const p = checkValue(k, SETTINGS_SCHEMA[k as keyof Settings], v);
      if (p) throw new AgentError('bad-request', `Setting ${p}.`);
      changes[k] = k === 'flakes' ? (v as string[]).map((d) => path.resolve(d)) : structuredClone(v);
    }
    if (Object.keys(changes).length === 0) return this.get();
    if (changes.flakes) {
      const p = checkValue('flakes', SETTINGS_SCHEMA.flakes, changes.flakes);
      if (p) throw new AgentError('bad-request', `Setting ${p}.`);
    }
    try {
      this.#conf.set(changes as Partial<Settings>);
    } catch (err) {
      // conf reads the file before writing; a file broken since we loaded it is moved aside,
      // then our settings (last good + these changes) are written whole.
      const problem = this.#fileProblem();
      if (!problem) throw err;
      this.#moveAside(problem);
      this.#conf.store = { ...this.#current, ...changes } as Settings;
    }
    this.#reload();
    return this.get();
  }

  /** `fn(settings, previous)` after every change, ours or another process's. Returns unsubscribe. */
  onChange(fn: ChangeFn): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** `fn(warning)` when a new warning appears. Returns unsubscribe. */
  onWarning(fn: (warning: string) => void): () => void {
    this.#warningListeners.add(fn);
    return () => this.#warningListeners.delete(fn);
  }

  /** Stop watching the file. */
  close(): void {
    this.#conf._closeWatcher();
  }

  #openConf(dir: string, watch: boolean): Conf<Settings> {
    const make = () =>
      new Conf<Settings>({
        cwd: dir,
        configName: path.basename(SETTINGS_FILE, '.json'),
        schema: SETTINGS_SCHEMA as never,
        // ajv: our nullable fields are `type: [T, 'null']`.
        ajvOptions: { allowUnionTypes: true },
        // We move bad files aside ourselves; conf's clearing would overwrite them unseen.
        clearInvalidConfig: false,
        accessPropertiesByDotNotation: false,
        watch,
      });
    try {
      return make();
    } catch (err) {
      // Our own check and ajv disagree, or the file changed under us: same remedy, once.
      const problem = this.#fileProblem() ?? (err instanceof Error ? err.message : String(err));
      if (!fs.existsSync(this.path)) throw err;
      this.#moveAside(problem);
      return make();
    }
  }

  /** What is wrong with settings.json right now, or null (missing counts as fine). */
  #fileProblem(): string | null {
    let text: string;
    try {
      text = fs.readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    let data: unknown;
    try {
      data = JSON.parse(text.replace(/^\uFEFF/, ''));
    } catch (err) {
      return `it is not valid JSON (${(err as Error).message})`;
    }
    if (!isPlainObject(data)) return 'it does not hold a JSON object';
    const problems = checkSettings(data);
    return problems.length ? problems.join('; ') : null;
  }

  /**
   * The fields of a file that is JSON but breaks the schema that are still good (unknown keys
   * included), so one mistyped value does not also cost the user their flakes; null otherwise.
   */
  #salvage(): { kept: Record<string, unknown>; reset: string[] } | null {
    let data: unknown;
    try {
      data = JSON.parse(fs.readFileSync(this.path, 'utf8').replace(/^\uFEFF/, ''));
    } catch {
      return null;
    }
    if (!isPlainObject(data)) return null;
    const kept: Record<string, unknown> = {};
    const reset: string[] = [];
    for (const [k, v] of Object.entries(data)) {
      if (Object.hasOwn(SETTINGS_SCHEMA, k) && checkValue(k, SETTINGS_SCHEMA[k as keyof Settings], v) !== null)
        reset.push(k);
      else kept[k] = v;
    }
    return reset.length ? { kept, reset } : null;
  }

  #moveAside(problem: string, salvage: { kept: Record<string, unknown>; reset: string[] } | null = null): void {
    const stamp = this.#now().toISOString().replace(/[:.]/g, '-');
    let target = `${this.path}.corrupt-${stamp}`;
    for (let i = 1; fs.existsSync(target); i++) target = `${this.path}.corrupt-${stamp}-${i}`;
    fs.renameSync(this.path, target);
    let loaded = 'default settings were loaded';
    if (salvage) {
      fs.writeFileSync(this.path, `${JSON.stringify(salvage.kept, null, '\t')}\n`, { mode: 0o600 });
      loaded = `the other settings were kept, with defaults for ${salvage.reset.join(', ')}`;
    }
    const warning = `The settings file ${this.path} could not be used (${problem}); it was moved to ${target} and ${loaded}.`;
    this.#movedAside.push(warning);
    this.#emitWarning(warning);
  }

  #reload(): void {
    let store: Record<string, unknown>;
    try {
      store = this.#conf.store as unknown as Record<string, unknown>;
    } catch (err) {
      // A half-saved or mistyped edit: keep what works, tell the user, retry on the next change.
      const detail = this.#fileProblem() ?? (err instanceof Error ? err.message : String(err));
      const warning = `The settings file ${this.path} has an error (${detail}); the previous settings stay in effect until it is fixed.`;
      if (warning !== this.#liveProblem) {
        this.#liveProblem = warning;
        this.#emitWarning(warning);
      }
      return;
    }
    this.#liveProblem = null;
    const next = pick(store);
    if (isDeepStrictEqual(next, this.#current)) return;
    const previous = this.#current;
    this.#current = next;
    for (const fn of [...this.#listeners]) {
      try {
        fn(structuredClone(next), structuredClone(previous));
      } catch {
        // A listener's failure is its own; the others still hear of the change.
      }
    }
  }

  #emitWarning(w: string): void {
    for (const fn of [...this.#warningListeners]) {
      try {
        fn(w);
      } catch {
        // As above.
      }
    }
  }
}
