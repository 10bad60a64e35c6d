/**
 * The one runner every external program goes through (nix, vfkit, launchctl, open, ifconfig, ssh…).
 * argv arrays only, never a shell; every call is recorded (argv, duration, exit) so logs and tests
 * can see exactly what ran.
 */
import type { ResultPromise } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { accessSync, constants, openSync, closeSync, statSync } from 'node:fs';
import path from 'node:path';

export interface RunRecord {
  argv: string[];
  startedAt: number;
  durationMs: number;
  exitCode: number | null;
  signal: string | null;
  cancelled: boolean;
  timedOut: boolean;
}

export interface RunOptions {
  cwd?: string;
  /** Extra environment, merged over process.env. */
  env?: Record<string, string | undefined>;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** What the program reads on stdin: text, or a stream (piped as it comes, e.g. a tar archive). */
  input?: string | Readable;
  /** Called for every complete line the program writes, as it writes it. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Resolve with the result instead of throwing when the program exits non-zero. */
  allowFailure?: boolean;
  /** Where to look for a bare program name; defaults to process.env.PATH. */
  searchPath?: string[];
  /** Told the child's pid once it exists (to record it, say, for reaping after a crash). */
  onSpawn?: (pid: number) => void;
  /**
   * Keep only the last this-many characters of stderr (a long `nix build --log-format
   * internal-json` writes far more than is worth holding; its lines still reach onLine).
   */
  stderrTailChars?: number;
  /**
   * Run it this much nicer (nice(1)'s increment, 1–19): for background work a user did not ask
   * for right now. The program runs under `nice -n N`, so what it starts is nice too.
   */
  nice?: number;
}

