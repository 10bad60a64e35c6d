/**
 * Builds: realising a VM's system closure with live progress, one build in flight per VM.
 *
 * `BuildManager` is an EventEmitter:
 *   'state'    (vm, BuildInfo)                 whenever the VM's build state changes
 *   'progress' (vm, BuildProgress)             throttled (progressIntervalMs), plus a final one
 *   'log'      (vm, line, at)                  every human-readable log line, as it comes, and when
 *                                              (the log file keeps that time in front of each line)
 *   'done'     (vm, BuildResult | BuildError)  once per build run (success, failure, cancel)
 *
 * Coalescing: `build()` while that VM is building returns the promise of ONE follow-up run
 * ("once more after"), shared by every request made meanwhile; it is never queued twice. The
 * follow-up builds the latest target asked for. `cancel()` stops the running build and drops the
 * follow-up. Results are not kept here: the caller owns what was built and passes the previous
 * build in the target (ClosureStore does). Returned promises reject
 * with BuildError; they are pre-marked as handled, so a caller that only listens to events
 * (fire and forget) does not crash the process.
 *
 * The build targets the flake attribute rather than the .drv path, because the `drv^out` syntax
 * differs between Nix 2.8 and current Nix.
 */
import { EventEmitter } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { BuildInfo, BuildProgress } from '../../api/types.ts';
import { stampedLine } from '../../api/log-lines.ts';
import { run, RunError, type RunResult } from '../../host/runner.ts';
import { nixErrorText, translateBuildError, trimSentence, type NixErrorKind } from './errors.ts';
import { sourceRootOf } from './inventory.ts';
import { EVAL_ARGS, toplevelInstallable, type Nix } from './nix.ts';
import { ProgressTracker } from './progress.ts';
import { vmDirName } from '../../host/names.ts';

/** The argv of a VM's build: its toplevel, JSON results, progress as internal-json on stderr. */
export function buildArgv(nix: Nix, flake: string, vm: string, extra: readonly string[] = []): string[] {
  return nix.argv(
    'build',
    '--no-link',
    '--json',
    ...EVAL_ARGS,
    '--log-format',
    'internal-json',
    ...extra,
    toplevelInstallable(flake, vm),
  );
}

export interface BuildTarget {
  vm: string;
  /** Absolute flake directory. */
  flake: string;
  /** The drvPath the inventory reported; when it equals `previous`'s and that output is still
   * in the store, the build is already done and nix is not run. */
  drvPath?: string;
  /** The VM's last successful build (its owner keeps it), if any. */
  previous?: BuildResult | null;
}

export interface BuildResult {
  vm: string;
  flake: string;
  outPath: string;
  drvPath: string;
  logPath: string;
  finishedAt: number;
}

export type BuildErrorKind = 'cancelled' | 'build-failed' | 'required-system' | NixErrorKind;

/** A build that failed or was cancelled: `message` is one sentence, `detail` nix's text. */
export class BuildError extends Error {
  readonly vm: string;
  readonly kind: BuildErrorKind;
  readonly detail: string;
  /** The derivation whose builder failed, when nix said. */
  readonly drvPath: string | null;
  /** Its last log lines. */
  readonly logTail: string[];
  readonly logPath: string | null;
  constructor(
    vm: string,
    kind: BuildErrorKind,
    message: string,
    extra: { detail?: string; drvPath?: string | null; logTail?: string[]; logPath?: string | null } = {},
  ) {
    super(message);
    this.name = 'BuildError';
    this.vm = vm;
    this.kind = kind;
    this.detail = extra.detail ?? '';
    this.drvPath = extra.drvPath ?? null;
    this.logTail = extra.logTail ?? [];
    this.logPath = extra.logPath ?? null;
  }
}

