/**
 * Watching a flake: chokidar on the flake directory (and, for a git flake, the git index), a
 * debounce that turns a burst of saves into one re-evaluation, at most one evaluation in flight
 * (a change during one means exactly one more after), and the list of VMs whose drvPath changed.
 *
 * `FlakeWatcher` is an EventEmitter:
 *   'evaluating' (paths)                 an evaluation starts; paths that triggered it (relative)
 *   'warning'    (warnings)              before each evaluation of a git flake: the untracked .nix
 *                                        files, as the complete current list (empty once they are
 *                                        all tracked, so a listener can clear what it showed); these
 *                                        are not repeated in the inventory's own `warnings`
 *   'inventory'  (InventoryUpdate)       an evaluation succeeded
 *   'failed'     (error, { evalMs, paths })  it threw (FlakeError…); the last good inventory stays
 *   'watchError' (error)                 chokidar failed (e.g. out of inotify watches), or a listener threw
 * Call close() when done: it stops chokidar, cancels a running evaluation and waits for it.
 */
import { EventEmitter } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { run } from '../../host/runner.ts';
import { gitAddAdvice } from './errors.ts';
import { changedVms, respeccedVms, sourceRootOf, type InventoryResult } from './inventory.ts';

/** Directories never worth watching (and never walked): VCS data, build outputs, dependencies. */
const IGNORED_DIRS: ReadonlySet<string> = new Set([
  '.git',
  '.hg',
  '.svn',
  '.jj',
  'node_modules',
  '.direnv',
  '.devenv',
  '.cache',
  '.venv',
  '__pycache__',
]);

/** `nix build` links (result, result-dev…), disk images, sockets and editor droppings. */
function ignoredName(name: string): boolean {
  return (
    IGNORED_DIRS.has(name) ||
    /^result(-.*)?$/.test(name) ||
    /\.(img|qcow2|raw|iso|sock|swp|swx|tmp)$/.test(name) ||
    name.endsWith('~') ||
    name.startsWith('.#') ||
    name === '4913' // vim's probe file
  );
}

/**
 * Whether chokidar should skip a path under the flake. Decided from the path alone (no stat),
 * so ignored directories are never walked.
 */
export function isIgnoredPath(
  flakeDir: string,
  candidate: string,
  extraDirs: ReadonlySet<string> = new Set(),
): boolean {
  const rel = path.relative(flakeDir, candidate);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return false;
  if (extraDirs.size) {
    const abs = path.resolve(flakeDir, rel);
    for (const d of extraDirs) if (abs === d || abs.startsWith(d + path.sep)) return true;
  }
  return rel.split(path.sep).some(ignoredName);
}

/**
 * The git directory of a git flake (`<root>/.git`, or where a worktree's or submodule's `.git`
 * file points), or null when the flake is not in git. Its `index` is what `git add` changes.
 */
export function gitDirOf(flakeDir: string): string | null {
  const { root, git } = sourceRootOf(flakeDir);
  if (!git) return null;
  const dotGit = path.join(root, '.git');
  try {
    if (statSync(dotGit).isDirectory()) return dotGit;
    const m = /^gitdir:\s*(.+)$/m.exec(readFileSync(dotGit, 'utf8'));
    return m?.[1] ? path.resolve(root, m[1].trim()) : null;
  } catch {
    return null;
  }
}

export interface InventoryUpdate {
  result: InventoryResult;
  /** VMs whose drvPath changed since the last successful evaluation (every VM the first time). */
  changed: string[];
  /** VMs with the same drvPath whose run settings (cpus, memory, shares…) changed. */
  respecced: string[];
  /** VMs (or failures) that were there before and are gone. */
  removed: string[];
  /** Paths (relative to the flake) whose change led here; empty for the first and for refresh(). */
  paths: string[];
  evalMs: number;
  first: boolean;
}

export interface FlakeWatcherEvents {
  /** The debounce after a burst of changes ran out (an evaluation starts now or once the running one ends). */
  settled: [];
  evaluating: [paths: string[]];
  warning: [warnings: string[]];
  inventory: [update: InventoryUpdate];
  failed: [error: unknown, info: { evalMs: number; paths: string[] }];
  watchError: [error: unknown];
}

