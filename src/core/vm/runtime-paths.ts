/**
 * Where one VM's runtime files live: its state dir (pidfile, boot record), its REST socket and its
 * console log. Paths are derived from the VM name alone, so an agent that restarts finds the same
 * files again (that is how it adopts running VMs).
 *
 * The REST socket is the delicate one: macOS caps a unix socket path at 103 bytes and vfkit refuses
 * a longer `--restful-uri` ("socket path length exceeds macOS limits"); vfkit also reads the path
 * through Go's URL parser, which decodes `%xx` and cuts at `?`. Under a long home directory
 * (`~/Library/Application Support/NixVM/vms/<name>/rest.sock`) or with such characters the socket
 * moves to a private short directory under a hash name (socket-path.ts: `/tmp/nixvm-<uid>/`
 * when that is ours, else another private place; the boot record remembers which).
 */
import fs from 'node:fs';
import path from 'node:path';
import { vmDirName, vmsDir } from '../../host/names.ts';
import { makePrivateDir, MAX_SOCKET_PATH_BYTES, placeSocket, type SocketPlaceOptions } from '../../host/socket-path.ts';

/** Longest unix socket path macOS accepts: sizeof(sun_path) - 1 (vfkit checks the same). */
export { MAX_SOCKET_PATH_BYTES };

export interface VmRuntimePaths {
  /** Per-VM state dir: pidfile, boot record, vfkit's own output. */
  dir: string;
  /** Written by vfkit (`--pidfile`): its pid, no newline. vfkit never removes it. */
  pidfile: string;
  /** vfkit's REST API socket; ≤ MAX_SOCKET_PATH_BYTES bytes unless `problem` says why not. */
  restSocket: string;
  /** The host end of the guest's vsock port 22 (vfkit listens there): next to the REST socket, as short. */
  sshSocket?: string;
  /** Per-VM log dir holding the console log and its rotated predecessors. */
  logDir: string;
  /** The serial console of the current run (vfkit truncates it when it starts). */
  consoleLog: string;
  /** JSON record of what was booted, when, with which argv. */
  bootRecord: string;
}

/** The paths, and what placing the REST socket met: problems passed over, or why it has no place. */
export interface PlacedRuntimePaths {
  paths: VmRuntimePaths;
  /** Short socket directories passed over (someone else's, a link…), one sentence each. */
  notes: string[];
  /** The REST socket has no usable place: one sentence; the VM cannot start until it is fixed. */
  problem: string | null;
}

export interface RuntimePathsOptions extends SocketPlaceOptions {
  /** The VM's folder name (VmDirNames decides it; default vmDirName). */
  dirName?: string;
}

/** True when Go's url.ParseRequestURI would hand vfkit a different path than this one. */
function mangledByUrlParser(p: string): boolean {
  // `%` starts an escape, `?` a query; control characters are rejected outright.
  return /[%?\u0000-\u001f\u007f]/.test(p);
}

/**
 * The runtime paths of VM `vm`, with its REST socket placed: in its state dir when the path fits
 * and survives vfkit's URL parser, else in the first private short directory that is ours
 * (created 0700). Never throws: a socket with no usable place comes back with `problem`.
 */
export function placeRuntimePaths(
  stateDir: string,
  logsDir: string,
  vm: string,
  opts: RuntimePathsOptions = {},
): PlacedRuntimePaths {
  const name = opts.dirName ?? vmDirName(vm);
  const dir = path.join(vmsDir(stateDir), name);
  const logDir = path.join(vmsDir(logsDir), name);
  const base = {
    dir,
    pidfile: path.join(dir, 'vfkit.pid'),
    logDir,
    consoleLog: path.join(logDir, 'console.log'),
    bootRecord: path.join(dir, 'boot.json'),
  };
  const preferred = path.join(dir, 'rest.sock');
  if (Buffer.byteLength(preferred) <= MAX_SOCKET_PATH_BYTES && !mangledByUrlParser(preferred)) {
    return { paths: withSsh({ ...base, restSocket: preferred }, stateDir, opts), notes: [], problem: null };
  }
  try {
    const placed = placeSocket(dir, 'rest.sock', {
      ...opts,
      stateDir,
      accept: (p) => p !== preferred && !mangledByUrlParser(p),
    });
    return {
      paths: withSsh({ ...base, restSocket: placed.path }, stateDir, opts),
      notes: placed.problems,
      problem: null,
    };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return {
      paths: withSsh({ ...base, restSocket: preferred }, stateDir, opts),
      notes: [],
      problem: `VM ${JSON.stringify(vm)} cannot start: ${why.charAt(0).toLowerCase()}${why.slice(1)}`,
    };
  }
}

/**
 * vfkit listens on a vsock socket at `url.Parse("unix://:" + path).EscapedPath()` (pkg/vf/vsock.go):
 * a path with a space, a quote, `%`, `!`, `(`, non-ASCII… would come out %-escaped, another file.
 * Only the characters Go leaves alone in a URL path (and no comma, which ends a --device option).
 */
export function vsockPathUsable(p: string): boolean {
  return /^[A-Za-z0-9\-_.~$&+:;=@/]+$/.test(p) && Buffer.byteLength(p) <= MAX_SOCKET_PATH_BYTES;
}

/** The ssh vsock socket: `ssh.sock` in the VM's state dir when vfkit reads that path as is, else in a short private place. */
function withSsh(p: VmRuntimePaths, stateDir: string, opts: RuntimePathsOptions): VmRuntimePaths {
  const preferred = path.join(p.dir, 'ssh.sock');
  if (vsockPathUsable(preferred)) return { ...p, sshSocket: preferred };
  try {
    const placed = placeSocket(p.dir, 'ssh.sock', { ...opts, stateDir, accept: vsockPathUsable });
    return { ...p, sshSocket: placed.path };
  } catch {
    // No usable place: the VM runs without the vsock route (ssh falls back to its addresses).
    return p;
  }
}

/** placeRuntimePaths' paths (for callers that only read them). */
export function runtimePaths(
  stateDir: string,
  logsDir: string,
  vm: string,
  opts: RuntimePathsOptions = {},
): VmRuntimePaths {
  return placeRuntimePaths(stateDir, logsDir, vm, opts).paths;
}

/** True when the REST socket had to move out of the VM's state dir. */
export function usesShortSocketDir(p: VmRuntimePaths): boolean {
  return path.dirname(p.restSocket) !== p.dir;
}

/**
 * Create the directories vfkit writes into (state dir 0700, log dir) before it is spawned; vfkit
 * itself creates none of them and fails with "no such file or directory" otherwise.
 */
export function prepareRuntimeDirs(p: VmRuntimePaths, uid?: number): void {
  fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  if ((fs.statSync(p.dir).mode & 0o777) !== 0o700) fs.chmodSync(p.dir, 0o700);
  fs.mkdirSync(p.logDir, { recursive: true, mode: 0o700 });
  for (const socket of [p.restSocket, p.sshSocket]) {
    if (!socket || path.dirname(socket) === p.dir) continue;
    const problem = makePrivateDir(path.dirname(socket), uid);
    if (problem) throw new Error(`${problem}; vfkit's socket cannot go there, remove it and start the VM again.`);
  }
}