export interface BuildManagerOptions {
  nix: Nix;
  /** Logs go to <logsDir>/<vm>/build.log. */
  logsDir: string;
  /** How many build logs to keep per VM, the current one included (build.log, build.1.log…). */
  keepLogs?: number;
  /** Minimum time between 'progress' events of one VM. */
  progressIntervalMs?: number;
  /** Log lines of the failing derivation to put in the error. */
  tailLines?: number;
  /** A VM's folder name (default vmDirName; the agent's resolver keeps old folders). */
  dirName?(vm: string): string;
  /** Told when a build's nix process starts (its pid and argv) and ends (null): for reaping orphans. */
  onProcess?(vm: string, proc: { pid: number; argv: string[] } | null): void;
  /** Arguments every build adds now (the builder VM's `--option builders`). */
  extraArgs?(): readonly string[];
  /** A remote builder in words, and what to do when it was lost (nixvm's builder VM), or null. */
  describeRemote?(uri: string): { words: string; fix: string } | null;
}

export interface BuildManagerEvents {
  state: [vm: string, info: BuildInfo];
  progress: [vm: string, progress: BuildProgress];
  log: [vm: string, line: string, at: number];
  done: [vm: string, outcome: BuildResult | BuildError];
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

interface Slot {
  info: BuildInfo;
  running: { promise: Promise<BuildResult>; abort: AbortController } | null;
  again: (Deferred<BuildResult> & { target: BuildTarget }) | null;
}

/** build.log → build.1.log → … ; the oldest beyond `keep` is removed. */
export function rotateLogs(dir: string, keep: number): void {
  const name = (i: number) => path.join(dir, i === 0 ? 'build.log' : `build.${i}.log`);
  rmSync(name(Math.max(keep - 1, 0)), { force: true });
  for (let i = keep - 2; i >= 0; i--) {
    if (existsSync(name(i))) renameSync(name(i), name(i + 1));
  }
}

/** A VM that has not been built in this agent's lifetime. */
export const idleInfo = (logPath: string | null): BuildInfo => ({
  status: 'idle',
  progress: null,
  error: null,
  detail: null,
  logPath,
  again: false,
  startedAt: null,
  finishedAt: null,
});

export class BuildManager extends EventEmitter<BuildManagerEvents> {
  private readonly nix: Nix;
  private readonly logsDir: string;
  private readonly keepLogs: number;
  private readonly progressIntervalMs: number;
  private readonly tailLines: number;
  private readonly dirName: (vm: string) => string;
  private readonly onProcess: BuildManagerOptions['onProcess'];
  private readonly extraArgs: BuildManagerOptions['extraArgs'];
  private readonly describeRemote: BuildManagerOptions['describeRemote'];
  private readonly slots = new Map<string, Slot>();

  constructor(opts: BuildManagerOptions) {
    super();
    this.nix = opts.nix;
    this.logsDir = opts.logsDir;
    this.keepLogs = Math.max(1, opts.keepLogs ?? 5);
    this.progressIntervalMs = opts.progressIntervalMs ?? 100;
    this.tailLines = opts.tailLines ?? 20;
    this.dirName = opts.dirName ?? vmDirName;
    this.onProcess = opts.onProcess;
    this.extraArgs = opts.extraArgs;
    this.describeRemote = opts.describeRemote;
  }

  private slot(vm: string): Slot {
    let s = this.slots.get(vm);
    if (!s) {
      const log = this.logPathOf(vm);
      s = { info: idleInfo(existsSync(log) ? log : null), running: null, again: null };
      this.slots.set(vm, s);
    }
    return s;
  }

  /** Where the current (or last) build log of a VM is. */
  logPathOf(vm: string): string {
    return path.join(this.logsDir, this.dirName(vm), 'build.log');
  }

  /** The VM's build state (a copy). */
  state(vm: string): BuildInfo {
    const info = this.slot(vm).info;
    return { ...info, progress: info.progress ? { ...info.progress } : null };
  }

  isBuilding(vm: string): boolean {
    return Boolean(this.slots.get(vm)?.running);
  }

  /** Build a VM's toplevel; see the class comment for coalescing. */
  build(target: BuildTarget): Promise<BuildResult> {
    const slot = this.slot(target.vm);
    if (slot.running) {
      if (slot.again) {
        slot.again.target = target;
        return slot.again.promise;
      }
      slot.again = { ...deferred<BuildResult>(), target };
      slot.info = { ...slot.info, again: true };
      this.emit('state', target.vm, this.state(target.vm));
      return slot.again.promise;
    }
    const last = target.previous;
    if (target.drvPath && last && last.drvPath === target.drvPath && existsSync(last.outPath)) {
      return Promise.resolve(last);
    }
    return this.start(slot, target);
  }