export interface FlakeWatcherOptions {
  flakeDir: string;
  /**
   * One evaluation of the flake, typically `(signal) => inventory(nix, flakeDir, { signal })`.
   * `why.paths` are the edits that led to it (none for the first evaluation and refresh()): an
   * evaluation for edits is background work.
   */
  evaluate: (signal: AbortSignal, why: { first: boolean; paths: string[] }) => Promise<InventoryResult>;
  debounceMs?: number;
  /** Look for untracked .nix files in git flakes before each evaluation (default true). */
  gitCheck?: boolean;
  /** The inventory an earlier watcher of this flake had: kept until this one evaluates. */
  initial?: InventoryResult | null;
}

/** Untracked, not ignored .nix files under a git flake, relative to it (empty if not git). */
export async function untrackedNixFiles(flakeDir: string, signal?: AbortSignal): Promise<string[]> {
  if (!sourceRootOf(flakeDir).git) return [];
  try {
    const r = await run(['git', 'ls-files', '--others', '--exclude-standard', '-z', '--', '*.nix'], {
      cwd: flakeDir,
      signal,
      timeoutMs: 10_000,
      allowFailure: true,
    });
    if (r.exitCode !== 0) return [];
    return r.stdout.split('\0').filter(Boolean).sort();
  } catch {
    // No git on PATH, or it hung: nix's own error will still be translated.
    return [];
  }
}

export class FlakeWatcher extends EventEmitter<FlakeWatcherEvents> {
  readonly flakeDir: string;
  private readonly evaluate: FlakeWatcherOptions['evaluate'];
  private readonly debounceMs: number;
  private readonly gitCheck: boolean;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private abort: AbortController | null = null;
  /** The debounce fired while an evaluation ran: run once more when it ends. */
  private pending = false;
  private readonly pendingPaths = new Set<string>();
  /** Share sources inside the flake: the guest writes there, which is no reason to re-evaluate. */
  private readonly shareDirs = new Set<string>();
  private last: InventoryResult | null = null;
  private lastError: unknown = null;
  private closed = false;
  private evaluations = 0;

  constructor(opts: FlakeWatcherOptions) {
    super();
    this.flakeDir = path.resolve(opts.flakeDir);
    this.evaluate = opts.evaluate;
    this.debounceMs = opts.debounceMs ?? 300;
    this.gitCheck = opts.gitCheck ?? true;
    this.last = opts.initial ?? null;
  }

  /** The last successful inventory. */
  get current(): InventoryResult | null {
    return this.last;
  }

  /** The error of the last evaluation, or null if it succeeded. */
  get error(): unknown {
    return this.lastError;
  }

  get evaluating(): boolean {
    return this.inFlight !== null;
  }

  /** Directories chokidar has subscribed to (diagnostics: ignored ones never appear). */
  watchedDirs(): string[] {
    return Object.keys(this.watcher?.getWatched() ?? {}).sort();
  }

  /** How many evaluations have started (for tests and the bench). */
  get evaluationCount(): number {
    return this.evaluations;
  }

  /**
   * Start watching, then evaluate once. Resolves after that first evaluation (its outcome is
   * also emitted); an error there does not stop the watching.
   */
  async start(): Promise<void> {
    if (this.watcher) throw new Error('FlakeWatcher.start() was already called');
    // Of a git flake's git directory, only the index: `git add -N` (nixvm's own advice for an
    // untracked file) changes nothing else, and nix sees only what the index lists. The
    // directory itself is watched (not just the file) because git replaces the index by renaming
    // index.lock over it, and a fresh `git init` has no index yet.
    const gitDir = gitDirOf(this.flakeDir);
    const gitIndex = gitDir ? path.join(gitDir, 'index') : null;
    const w = watch(gitDir ? [this.flakeDir, gitDir] : this.flakeDir, {
      ignoreInitial: true,
      // A symlink into /nix/store (or anywhere) must not drag a huge tree into the watch.
      followSymlinks: false,
      ignored: (p: string) => {
        if (gitDir && (p === gitDir || p.startsWith(gitDir + path.sep))) return p !== gitDir && p !== gitIndex;
        return isIgnoredPath(this.flakeDir, p, this.shareDirs);
      },
    });
    this.watcher = w;
    // chokidar emits 'ready' asynchronously, so listening right after watch() cannot miss it.
    const ready = new Promise<void>((resolve) => w.once('ready', () => resolve()));
    w.on('all', (_event, p) => this.onChange(p));
    w.on('error', (err) => this.emit('watchError', err));
    await ready;
    if (this.closed) return;
    this.pendingPaths.clear();
    await this.cycle(true);
  }

