/**
 * The user's settings: <configDir>/settings.json through `conf` (atomic writes, a file watcher),
 * checked against the one settings schema (src/api/settings-schema.ts) by our own checks, which
 * phrase a bad value for people. conf is given no schema of its own: it would load and compile
 * ajv (a fifth of a resting agent's memory) to say the same thing less clearly. conf 16 throws
 * from its constructor on a file that is not JSON, and with `clearInvalidConfig` would silently
 * overwrite it; we do neither: a bad file is moved aside (settings.json.corrupt-<time>), a warning says where, and
 * defaults load. Edits by another process (a text editor, a second CLI) apply live; a broken
 * edit keeps the last good settings and raises a warning until it is fixed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import Conf from 'conf';
import { AgentError } from '../api/errors.ts';
import type { Settings } from '../api/types.ts';
import {
  SETTINGS_KEYS,
  SETTINGS_SCHEMA,
  checkSettings,
  checkValue,
  defaultSettings,
  validateSettingsPatch,
} from '../api/settings-schema.ts';
import { fsReason } from '../host/fs-errors.ts';
import { resolvePaths } from '../host/paths.ts';

export const SETTINGS_FILE = 'settings.json';

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
    // Like the rest of nixvm's state, only its user may read it (older versions wrote it 0644).
    try {
      if ((fs.statSync(this.path).mode & 0o077) !== 0) fs.chmodSync(this.path, 0o600);
    } catch {
      // Not there yet (conf writes it 0600 when it does) or not ours to change: nothing to tighten.
    }
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
    const changes: Record<string, unknown> = { ...validateSettingsPatch(partial) };
    if (changes.flakes) changes.flakes = (changes.flakes as string[]).map((d) => path.resolve(d));
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
      this.#moveAside(problem, null, 'your current settings (with this change) were written in its place');
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

  /**
   * settings.json vanished (its folder was deleted under the agent): write the settings in effect
   * back, so the next read does not fall back to defaults and forget the user's flakes.
   */
  restoreFile(): void {
    if (fs.existsSync(this.path)) return;
    try {
      fs.mkdirSync(path.dirname(this.path), { recursive: true });
      this.#conf.store = this.#current;
    } catch {
      // A disk that refuses the write: the settings stay in memory, and the next change tries again.
    }
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
        // Written into the file for the fields it lacks, so the file documents every setting.
        defaults: defaultSettings() as never,
        // We move bad files aside ourselves; conf's clearing would overwrite them unseen.
        clearInvalidConfig: false,
        accessPropertiesByDotNotation: false,
        configFileMode: 0o600,
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

  /** What is wrong with settings.json right now, or null (missing counts as fine). Never throws. */
  #fileProblem(): string | null {
    let text: string;
    try {
      text = fs.readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      // A folder in its place, no permission to read it…: said in words, never thrown from a watcher.
      return `it cannot be read: ${fsReason(err)}`;
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

  #moveAside(
    problem: string,
    salvage: { kept: Record<string, unknown>; reset: string[] } | null = null,
    kept: string | null = null,
  ): void {
    const stamp = this.#now().toISOString().replace(/[:.]/g, '-');
    let target = `${this.path}.corrupt-${stamp}`;
    for (let i = 1; fs.existsSync(target); i++) target = `${this.path}.corrupt-${stamp}-${i}`;
    try {
      fs.renameSync(this.path, target);
    } catch (err) {
      throw new AgentError(
        'failed',
        `The settings file ${this.path} could not be used (${problem}) and could not be moved aside: ${fsReason(err)}.`,
      );
    }
    let loaded = kept ?? 'default settings were loaded';
    if (salvage) {
      fs.writeFileSync(this.path, `${JSON.stringify(salvage.kept, null, '\t')}\n`, { mode: 0o600 });
      loaded = `the other settings were kept, with defaults for ${salvage.reset.join(', ')}`;
    }
    const warning = `The settings file ${this.path} could not be used (${problem}); it was moved to ${target} and ${loaded}.`;
    this.#movedAside.push(warning);
    this.#emitWarning(warning);
  }

  #warnLive(detail: string): void {
    const warning = `The settings file ${this.path} has an error (${detail}); the previous settings stay in effect until it is fixed.`;
    if (warning === this.#liveProblem) return;
    this.#liveProblem = warning;
    this.#emitWarning(warning);
  }

  #reload(): void {
    // Deleted (with its folder, say): the settings in effect stay, and are written back.
    if (!fs.existsSync(this.path)) {
      this.restoreFile();
      return;
    }
    let store: Record<string, unknown>;
    try {
      store = this.#conf.store as unknown as Record<string, unknown>;
    } catch (err) {
      // A half-saved or mistyped edit: keep what works, tell the user, retry on the next change.
      this.#warnLive(this.#fileProblem() ?? (err instanceof Error ? err.message : String(err)));
      return;
    }
    const problems = checkSettings(store);
    if (problems.length) {
      // Valid JSON that breaks the schema: the same remedy as a file that does not parse.
      this.#warnLive(problems.join('; '));
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
