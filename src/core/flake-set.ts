/**
 * The flakes the agent runs: one watcher each, and through them the only copy of the inventory
 * (every VM each flake defines, or why it failed to evaluate). Name clashes between flakes are
 * decided here (the first flake wins) and told as warnings.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { flakeSentence } from '../api/describe.ts';
import { AgentError, errorMessage } from '../api/errors.ts';
import type { FlakeSnapshot, FlakeState as FlakeStateName, VmSpec } from '../api/types.ts';
import { shellWord } from '../host/shell.ts';
import { FlakeError } from './nix/errors.ts';
import type { ConfigurationFilter } from './nix/inventory-expr.ts';
import { inventory, type InventoryResult } from './nix/inventory.ts';
import type { Nix } from './nix/nix.ts';
import { FlakeWatcher, type InventoryUpdate } from './nix/watcher.ts';

/** One VM a flake defines: its spec, or the error that stopped it from evaluating. */
export interface VmEntry {
  name: string;
  flake: string;
  spec: VmSpec | null;
  error: string | null;
}

interface FlakeState {
  dir: string;
  watcher: FlakeWatcher | null;
  /** The last inventory while no watcher holds one (nix went missing). */
  kept: InventoryResult | null;
  error: string | null;
  errorKind: string | null;
  /** How the last evaluation went (null: none finished yet). */
  outcome: FlakeStateName | null;
  /** When the running evaluation started, or null. */
  evaluatingSince: number | null;
  warnings: string[];
  lastEvalAt: number | null;
  source: FlakeSnapshot['source'];
  filter: ConfigurationFilter;
  /** Resolves after the first evaluation, successful or not. */
  ready: Promise<void>;
}

/** The flakes to watch: each directory, where it came from, which configurations it includes or excludes. */
export interface FlakeSpec {
  dir: string;
  source?: FlakeSnapshot['source'];
  filter?: ConfigurationFilter;
}

/** Lower-case the first letter of a sentence that goes after a colon, unless it starts a name (NIXVM_NIX, Nix). */
export function continueSentence(s: string): string {
  return /^[A-Z][a-z]/.test(s) && !/^Nix\b/.test(s) ? `${s.charAt(0).toLowerCase()}${s.slice(1)}` : s;
}

function sameFilter(a: ConfigurationFilter, b: ConfigurationFilter): boolean {
  return JSON.stringify([a.include ?? [], a.exclude ?? []]) === JSON.stringify([b.include ?? [], b.exclude ?? []]);
}

export interface FlakeSetOptions {
  /** Watcher debounce (default 300 ms). */
  debounceMs?: number;
  log(line: string): void;
}

export interface FlakeSetEvents {
  /** Something a snapshot shows changed (evaluating, an inventory, an error). */
  changed: [];
  /** A flake evaluated (not the first time: the watcher says which VMs changed). */
  inventory: [update: InventoryUpdate];
}

function inventoryOf(f: FlakeState): InventoryResult | null {
  return f.watcher?.current ?? f.kept;
}

export class FlakeSet extends EventEmitter<FlakeSetEvents> {
  readonly #o: FlakeSetOptions;
  readonly #flakes = new Map<string, FlakeState>();
  #nix: Nix | null = null;
  #nixProblem: string | null = null;
  /** The defined VMs by name, rebuilt when an inventory or the set of flakes changes. */
  #defined: Map<string, VmEntry> | null = null;

  constructor(o: FlakeSetOptions) {
    super();
    this.#o = o;
  }

