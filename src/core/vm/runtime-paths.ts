/**
 * Where one VM's runtime files live: its state dir (pidfile, boot record), its REST socket and its
 * console log. Paths are derived from the VM name alone, so an agent that restarts finds the same
 * files again (that is how it adopts running VMs).
 *
 * The REST socket is the delicate one: macOS caps a unix socket path at 103 bytes and vfkit refuses
 * a longer `--restful-uri` ("socket path length exceeds macOS limits"); vfkit also reads the path
 * through Go's URL parser, which decodes `%xx` and cuts at `?`. Under a long home directory
 * (`~/Library/Application Support/NixVM/vms/<name>/rest.sock`) or with such characters the socket
 * moves to the private per-user directory `/tmp/nixvm-<uid>/` under a short hash name.
 */
import fs from 'node:fs';
import path from 'node:path';
import { shortHash, vmDirName } from '../../host/names.ts';
import { ensurePrivateDir, MAX_SOCKET_PATH_BYTES, shortSocketDir } from '../../host/socket-path.ts';

/** Longest unix socket path macOS accepts: sizeof(sun_path) - 1 (vfkit checks the same). */
export { MAX_SOCKET_PATH_BYTES };

export interface VmRuntimePaths {
  /** Per-VM state dir: pidfile, boot record, vfkit's own output. */
  dir: string;
  /** Written by vfkit (`--pidfile`): its pid, no newline. vfkit never removes it. */
  pidfile: string;
  /** vfkit's REST API socket; always ≤ MAX_SOCKET_PATH_BYTES bytes. */
  restSocket: string;
  /** Per-VM log dir holding the console log and its rotated predecessors. */
  logDir: string;
  /** The serial console of the current run (vfkit truncates it when it starts). */
  consoleLog: string;
  /** JSON record of what was booted, when, with which argv. */
  bootRecord: string;
}

function currentUid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : 0;
}

/** True when Go's url.ParseRequestURI would hand vfkit a different path than this one. */
function mangledByUrlParser(p: string): boolean {
  // `%` starts an escape, `?` a query; control characters are rejected outright.
  return /[%?\u0000-\u001f\u007f]/.test(p);
}

/**
 * The runtime paths of VM `vm`. Pure except in the fallback case, where the private socket
 * directory is created (0700) and checked to be a real directory owned by us: a socket path is only
 * safe if nobody else can swap what it points at.
 */
export function runtimePaths(
  stateDir: string,
  logsDir: string,
  vm: string,
  uid: number = currentUid(),
): VmRuntimePaths {
  const name = vmDirName(vm);
  const dir = path.join(path.resolve(stateDir), 'vms', name);
  const logDir = path.join(path.resolve(logsDir), 'vms', name);
  const preferred = path.join(dir, 'rest.sock');
  let restSocket = preferred;
  if (Buffer.byteLength(preferred) > MAX_SOCKET_PATH_BYTES || mangledByUrlParser(preferred)) {
    const short = shortSocketDir(uid);
    ensurePrivateDir(short, uid);
    restSocket = path.join(short, `vm-${shortHash(preferred)}.sock`);
  }
  return {
    dir,
    pidfile: path.join(dir, 'vfkit.pid'),
    restSocket,
    logDir,
    consoleLog: path.join(logDir, 'console.log'),
    bootRecord: path.join(dir, 'boot.json'),
  };
}

/** True when the REST socket had to move out of the VM's state dir. */
export function usesShortSocketDir(p: VmRuntimePaths): boolean {
  return path.dirname(p.restSocket) !== p.dir;
}

/**
 * Create the directories vfkit writes into (state dir 0700, log dir) before it is spawned; vfkit
 * itself creates none of them and fails with "no such file or directory" otherwise.
 */
export function prepareRuntimeDirs(p: VmRuntimePaths, uid: number = currentUid()): void {
  fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  if ((fs.statSync(p.dir).mode & 0o777) !== 0o700) fs.chmodSync(p.dir, 0o700);
  fs.mkdirSync(p.logDir, { recursive: true, mode: 0o700 });
  if (usesShortSocketDir(p)) ensurePrivateDir(path.dirname(p.restSocket), uid);
}
