/**
 * One agent per user: a lock file in the state dir naming its holder (pid, start time, argv).
 * Created atomically with link(2) from a fully written temp file, so a reader never sees a
 * half-written lock. A lock whose holder is gone (dead pid, or the pid now belongs to a process
 * that started later or is not nixvm) is taken over.
 */
import fs from 'node:fs';
import path from 'node:path';
import { resolvePaths } from './paths.ts';
import { pidAlive } from './process.ts';
import { run as defaultRun, type RunOptions, type RunResult } from './runner.ts';

export const LOCK_FILE = 'agent.lock';

export interface LockHolder {
  pid: number;
  /** Epoch ms when the holder took the lock. */
  startedAt: number;
  argv: string[];
}

export type Runner = (argv: string[], opts?: RunOptions) => Promise<RunResult>;

export class AlreadyRunningError extends Error {
  readonly holder: LockHolder;
  readonly lockPath: string;
  constructor(holder: LockHolder, lockPath: string) {
    const since = new Date(holder.startedAt).toISOString();
    const cmd = holder.argv
      .map((a) => path.basename(a))
      .slice(0, 3)
      .join(' ');
    super(
      `Another nixvm agent is already running (pid ${holder.pid}, ${cmd || 'unknown command'}, since ${since}); ` +
        `use \`nixvm ls\` to talk to it, or quit it (NixVM menubar → Quit, or \`kill ${holder.pid}\`) before starting another.`,
    );
    this.name = 'AlreadyRunningError';
    this.holder = holder;
    this.lockPath = lockPath;
  }
}

export interface InstanceLock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Remove the lock if it is still ours. Idempotent; also runs on process exit. */
  release(): void;
  /**
   * Is the lock file still ours? When it is gone (its directory deleted under us) take it again:
   * 'restored'; when another live agent holds it now: 'taken' (this agent should step down).
   */
  check(): Promise<'ok' | 'restored' | 'taken'>;
}

export interface LockOptions {
  /** Default: resolvePaths().stateDir. */
  stateDir?: string;
  /** What we record as our identity (default: this process). */
  pid?: number;
  argv?: string[];
  /** The runner used for `ps` (tests inject one). */
  run?: Runner;
}

function parseHolder(text: string): LockHolder | null {
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (
      typeof v.pid === 'number' &&
      Number.isInteger(v.pid) &&
      v.pid > 0 &&
      typeof v.startedAt === 'number' &&
      Array.isArray(v.argv) &&
      v.argv.every((a) => typeof a === 'string')
    ) {
      return { pid: v.pid, startedAt: v.startedAt, argv: v.argv };
    }
  } catch {
    // Falls through: unreadable content is no holder.
  }
  return null;
}