export interface RunResult {
  argv: string[];
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** A program that could not be found: names the program and every place looked. */
export class ProgramNotFoundError extends Error {
  readonly program: string;
  readonly searched: string[];
  /** `sentence` replaces the default "Could not find … (looked in …)" when the search was not the problem. */
  constructor(program: string, searched: string[], hint?: string, sentence?: string) {
    const where = searched.length ? searched.join(', ') : 'nowhere (empty PATH)';
    super(sentence ?? `Could not find ${program} (looked in ${where})${hint ? `; ${hint}` : ''}.`);
    this.name = 'ProgramNotFoundError';
    this.program = program;
    this.searched = searched;
  }
}

/** A program that ran and failed, was cancelled or timed out. */
export class RunError extends Error {
  readonly argv: string[];
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly cancelled: boolean;
  readonly timedOut: boolean;
  constructor(r: RunResult & { cancelled: boolean; timedOut: boolean }) {
    const how = r.cancelled
      ? 'was cancelled'
      : r.timedOut
        ? 'timed out'
        : r.signal
          ? `was killed by ${r.signal}`
          : `exited with code ${r.exitCode}`;
    const tail = lastLines(r.stderr, 3);
    super(`${path.basename(r.argv[0] ?? '?')} ${how}${tail ? `: ${tail}` : ''}`);
    this.name = 'RunError';
    this.argv = r.argv;
    this.exitCode = r.exitCode;
    this.signal = r.signal;
    this.stdout = r.stdout;
    this.stderr = r.stderr;
    this.cancelled = r.cancelled;
    this.timedOut = r.timedOut;
  }
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join(' / ').trim();
}

type Listener = (rec: RunRecord) => void;
const listeners = new Set<Listener>();
const recent: RunRecord[] = [];
const RECENT_MAX = 200;

/** Subscribe to every finished run (for the agent's log and for tests). */
export function onRun(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The last runs, oldest first. */
export function recentRuns(): readonly RunRecord[] {
  return recent;
}

function record(rec: RunRecord): void {
  recent.push(rec);
  if (recent.length > RECENT_MAX) recent.shift();
  for (const fn of listeners) fn(rec);
  if (process.env.NIXVM_DEBUG_RUNS) {
    process.stderr.write(`[run] ${JSON.stringify(rec.argv)} ${rec.durationMs}ms exit=${rec.exitCode ?? rec.signal}\n`);
  }
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Resolve a program name to an executable path, or throw ProgramNotFoundError. */
export function resolveProgram(program: string, searchPath?: string[]): string {
  if (program.includes('/')) {
    if (isExecutable(program)) return program;
    throw new ProgramNotFoundError(program, [program]);
  }
  const dirs = searchPath ?? (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of dirs) {
    const candidate = path.join(dir, program);
    if (isExecutable(candidate)) return candidate;
  }
  throw new ProgramNotFoundError(program, dirs);
}

/** nice(1): on PATH, else where macOS and Linux keep it. */
function niceProgram(): string {
  try {
    return resolveProgram('nice');
  } catch {
    return resolveProgram('/usr/bin/nice');
  }
}

/** Run a program to completion. Throws RunError on failure unless allowFailure is set. */
export async function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const [program, ...programArgs] = argv;
  if (!program) throw new Error('run() needs a program');
  let file = resolveProgram(program, opts.searchPath);
  let args = programArgs;
  if (opts.nice !== undefined) {
    const n = Math.min(19, Math.max(1, Math.round(opts.nice)));
    [file, args] = [niceProgram(), ['-n', String(n), file, ...programArgs]];
  }
  // Loaded on first use: the CLI imports this module for resolveProgram and should not pay for execa.
  const { execa } = await import('execa');
  const startedAt = Date.now();
  const child: ResultPromise = execa(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: true,
    cancelSignal: opts.signal,
    timeout: opts.timeoutMs,
    input: opts.input,
    reject: false,
    stripFinalNewline: false,
    // Keep the text (stderr only as a tail when asked); lines are also streamed below.
    buffer: opts.stderrTailChars === undefined ? true : { stdout: true, stderr: false },
    maxBuffer: 256 * 1024 * 1024,
  });
  if (opts.onSpawn && child.pid !== undefined) opts.onSpawn(child.pid);
  if (opts.onLine) {
    const onLine = opts.onLine;
    for (const stream of ['stdout', 'stderr'] as const) {
      const s = child[stream];
      if (!s) continue;
      let rest = '';
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => {
        rest += chunk;
        let i: number;
        while ((i = rest.indexOf('\n')) >= 0) {
          onLine(rest.slice(0, i), stream);
          rest = rest.slice(i + 1);
        }
      });
      s.on('end', () => {
        if (rest) onLine(rest, stream);
        rest = '';
      });
    }
  }
  let stderrTail = '';
  const tailChars = opts.stderrTailChars;
  if (tailChars !== undefined && child.stderr) {
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderrTail += chunk;
      if (stderrTail.length > 2 * tailChars) stderrTail = stderrTail.slice(-tailChars);
    });
  }
  const r = await child;
  const result: RunResult = {
    argv: [file, ...args],
    exitCode: r.exitCode ?? null,
    signal: r.signal ?? null,
    stdout: String(r.stdout ?? ''),
    stderr: tailChars === undefined ? String(r.stderr ?? '') : stderrTail.slice(-tailChars),
    durationMs: Date.now() - startedAt,
  };
  const cancelled = Boolean(r.isCanceled);
  const timedOut = Boolean(r.timedOut);
  record({
    argv: result.argv,
    startedAt,
    durationMs: result.durationMs,
    exitCode: result.exitCode,
    signal: result.signal,
    cancelled,
    timedOut,
  });
  if (r.failed && r.exitCode === undefined && !cancelled && !timedOut && r.signal === undefined) {
    // execa could not start it at all (permissions, a bad interpreter line…).
    throw new RunError({ ...result, stderr: String(r.message ?? ''), cancelled, timedOut });
  }
  if ((r.failed || cancelled || timedOut) && !(opts.allowFailure && !cancelled && !timedOut)) {
    throw new RunError({ ...result, cancelled, timedOut });
  }
  return result;
}

export interface DetachedOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** File that receives the program's stdout and stderr (appended). */
  outputFile?: string;
  searchPath?: string[];
}

/**
 * Start a long-lived program in its own session so it outlives us (VMs survive agent restarts).
 * Returns once the process exists. The child handle reports its exit while we live; after an
 * agent restart the supervisor learns of it another way.
 */
export function spawnDetached(
  argv: string[],
  opts: DetachedOptions = {},
): { pid: number; argv: string[]; child: ChildProcess } {
  const [program, ...args] = argv;
  if (!program) throw new Error('spawnDetached() needs a program');
  const file = resolveProgram(program, opts.searchPath);
  const startedAt = Date.now();
  const fd = opts.outputFile ? openSync(opts.outputFile, 'a') : 'ignore';
  try {
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    if (child.pid === undefined) throw new ProgramNotFoundError(program, [file]);
    child.unref();
    record({
      argv: [file, ...args],
      startedAt,
      durationMs: Date.now() - startedAt,
      exitCode: null,
      signal: null,
      cancelled: false,
      timedOut: false,
    });
    return { pid: child.pid, argv: [file, ...args], child };
  } finally {
    if (typeof fd === 'number') closeSync(fd);
  }
}
