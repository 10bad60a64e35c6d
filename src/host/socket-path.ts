/**
 * Where a unix socket can live, and whether a socket found somewhere can be trusted.
 *
 * macOS caps sun_path at 104 bytes including the NUL (103 usable), and `~/Library/Application
 * Support/NixVM/…` under a long user name or a test's temp dir can exceed that. Such sockets move
 * to a short private per-user directory: `/tmp/nixvm-<uid>` first (a predictable name in a shared
 * directory, so it is only used when it is a real directory that we own and nobody else can
 * write), else a short folder under the state dir, else `$TMPDIR/nixvm-<uid>` when `$TMPDIR` is
 * not /tmp (on macOS it is per user). The agent takes the first usable place; clients look at the
 * same places in the same order and connect only through directories that pass the same checks,
 * to a socket that we own: another local user who plants `/tmp/nixvm-<uid>` gets neither our
 * agent's socket nor our clients.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { errnoCode } from './fs-errors.ts';

/** Longest socket path macOS accepts (sizeof(sun_path) - 1); Linux allows 107, we use the smaller. */
export const MAX_SOCKET_PATH_BYTES = 103;

export function socketPathFits(p: string): boolean {
  return Buffer.byteLength(p, 'utf8') <= MAX_SOCKET_PATH_BYTES;
}

export function currentUid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : 0;
}

export interface SocketPlaceOptions {
  uid?: number;
  /** `$TMPDIR` (default os.tmpdir()); used as a last place when it is not /tmp itself. */
  tmpdir?: string;
  /** The state dir whose short `s/` folder is a fallback (default: `dir` itself). */
  stateDir?: string;
  /** Which candidate paths may be used at all (vfkit's URL parser misreads some). */
  accept?: (p: string) => boolean;
}

/** `/tmp/nixvm-<uid>`: literal /tmp, because os.tmpdir() on macOS is itself a long /var/folders path. */
export function shortSocketDir(uid: number = currentUid()): string {
  return `/tmp/nixvm-${uid}`;
}

/** The short folder under a state dir that holds sockets whose usual path is too long. */
export function stateSocketDir(stateDir: string): string {
  return path.join(path.resolve(stateDir), 's');
}

/** Who a uid is, for sentences: "uid 501 (alice)" when the name is known. */
export function describeUid(uid: number): string {
  try {
    const line = fs
      .readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(uid));
    const name = line?.split(':')[0];
    if (name) return `uid ${uid} (${name})`;
  } catch {
    // No passwd file to read (macOS keeps users in Directory Services): the number says enough.
  }
  return `uid ${uid}`;
}

/**
 * Why `dir` is not a safe place for our sockets, as the end of a sentence ("… belongs to …"), or
 * null when it is: a real directory (not a symlink), owned by us, not writable by group or others.
 * Its parents must not let anyone else swap it either: each is owned by us or root, and writable
 * by others only when sticky (like /tmp).
 */
export function socketDirProblem(dir: string, uid: number = currentUid()): string | null {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (err) {
    return `${dir} cannot be examined (${(err as NodeJS.ErrnoException).code ?? 'unknown error'})`;
  }
  if (st.isSymbolicLink()) return `${dir} is a symbolic link, not a plain directory`;
  if (!st.isDirectory()) return `${dir} is a file, not a directory`;
  if (st.uid !== uid) return `${dir} belongs to another user (${describeUid(st.uid)})`;
  if ((st.mode & 0o022) !== 0) return `${dir} can be written by other users (mode ${(st.mode & 0o777).toString(8)})`;
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch {
    return `${dir} cannot be resolved`;
  }
  for (let p = path.dirname(real); ; p = path.dirname(p)) {
    let ps: fs.Stats;
    try {
      ps = fs.lstatSync(p);
    } catch {
      return `${p} cannot be examined`;
    }
    if (ps.uid !== uid && ps.uid !== 0)
      return `${p}, a parent of ${dir}, belongs to another user (${describeUid(ps.uid)})`;
    if ((ps.mode & 0o022) !== 0 && (ps.mode & 0o1000) === 0) {
      return `${p}, a parent of ${dir}, can be written by other users and is not sticky`;
    }
    if (p === path.dirname(p)) return null;
  }
}