  /** Stop the VM's build and drop its follow-up. False when nothing was building. */
  cancel(vm: string): boolean {
    const slot = this.slots.get(vm);
    if (!slot?.running) return false;
    if (slot.again) {
      const again = slot.again;
      slot.again = null;
      slot.info = { ...slot.info, again: false };
      again.reject(new BuildError(vm, 'cancelled', `The build of VM ${JSON.stringify(vm)} was cancelled.`));
    }
    slot.running.abort.abort();
    return true;
  }

  /** Cancel everything (agent shutdown). */
  async dispose(): Promise<void> {
    const running = [...this.slots.entries()].filter(([, s]) => s.running);
    for (const [vm] of running) this.cancel(vm);
    await Promise.allSettled(running.map(([, s]) => s.running?.promise));
  }

  private start(slot: Slot, target: BuildTarget): Promise<BuildResult> {
    const abort = new AbortController();
    const promise = this.runBuild(slot, target, abort.signal);
    promise.catch(() => {});
    slot.running = { promise, abort };
    const next = () => {
      slot.running = null;
      const again = slot.again;
      if (!again) return;
      slot.again = null;
      this.start(slot, again.target).then(again.resolve, again.reject);
    };
    promise.then(next, next);
    return promise;
  }

  private async runBuild(slot: Slot, target: BuildTarget, signal: AbortSignal): Promise<BuildResult> {
    const { vm, flake } = target;
    const dir = path.join(this.logsDir, this.dirName(vm));
    const logPath = path.join(dir, 'build.log');
    try {
      mkdirSync(dir, { recursive: true });
      rotateLogs(dir, this.keepLogs);
    } catch (e) {
      const why = trimSentence(String((e as Error)?.message ?? e));
      const err = new BuildError(
        vm,
        'build-failed',
        `Could not write the build log of VM ${JSON.stringify(vm)} in ${dir} (${why}); check that the directory is writable.`,
      );
      this.emit('done', vm, err);
      throw err;
    }
    const log: WriteStream = createWriteStream(logPath, { flags: 'w' });
    // A log that cannot be written must not take the agent down; the build goes on.
    log.on('error', () => {});
    const tracker = new ProgressTracker({ tailLines: this.tailLines });
    const startedAt = Date.now();
    slot.info = {
      status: 'building',
      progress: tracker.progress(),
      error: null,
      detail: null,
      logPath,
      again: Boolean(slot.again),
      startedAt,
      finishedAt: null,
    };
    this.emit('state', vm, this.state(vm));

    let timer: NodeJS.Timeout | null = null;
    let lastEmit = 0;
    const emitProgress = () => {
      timer = null;
      lastEmit = Date.now();
      const progress = tracker.progress();
      slot.info = { ...slot.info, progress };
      this.emit('progress', vm, { ...progress });
      this.emit('state', vm, this.state(vm));
    };
    // Stamped with the time the agent got the line: nix's own lines carry none.
    const writeLine = (line: string) => {
      const at = Date.now();
      log.write(`${stampedLine(at, line)}\n`);
      this.emit('log', vm, line, at);
    };

    const argv = buildArgv(this.nix, flake, vm, this.extraArgs?.() ?? []);
    log.write(`${stampedLine(startedAt, `# ${argv.map((a) => JSON.stringify(a)).join(' ')}`)}\n`);

    let r: RunResult | null = null;
    let runErr: unknown = null;
    try {
      r = await run(argv, {
        signal,
        allowFailure: true,
        onSpawn: (pid) => this.onProcess?.(vm, { pid, argv }),
        // A long build logs gigabytes; the log file has it all, errors need only the end.
        stderrTailChars: 1 << 20,
        onLine: (line, stream) => {
          if (stream !== 'stderr') return;
          const out = tracker.feed(line);
          if (out.line !== undefined) writeLine(out.line);
          if (out.changed && !timer) {
            timer = setTimeout(emitProgress, Math.max(0, lastEmit + this.progressIntervalMs - Date.now()));
          }
        },
      });
    } catch (e) {
      runErr = e;
    }
    this.onProcess?.(vm, null);
    if (timer) clearTimeout(timer);

    const finish = async (info: Partial<BuildInfo>, outcome: BuildResult | BuildError, line: string) => {
      writeLine(line);
      await new Promise<void>((res) => log.end(res));
      slot.info = { ...slot.info, ...info, again: Boolean(slot.again), finishedAt: Date.now() };
      if (slot.info.progress) this.emit('progress', vm, { ...slot.info.progress });
      this.emit('state', vm, this.state(vm));
      this.emit('done', vm, outcome);
    };

    if (signal.aborted || (runErr instanceof RunError && runErr.cancelled)) {
      const err = new BuildError(vm, 'cancelled', `The build of VM ${JSON.stringify(vm)} was cancelled.`, { logPath });
      await finish({ status: 'cancelled', progress: tracker.progress() }, err, '# build cancelled');
      throw err;
    }
    if (r?.exitCode !== 0) {
      const err = r
        ? this.explainFailure(target, r, tracker, logPath, Boolean(target.previous))
        : new BuildError(
            vm,
            'eval',
            `Could not run nix to build VM ${JSON.stringify(vm)}: ${trimSentence(String((runErr as Error)?.message ?? runErr))}.`,
            {
              logPath,
            },
          );
      await finish(
        { status: 'failed', progress: tracker.progress(), error: err.message, detail: err.detail },
        err,
        `# build failed: ${err.message}`,
      );
      throw err;
    }

    let outPath: string | undefined;
    let drvPath: string | undefined;
    try {
      const parsed = JSON.parse(r.stdout) as { drvPath?: string; outputs?: Record<string, string> }[];
      const first = parsed[0];
      drvPath = first?.drvPath;
      outPath = first?.outputs?.out ?? Object.values(first?.outputs ?? {})[0];
    } catch {
      // Handled below: a build that succeeded without telling us where its output is.
    }
    if (!outPath || !drvPath) {
      const err = new BuildError(
        vm,
        'build-failed',
        `nix built VM ${JSON.stringify(vm)} but did not report its output path; build again.`,
        {
          detail: r.stdout,
          logPath,
        },
      );
      await finish({ status: 'failed', error: err.message, detail: err.detail }, err, `# ${err.message}`);
      throw err;
    }
    tracker.finish(true);
    const result: BuildResult = { vm, flake, outPath, drvPath, logPath, finishedAt: Date.now() };
    await finish({ status: 'succeeded', progress: tracker.progress() }, result, `# built ${outPath}`);
    return result;
  }

  private explainFailure(
    target: BuildTarget,
    r: RunResult,
    tracker: ProgressTracker,
    logPath: string,
    hasPrevious: boolean,
  ): BuildError {
    const { vm, flake } = target;
    const text = nixErrorText(r.stderr) || tracker.errors.join('\n');
    const keep = hasPrevious ? ' (the previous build stays in use)' : '';
    const remote = tracker.progress().remote ?? null;
    const who = remote ? (this.describeRemote?.(remote) ?? null) : null;
    const t = translateBuildError(text, {
      flakeDir: flake,
      sourceRoot: sourceRootOf(flake).root,
      vm,
      hasPrevious,
      remote,
      remoteWords: who?.words ?? null,
      remoteFix: who?.fix ?? null,
      describeRemote: this.describeRemote ?? null,
    });
    if (t?.kind === 'build-failed' && t.drvPath) {
      const tail = tracker.logTail(t.drvPath);
      const detail = tail.length
        ? `${text}\n\nLast ${tail.length} log lines of ${t.drvPath}:\n${tail.join('\n')}`
        : text;
      return new BuildError(vm, t.kind, t.message, { detail, drvPath: t.drvPath, logTail: tail, logPath });
    }
    if (t) return new BuildError(vm, t.kind, t.message, { detail: t.detail, drvPath: t.drvPath ?? null, logPath });
    return new BuildError(
      vm,
      'build-failed',
      `Building VM ${JSON.stringify(vm)} failed (nix exited with code ${r.exitCode}); see the build log${keep}.`,
      {
        detail: r.stderr.slice(-4000),
        logPath,
      },
    );
  }
}