function readHolder(lockPath: string): { holder: LockHolder | null; raw: string } | null {
  try {
    const raw = fs.readFileSync(lockPath, 'utf8');
    return { holder: parseHolder(raw), raw };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** `ps -o lstart=` prints e.g. "Mon May  6 09:01:02 2024" (LC_ALL=C) on both macOS and Linux. */
const LSTART = /^\s*([A-Z][a-z]{2}\s+[A-Z][a-z]{2}\s+\d{1,2}\s+\d{1,2}:\d{2}:\d{2}\s+\d{4})\s*$/;

/**
 * Is the live process `holder.pid` really the holder? Asked of `ps`: the process must have started
 * before the lock was written, and its command line must still name the holder's program.
 * When ps cannot answer we assume it is the holder (refusing to start beats two agents).
 */
export async function isHolderProcess(holder: LockHolder, run: Runner = defaultRun): Promise<boolean> {
  if (!pidAlive(holder.pid)) return false;
  const env = { LC_ALL: 'C', LANG: 'C' };
  let start: RunResult;
  let args: RunResult;
  try {
    [start, args] = await Promise.all([
      run(['ps', '-o', 'lstart=', '-p', String(holder.pid)], { allowFailure: true, env, timeoutMs: 5000 }),
      run(['ps', '-ww', '-o', 'args=', '-p', String(holder.pid)], { allowFailure: true, env, timeoutMs: 5000 }),
    ]);
  } catch {
    return true;
  }
  // ps exits 1 when the pid vanished between kill(0) and now.
  if (args.exitCode !== 0 || !args.stdout.trim()) return pidAlive(holder.pid) && args.exitCode !== 1;
  const m = LSTART.exec(start.stdout);
  if (m?.[1]) {
    const startedAt = Date.parse(m[1]);
    // lstart has 1 s resolution; a process that began after the lock was written is a newcomer.
    if (Number.isFinite(startedAt) && startedAt > holder.startedAt + 1500) return false;
  }
  return commandMatches(args.stdout.trim(), holder.argv);
}

/**
 * Does the command line `ps` shows belong to the program recorded in the lock? ps shows argv as
 * invoked (maybe relative), the lock has node's resolved argv, so compare the script's (or, for an
 * app binary, the executable's) base name.
 */
export function commandMatches(psArgs: string, argv: string[]): boolean {
  const main = argv.length > 1 ? argv[1] : argv[0];
  if (!main) return false;
  return psArgs.includes(path.basename(main));
}

function tryLink(lockPath: string, content: string): boolean {
  const tmp = `${lockPath}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  fs.writeFileSync(tmp, content, { mode: 0o644 });
  try {
    fs.linkSync(tmp, lockPath);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Remove a stale lock, but only if it still holds the content we judged stale: two newcomers
 * racing to take over must not delete each other's fresh lock. A rename to a unique name is
 * atomic; if what we renamed is not what we judged, put it back.
 */
function removeIfUnchanged(lockPath: string, staleRaw: string): void {
  const aside = `${lockPath}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    fs.renameSync(lockPath, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const got = fs.readFileSync(aside, 'utf8');
  if (got === staleRaw) {
    fs.rmSync(aside, { force: true });
    return;
  }
  // Someone else's fresh lock: restore it unless yet another one appeared meanwhile.
  try {
    fs.linkSync(aside, lockPath);
  } catch {
    // A newer lock exists; theirs wins, ours is dropped.
  }
  fs.rmSync(aside, { force: true });
}

/** Who holds the lock right now and whether they are alive (for `nixvm status`-like callers). */
export async function readInstanceLock(
  stateDir: string = resolvePaths().stateDir,
  run: Runner = defaultRun,
): Promise<{ holder: LockHolder; live: boolean } | null> {
  const got = readHolder(path.join(stateDir, LOCK_FILE));
  if (!got?.holder) return null;
  return { holder: got.holder, live: await isHolderProcess(got.holder, run) };
}

/**
 * Take the per-user instance lock, or throw AlreadyRunningError naming the live holder.
 * The lock is released on process exit; call release() earlier on an orderly shutdown.
 */
export async function acquireInstanceLock(options: LockOptions = {}): Promise<InstanceLock> {
  const stateDir = options.stateDir ?? resolvePaths().stateDir;
  const run = options.run ?? defaultRun;
  fs.mkdirSync(stateDir, { recursive: true });
  const lockPath = path.join(stateDir, LOCK_FILE);
  const me: LockHolder = {
    pid: options.pid ?? process.pid,
    startedAt: Date.now(),
    argv: options.argv ?? [process.execPath, ...process.argv.slice(1)],
  };
  const content = `${JSON.stringify(me)}\n`;

  if (await take(lockPath, content, run)) return makeLock(lockPath, me, content, run);
  throw new Error(`Could not take the nixvm lock ${lockPath}: other processes keep taking it; try again.`);
}

/** Link our lock into place, taking over a stale one; AlreadyRunningError when a live agent holds it. */
async function take(lockPath: string, content: string, run: Runner): Promise<boolean> {
  for (let attempt = 0; attempt < 5; attempt++) {
    if (tryLink(lockPath, content)) return true;
    const got = readHolder(lockPath);
    if (!got) continue; // Released between our link and our read: try again.
    if (got.holder && (await isHolderProcess(got.holder, run))) {
      throw new AlreadyRunningError(got.holder, lockPath);
    }
    // Dead holder, reused pid, or unreadable content (we always write whole files): stale.
    removeIfUnchanged(lockPath, got.raw);
  }
  return false;
}

function makeLock(lockPath: string, holder: LockHolder, content: string, run: Runner = defaultRun): InstanceLock {
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    process.off('exit', release);
    try {
      // Only our own lock: after a takeover by someone who judged us dead, it is theirs.
      if (fs.readFileSync(lockPath, 'utf8') === content) fs.unlinkSync(lockPath);
    } catch {
      // Gone already.
    }
  };
  process.on('exit', release);
  const check = async (): Promise<'ok' | 'restored' | 'taken'> => {
    if (released) return 'ok';
    let now: string | null;
    try {
      now = fs.readFileSync(lockPath, 'utf8');
    } catch {
      now = null;
    }
    if (now === content) return 'ok';
    try {
      fs.mkdirSync(path.dirname(lockPath), { recursive: true, mode: 0o700 });
      return (await take(lockPath, content, run)) ? 'restored' : 'taken';
    } catch (err) {
      // A live agent holds it now: step down. A state dir we cannot write: try again next time.
      return err instanceof AlreadyRunningError ? 'taken' : 'ok';
    }
  };
  return { path: lockPath, holder, release, check };
}