/**
 * Make `dir` a directory only we can enter: created 0700 if missing; if present it must be a real
 * directory (not a symlink someone planted in /tmp) owned by us, and is tightened to 0700.
 * Returns what is wrong with it (the start of a sentence), or null when it is ours now.
 */
export function makePrivateDir(dir: string, uid: number = currentUid()): string | null {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST' && code !== 'ENOTDIR') return `${dir} cannot be created (${shortReason(err)})`;
  }
  const st = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (!st || st.isSymbolicLink() || !st.isDirectory()) {
    return `${dir} is not a plain directory (a symlink or file is in its place)`;
  }
  if (st.uid !== uid) return `${dir} belongs to another user (${describeUid(st.uid)})`;
  try {
    if ((st.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700);
  } catch (err) {
    return `${dir} cannot be made private (${shortReason(err)})`;
  }
  return null;
}

/** makePrivateDir, throwing its problem as one sentence. */
export function ensurePrivateDir(dir: string, uid: number = currentUid()): void {
  const problem = makePrivateDir(dir, uid);
  if (problem) throw new Error(`${problem}; remove it or set NIXVM_STATE_DIR to a shorter path you own.`);
}

/**
 * The places a socket `name` of `dir` may live, in the order the agent tries them: `dir/name`
 * when it fits, then the private short directories under a hash of `dir/name` (deterministic, so
 * the agent and its clients agree without talking; the hash keeps two state dirs apart). Only
 * places whose path fits are listed.
 */
export function socketCandidates(dir: string, name: string, opts: SocketPlaceOptions = {}): string[] {
  const uid = opts.uid ?? currentUid();
  const preferred = path.join(path.resolve(dir), name);
  const usable = opts.accept ?? (() => true);
  const out: string[] = [];
  if (socketPathFits(preferred) && usable(preferred)) out.push(preferred);
  const hash = crypto.createHash('sha256').update(preferred).digest('hex').slice(0, 12);
  const short = `${hash}-${name}`;
  const tmp = path.resolve(opts.tmpdir ?? os.tmpdir());
  const dirs = [shortSocketDir(uid), stateSocketDir(opts.stateDir ?? dir)];
  if (tmp !== '/tmp' && tmp !== '/private/tmp') dirs.push(path.join(tmp, `nixvm-${uid}`));
  for (const d of dirs) {
    const p = path.join(d, short);
    if (socketPathFits(p) && usable(p) && !out.includes(p)) out.push(p);
  }
  return out;
}

/** Where the agent put a socket, and what it had to pass over (one sentence each). */
export interface PlacedSocket {
  path: string;
  problems: string[];
}

/**
 * The first candidate whose directory can be made private (created 0700, or already ours): the
 * agent's choice. A short directory that is someone else's (or a link, or a file) is passed over
 * with a sentence saying so; it is never used, never deleted. Throws one sentence when no place works.
 */
export function placeSocket(dir: string, name: string, opts: SocketPlaceOptions = {}): PlacedSocket {
  const uid = opts.uid ?? currentUid();
  const passed: string[] = [];
  const preferred = path.join(path.resolve(dir), name);
  for (const p of socketCandidates(dir, name, opts)) {
    const d = path.dirname(p);
    let problem: string | null;
    try {
      problem = p === preferred ? prepareOwnDir(d, uid) : makePrivateDir(d, uid);
    } catch (err) {
      problem = `${d} cannot be prepared (${shortReason(err)})`;
    }
    if (problem) {
      passed.push(problem);
      continue;
    }
    const problems = passed.map(
      (why) => `${why}, so nixvm put ${name} in ${d} instead; remove it to have nixvm use it again.`,
    );
    return { path: p, problems };
  }
  const why = passed.length
    ? `${passed.join('; ')}`
    : `every path for it is longer than ${MAX_SOCKET_PATH_BYTES} bytes`;
  throw new Error(
    `nixvm found no private place for ${name} (${why}); remove those or set NIXVM_STATE_DIR to a shorter path you own.`,
  );
}

