/**
 * Where a unix socket can live. macOS caps sun_path at 104 bytes including the NUL (103 usable),
 * and `~/Library/Application Support/NixVM/…` under a long user name or a test's temp dir can
 * exceed that; such sockets move to a short private per-user directory in /tmp instead.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Longest socket path macOS accepts (sizeof(sun_path) - 1); Linux allows 107, we use the smaller. */
export const MAX_SOCKET_PATH_BYTES = 103;

export function socketPathFits(p: string): boolean {
  return Buffer.byteLength(p, 'utf8') <= MAX_SOCKET_PATH_BYTES;
}

function currentUid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : 0;
}

/** `/tmp/nixvm-<uid>`: literal /tmp, because os.tmpdir() on macOS is itself a long /var/folders path. */
export function shortSocketDir(uid: number = currentUid()): string {
  return `/tmp/nixvm-${uid}`;
}

/**
 * Make `dir` a directory only we can enter: created 0700 if missing; if present it must be a real
 * directory (not a symlink someone planted in /tmp) owned by us, and is tightened to 0700.
 */
export function ensurePrivateDir(dir: string, uid: number = currentUid()): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (st.isSymbolicLink() || !st.isDirectory()) {
    throw new Error(`${dir} is not a plain directory (a symlink or file is in its place); remove it and try again.`);
  }
  if (st.uid !== uid) {
    throw new Error(
      `${dir} belongs to another user (uid ${st.uid}); remove it or set NIXVM_STATE_DIR to a shorter path you own.`,
    );
  }
  if ((st.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700);
}

/**
 * The path for socket `name` that would live in `dir`: `dir/name` when it fits, else
 * `/tmp/nixvm-<uid>/<hash of dir/name>-<name>` (deterministic, so the agent and its clients
 * agree without talking; the hash keeps two state dirs from sharing a socket).
 */
export function socketPathFor(dir: string, name: string, uid: number = currentUid()): string {
  const preferred = path.join(path.resolve(dir), name);
  if (socketPathFits(preferred)) return preferred;
  const hash = crypto.createHash('sha256').update(preferred).digest('hex').slice(0, 12);
  const short = path.join(shortSocketDir(uid), `${hash}-${name}`);
  if (!socketPathFits(short)) {
    // Only a very long `name` gets here; say so rather than fail later in bind().
    throw new Error(
      `The socket name ${name} is too long for a unix socket path (limit ${MAX_SOCKET_PATH_BYTES} bytes).`,
    );
  }
  return short;
}

/** The agent's control socket for a state dir. */
export function controlSocketPath(stateDir: string, uid: number = currentUid()): string {
  return socketPathFor(stateDir, 'control.sock', uid);
}

/**
 * Prepare the directory a socket path lives in: the short /tmp fallback gets the full private-dir
 * checks; our own state dir is created and tightened to 0700.
 */
export function prepareSocketDir(socketPath: string, uid: number = currentUid()): void {
  const dir = path.dirname(socketPath);
  if (dir === shortSocketDir(uid)) {
    ensurePrivateDir(dir, uid);
    return;
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  if (st.uid !== uid) {
    throw new Error(`${dir} belongs to another user (uid ${st.uid}); nixvm will not put its socket there.`);
  }
  if ((st.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700);
}