  /** Evaluate with this nix from now on (null: missing, `problem` says why). */
  async setNix(nix: Nix | null, problem: string | null): Promise<void> {
    this.#nix = nix;
    this.#nixProblem = problem;
    // Swap in fresh watchers first, so no snapshot ever shows the flakes gone.
    const old = [...this.#flakes.values()];
    this.#flakes.clear();
    for (const f of old) this.#add(f.dir, inventoryOf(f), { dir: f.dir, source: f.source, filter: f.filter }, f);
    this.#touch();
    await Promise.all(old.map((f) => f.watcher?.close()));
  }

  /**
   * Watch exactly these flakes (directories, or specs saying where each came from and which of its
   * configurations to include or exclude). A flake whose filter changed is evaluated again.
   */
  sync(flakes: readonly (string | FlakeSpec)[]): void {
    const want = new Map<string, FlakeSpec>();
    for (const f of flakes) {
      const spec = typeof f === 'string' ? { dir: f } : f;
      if (!want.has(spec.dir)) want.set(spec.dir, spec);
    }
    for (const [dir, f] of [...this.#flakes]) {
      if (want.has(dir)) continue;
      this.#flakes.delete(dir);
      void f.watcher?.close().then(() => this.emit('changed'));
    }
    for (const [dir, spec] of want) {
      const f = this.#flakes.get(dir);
      if (!f) {
        this.#add(dir, null, spec);
        continue;
      }
      f.source = spec.source ?? 'settings';
      const filter = spec.filter ?? {};
      if (!sameFilter(f.filter, filter)) {
        f.filter = filter;
        void f.watcher?.refresh();
      }
    }
    this.#touch();
  }

  dirs(): string[] {
    return [...this.#flakes.keys()];
  }

  /** Every VM the flakes define (loaded or failed), by name; the first flake wins a clash. */
  defined(): Map<string, VmEntry> {
    if (this.#defined) return this.#defined;
    const out = new Map<string, VmEntry>();
    for (const f of this.#flakes.values()) {
      const inv = inventoryOf(f);
      for (const spec of inv?.vms ?? []) {
        if (!out.has(spec.name)) out.set(spec.name, { name: spec.name, flake: f.dir, spec, error: null });
      }
      for (const fail of inv?.failures ?? []) {
        if (!out.has(fail.name)) out.set(fail.name, { name: fail.name, flake: f.dir, spec: null, error: fail.error });
      }
    }
    this.#defined = out;
    return out;
  }

  /** Some flake does not evaluate right now. */
  anyError(): boolean {
    return [...this.#flakes.values()].some((f) => f.error !== null);
  }

  /** When the VM's flake last evaluated, and whether that went well (for outdating failed builds). */
  evalState(dir: string): { lastEvalAt: number | null; ok: boolean } {
    const f = this.#flakes.get(dir);
    return { lastEvalAt: f?.lastEvalAt ?? null, ok: f?.error === null };
  }

  snapshots(): FlakeSnapshot[] {
    const owner = new Map<string, string>();
    return [...this.#flakes.values()].map((f) => {
      const inv = inventoryOf(f);
      const clashes: string[] = [];
      for (const name of [...(inv?.vms ?? []).map((v) => v.name), ...(inv?.failures ?? []).map((x) => x.name)]) {
        const first = owner.get(name);
        if (first === undefined) owner.set(name, f.dir);
        else
          clashes.push(
            `${JSON.stringify(name)} is also defined by ${first}, which nixvm uses; rename one of them to run both.`,
          );
      }
      const evaluating = f.watcher?.evaluating ?? false;
      return {
        dir: f.dir,
        evaluating,
        error: f.error,
        warnings: [...f.warnings, ...(inv?.warnings ?? []), ...clashes],
        lastEvalAt: f.lastEvalAt,
        state: f.outcome ?? 'evaluating',
        evaluatingSince: evaluating || f.outcome === null ? f.evaluatingSince : null,
        errorKind: f.errorKind,
        source: f.source,
        hidden: [...(inv?.hidden ?? [])],
      };
    });
  }

  /** Resolves once every flake has been evaluated at least once. */
  async ready(): Promise<void> {
    await Promise.all([...this.#flakes.values()].map((f) => f.ready));
  }

  async reevaluate(): Promise<void> {
    await Promise.all([...this.#flakes.values()].map((f) => f.watcher?.refresh()));
  }

  async close(): Promise<void> {
    await Promise.all([...this.#flakes.values()].map((f) => f.watcher?.close()));
  }

  #touch(): void {
    this.#defined = null;
    this.emit('changed');
  }

  #add(dir: string, previous: InventoryResult | null, spec: FlakeSpec = { dir }, old?: FlakeState): void {
    let resolveReady!: () => void;
    const state: FlakeState = {
      dir,
      watcher: null,
      kept: null,
      error: null,
      errorKind: null,
      // A flake that evaluated keeps showing its VMs while the new nix evaluates it again.
      outcome: old?.outcome === 'ok' ? 'ok' : null,
      evaluatingSince: Date.now(),
      warnings: [],
      lastEvalAt: old?.lastEvalAt ?? null,
      source: spec.source ?? 'settings',
      filter: spec.filter ?? {},
      ready: new Promise<void>((r) => (resolveReady = r)),
    };
    this.#flakes.set(dir, state);
    const settle = (outcome: FlakeStateName, error: string | null, kind: string | null = null): void => {
      state.outcome = outcome;
      state.error = error;
      state.errorKind = kind;
      state.evaluatingSince = null;
      resolveReady();
    };
    const nix = this.#nix;
    if (!nix) {
      // Keep listing the VMs we knew (with the error) rather than none at all.
      state.kept = previous;
      const why = this.#nixProblem ?? 'Nix was not found.';
      settle('nix-missing', `${dir} cannot be evaluated: ${continueSentence(why)}`);
      return;
    }
    if (!fs.existsSync(dir)) {
      state.kept = previous;
      settle('no-such-dir', missingFolder(dir, state.source));
      return;
    }
    const watcher = new FlakeWatcher({
      flakeDir: dir,
      evaluate: (signal, why) =>
        inventory(nix, dir, { signal, filter: state.filter, nice: !why.first && why.paths.length > 0 }),
      initial: previous,
      ...(this.#o.debounceMs !== undefined ? { debounceMs: this.#o.debounceMs } : {}),
    });
    state.watcher = watcher;
    watcher.on('evaluating', () => {
      state.evaluatingSince = Date.now();
      this.emit('changed');
    });
    watcher.on('settled', () => {
      // One nix per flake at a time: edits during an evaluation wait for it, then go as one.
      if (watcher.evaluating) this.#o.log(`${dir} changed while it evaluates: once more after this evaluation`);
    });
    watcher.on('warning', (w) => {
      state.warnings = w;
      this.emit('changed');
    });
    watcher.on('inventory', (u) => {
      state.lastEvalAt = Date.now();
      settle('ok', null);
      this.#defined = null;
      if (!u.first) this.emit('inventory', u);
      this.emit('changed');
    });
    watcher.on('failed', (err) => {
      // The VMs keep running and keep their last known spec: only the error is new.
      this.#o.log(`evaluating ${dir} failed: ${errorMessage(err)}`);
      state.lastEvalAt = Date.now();
      if (err instanceof FlakeError && err.kind === 'no-such-dir')
        settle('no-such-dir', missingFolder(dir, state.source));
      else if (err instanceof FlakeError)
        settle('failed', `${err.message}${err.detail ? `\n${err.detail}` : ''}`, err.kind);
      else settle('failed', errorMessage(err));
      this.emit('changed');
    });
    watcher.on('watchError', (err) => this.#o.log(`watching ${dir}: ${errorMessage(err)}`));
    void watcher.start().catch((err) => {
      settle('failed', errorMessage(err));
      this.emit('changed');
    });
  }
}

/** The sentence for a flake folder that is not there, with the fix where the path came from. */
function missingFolder(dir: string, source: FlakeSnapshot['source']): string {
  return source === 'command-line'
    ? `The flake folder ${dir} does not exist; check the path given to \`nixvm daemon --flake\`.`
    : `The flake folder ${dir} does not exist; fix the path in Settings, or remove it with \`nixvm flake remove ${shellWord(dir)}\`.`;
}

/**
 * A VM no flake defines: the one-sentence refusal, naming the ones it knows, or saying why there
 * may be none yet (a flake still evaluating, nix missing, a failed evaluation) or that the name is
 * a configuration that is not a VM.
 */
export function noSuchVm(name: string, known: string[], flakes: readonly FlakeSnapshot[] = []): AgentError {
  const hiddenIn = flakes.find((f) => f.hidden.includes(name));
  if (hiddenIn) {
    return new AgentError(
      'no-such-vm',
      `${JSON.stringify(name)} is a configuration of ${hiddenIn.dir} that nixvm does not show as a VM (it sets none of the options nixvm reads, or the settings exclude it); \`nixvm flake include ${shellWord(hiddenIn.dir)} ${shellWord(name)}\` makes it one.`,
    );
  }
  const pending = flakes.filter((f) => f.state !== 'ok');
  if (pending.length) {
    const now = Date.now();
    const why = pending.map((f) => flakeSentence(f, now, 0, shellWord)).filter(Boolean);
    return new AgentError(
      'no-such-vm',
      `There is no VM named ${JSON.stringify(name)}${pending.every((f) => f.state === 'evaluating') ? ' yet' : ''}: ${why.join(' ')}`,
    );
  }
  return new AgentError(
    'no-such-vm',
    `There is no VM named ${JSON.stringify(name)}${known.length ? ` (known: ${known.map((k) => JSON.stringify(k)).join(', ')})` : ' (no flake defines any VM yet)'}.`,
  );
}

export function resolveDirs(dirs: readonly string[]): string[] {
  return [...new Set(dirs.map((d) => path.resolve(d)))];
}
