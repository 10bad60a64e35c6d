/**
 * The boot record: what the supervisor writes next to a VM's pidfile when it starts vfkit (the
 * argv, the closure, the device facts) and updates when the run ends. It is how an agent that
 * restarts adopts a VM and explains a run that ended while no agent watched. Only the supervisor
 * reads it, at adoption; everything else asks the supervisor.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { VmExit } from '../../api/types.ts';
import { fsSentence } from '../../host/fs-errors.ts';
import { vmsDir } from '../../host/names.ts';
import type { VmRuntimePaths } from './runtime-paths.ts';
import type { DeviceFacts } from './vfkit-args.ts';

export interface BootRecord {
  name: string;
  argv: string[];
  drvPath: string;
  outPath: string;
  /** What the devices were made from; null in records written before nixvm kept them. */
  facts: DeviceFacts | null;
  startedAt: number;
  pid: number | null;
  paths: VmRuntimePaths;
  /** The console's pty (vfkit's `ptyName`), once known: a restarted agent reads it again. */
  ptyName?: string;
  /** The closure `apply` switched the running guest to, if it did. */
  switchedTo?: { drvPath: string; outPath: string; at: number } | null;
  endedAt?: number;
  exit?: VmExit;
}

/** Write the record atomically; throws an Error whose message is one sentence (the disk is full…). */
export function writeRecord(rec: BootRecord): void {
  const tmp = `${rec.paths.bootRecord}.tmp`;
  try {
    mkdirSync(path.dirname(rec.paths.bootRecord), { recursive: true, mode: 0o700 });
    writeFileSync(tmp, JSON.stringify(rec, null, 2), { mode: 0o600 });
    renameSync(tmp, rec.paths.bootRecord);
  } catch (err) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // Nothing more to clean up on a disk that refuses writes.
    }
    throw new Error(fsSentence(`write the boot record of VM ${JSON.stringify(rec.name)}`, rec.paths.bootRecord, err));
  }
}

export function readRecord(file: string): BootRecord | null {
  try {
    const j = JSON.parse(readFileSync(file, 'utf8')) as BootRecord;
    if (typeof j.name !== 'string' || !j.paths || typeof j.paths.pidfile !== 'string') return null;
    if (!Array.isArray(j.argv)) j.argv = [];
    j.facts ??= null;
    // Only a pty's path is ever opened from here (vfkit's are /dev/ttysNNN on macOS).
    if (j.ptyName !== undefined && !(typeof j.ptyName === 'string' && /^\/dev\/(ttys\d+|pts\/\d+)$/.test(j.ptyName)))
      delete j.ptyName;
    const sw = j.switchedTo as { drvPath?: unknown; outPath?: unknown; at?: unknown } | null | undefined;
    if (
      sw !== undefined &&
      sw !== null &&
      !(typeof sw.drvPath === 'string' && typeof sw.outPath === 'string' && typeof sw.at === 'number')
    )
      delete j.switchedTo;
    return j;
  } catch {
    return null;
  }
}

/** The boot records of every VM directory under the state dir (adoption scans them). */
export function allRecords(stateDir: string): BootRecord[] {
  const root = vmsDir(stateDir);
  const recordName = 'boot.json';
  let dirs: string[];
  try {
    dirs = readdirSync(root, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => path.join(root, d.name));
  } catch {
    return [];
  }
  return dirs.map((d) => readRecord(path.join(d, recordName))).filter((r): r is BootRecord => r !== null);
}

/** vfkit writes the bare pid, no newline (pkg/process). */
export function readPid(file: string): number | null {
  try {
    const n = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** When a run without a record began, as far as its pidfile tells. */
export function startedAtOf(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return Date.now();
  }
}

/** vfkit's own output (stdout and stderr) for a run. */
export function vfkitLogPath(paths: VmRuntimePaths): string {
  return path.join(paths.dir, 'vfkit.log');
}