  /** Evaluate now (no debounce); coalesces with an evaluation in flight like a file change. */
  async refresh(): Promise<void> {
    if (this.closed) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.inFlight) {
      this.pending = true;
      await this.inFlight;
      // The follow-up started when the in-flight one ended; wait for it too.
      if (this.inFlight) await this.inFlight;
      return;
    }
    await this.cycle(false);
  }

  private onChange(p: string): void {
    if (this.closed) return;
    this.pendingPaths.add(path.relative(this.flakeDir, p) || '.');
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fire(), this.debounceMs);
  }

  private fire(): void {
    this.timer = null;
    if (this.closed) return;
    this.emit('settled');
    if (this.inFlight) {
      this.pending = true;
      return;
    }
    void this.cycle(false);
  }

  private cycle(first: boolean): Promise<void> {
    const p = this.doCycle(first)
      .catch((err: unknown) => {
        // A throwing listener must not turn into an unhandled rejection that takes the agent down.
        try {
          this.emit('watchError', err);
        } catch {
          // Nobody left to tell.
        }
      })
      .finally(() => {
        if (this.inFlight === p) this.inFlight = null;
        this.abort = null;
        const again = this.pending;
        this.pending = false;
        // If more changes are still settling, their debounce timer runs the next evaluation.
        if (again && !this.closed && !this.timer) void this.cycle(false);
      });
    this.inFlight = p;
    return p;
  }

  private async doCycle(first: boolean): Promise<void> {
    // Let cycle() record this run as in flight before any listener hears of it.
    await Promise.resolve();
    const paths = [...this.pendingPaths].sort();
    this.pendingPaths.clear();
    this.evaluations++;
    const abort = new AbortController();
    this.abort = abort;
    this.emit('evaluating', paths);

    if (this.gitCheck && sourceRootOf(this.flakeDir).git) {
      const untracked = await untrackedNixFiles(this.flakeDir, abort.signal);
      // Always the full list, even empty: a warning must go away once the user has run `git add -N`.
      if (!this.closed)
        this.emit(
          'warning',
          untracked.map((f) => `${gitAddAdvice(f, this.flakeDir)}.`),
        );
    }
    if (this.closed) return;

    const t0 = performance.now();
    let result: InventoryResult;
    try {
      result = await this.evaluate(abort.signal, { first, paths });
    } catch (err) {
      if (this.closed) return;
      this.lastError = err;
      this.emit('failed', err, { evalMs: performance.now() - t0, paths });
      return;
    }
    const evalMs = performance.now() - t0;
    if (this.closed) return;

    const prev = this.last;
    const before = new Set([...(prev?.vms ?? []).map((v) => v.name), ...(prev?.failures ?? []).map((f) => f.name)]);
    const now = new Set([...result.vms.map((v) => v.name), ...result.failures.map((f) => f.name)]);
    this.last = result;
    this.lastError = null;
    this.learnShares(result);
    this.emit('inventory', {
      result,
      changed: changedVms(prev?.vms ?? [], result.vms),
      respecced: respeccedVms(prev?.vms ?? [], result.vms),
      removed: [...before].filter((n) => !now.has(n)).sort(),
      paths,
      evalMs,
      first,
    });
  }

  /** Stop watching share directories that live inside the flake (the guest writes there). */
  private learnShares(result: InventoryResult): void {
    const dirs = new Set<string>();
    for (const vm of result.vms) {
      for (const s of vm.shares) {
        const rel = path.relative(this.flakeDir, s.source);
        if (rel && !rel.startsWith('..') && !path.isAbsolute(rel)) dirs.add(s.source);
      }
    }
    const added = [...dirs].filter((d) => !this.shareDirs.has(d));
    for (const d of added) this.shareDirs.add(d);
    if (added.length) this.watcher?.unwatch(added);
  }

  /** Stop watching, cancel a running evaluation and wait for it. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.abort?.abort();
    const w = this.watcher;
    this.watcher = null;
    await Promise.allSettled([w?.close(), this.inFlight]);
    this.removeAllListeners();
  }
}