/**
 * Where a client finds a socket: the first candidate that holds one in a directory it can trust
 * (a directory that fails socketDirProblem is passed over, and said in `skipped`); when none does,
 * the agent's usual first choice (for the "not running" sentence).
 */
export function findSocket(
  dir: string,
  name: string,
  opts: SocketPlaceOptions = {},
): { path: string | null; candidates: string[]; skipped: string[] } {
  const uid = opts.uid ?? currentUid();
  const candidates = socketCandidates(dir, name, opts);
  const skipped: string[] = [];
  for (const p of candidates) {
    if (!lstatOrNull(path.dirname(p))) continue;
    const problem = socketDirProblem(path.dirname(p), uid);
    if (problem) {
      skipped.push(problem);
      continue;
    }
    if (lstatOrNull(p)) return { path: p, candidates, skipped };
  }
  return { path: candidates[0] ?? null, candidates, skipped };
}

/**
 * Why a client must not connect to `socketPath`, as one sentence, or null: its directory must be
 * safe (socketDirProblem) and the socket ours. Node cannot ask the kernel who is listening
 * (SO_PEERCRED / LOCAL_PEERCRED / getpeereid are not exposed), so the check is on the inode and on
 * the directory chain that decides who could have put it there.
 */
export function untrustedSocket(socketPath: string, uid: number = currentUid()): string | null {
  const dir = path.dirname(path.resolve(socketPath));
  // Nothing there: nothing to trust or distrust (connecting says "not running").
  if (!lstatOrNull(dir)) return null;
  const problem = socketDirProblem(dir, uid);
  if (problem) {
    return `nixvm will not talk to the socket ${socketPath}: ${problem}, so another user could be answering; remove it or start the agent again.`;
  }
  const st = lstatOrNull(socketPath);
  if (st && !st.isSocket()) return `${socketPath} is not a socket; remove it and start the agent again.`;
  if (st && st.uid !== uid) {
    return `nixvm will not talk to the socket ${socketPath}: it belongs to another user (${describeUid(st.uid)}); remove it and start the agent again.`;
  }
  return null;
}

/** The agent's control socket for a state dir: where clients look first (see findSocket). */
export function controlSocketPath(stateDir: string, opts: SocketPlaceOptions = {}): string {
  return findSocket(stateDir, 'control.sock', { stateDir, ...opts }).path ?? path.join(stateDir, 'control.sock');
}

/** Where the agent serves its control socket (see placeSocket). */
export function placeControlSocket(stateDir: string, opts: SocketPlaceOptions = {}): PlacedSocket {
  return placeSocket(stateDir, 'control.sock', { stateDir, ...opts });
}

/**
 * Prepare the directory a socket path lives in: a short fallback gets the full private-dir
 * checks; our own state dir is created and tightened to 0700. Throws one sentence.
 */
export function prepareSocketDir(socketPath: string, uid: number = currentUid()): void {
  const problem = prepareOwnDir(path.dirname(socketPath), uid);
  if (problem) throw new Error(`${problem}; nixvm will not put its socket there.`);
}

/** Our own directory for a socket (the state dir): created, ours, 0700; a link the user made is fine. */
function prepareOwnDir(dir: string, uid: number): string | null {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  if (!st.isDirectory()) return `${dir} is not a directory`;
  if (st.uid !== uid) return `${dir} belongs to another user (${describeUid(st.uid)})`;
  if ((st.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700);
  return null;
}

function shortReason(err: unknown): string {
  const code = errnoCode(err);
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EROFS') return 'the file system is read-only';
  if (code === 'ENOSPC') return 'the disk is full';
  return code ?? String(err);
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}
