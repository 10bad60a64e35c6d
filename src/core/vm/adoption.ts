/**
 * Whether a VM's vfkit from an earlier agent can be adopted: its pidfile (or boot record) names a
 * pid that is alive and really a vfkit started for these files (its command line names our
 * pidfile), and whether its REST API answers. Anything else is a stale leftover to clean up.
 */
import { existsSync } from 'node:fs';
import { processCommand } from '../../host/process.ts';
import { readPid, readRecord, startedAtOf, type BootRecord } from './boot-record.ts';
import { truncate } from './ending.ts';
import type { VfkitRest } from './rest.ts';
import type { VmRuntimePaths } from './runtime-paths.ts';

export type AdoptCheck =
  /** Nothing to adopt and nothing left behind worth a word (a finished run). */
  | { kind: 'none' }
  /**
   * Files of a run that is gone (or never was ours); `unfinished` when its end was never recorded,
   * `noPid` when no pid was recorded at all (then only a scan at start-up cleans up).
   */
  | { kind: 'stale'; why: string; record: BootRecord | null; unfinished: boolean; noPid: boolean }
  | { kind: 'live'; pid: number; record: BootRecord; restOk: boolean };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function checkAdoptable(name: string, paths: VmRuntimePaths, rest: VfkitRest): Promise<AdoptCheck> {
  const rec = readRecord(paths.bootRecord);
  const pid = readPid(paths.pidfile) ?? rec?.pid ?? null;
  const finished = rec?.endedAt !== undefined;
  if (pid === null || (finished && !existsSync(paths.pidfile))) {
    return finished
      ? { kind: 'none' }
      : { kind: 'stale', why: 'no pid was recorded', record: rec, unfinished: false, noPid: true };
  }
  const why = await notOurVfkit(pid, paths);
  if (why) return { kind: 'stale', why, record: rec, unfinished: rec !== null && !finished, noPid: false };
  let restOk = false;
  for (let i = 0; i < 3 && !restOk; i++) {
    try {
      await rest.getState({ timeoutMs: 1500 });
      restOk = true;
    } catch {
      await sleep(200 * (i + 1));
    }
  }
  const record: BootRecord = rec
    ? { ...rec, pid }
    : { name, argv: [], drvPath: '', outPath: '', facts: null, startedAt: startedAtOf(paths.pidfile), pid, paths };
  delete record.endedAt;
  delete record.exit;
  return { kind: 'live', pid, record, restOk };
}

/** Null when `pid` is a live vfkit started for these paths; otherwise why not. */
async function notOurVfkit(pid: number, paths: VmRuntimePaths): Promise<string | null> {
  const p = await processCommand(pid);
  if (p === null) return null; // ps failed to run at all: trust the pid and the REST check
  if (p.kind === 'gone') return `pid ${pid} is not running`;
  if (p.stat.startsWith('Z')) return `pid ${pid} has exited`;
  // Exactly our pidfile as --pidfile's value (ps joins argv with spaces), not just a path that ends like it.
  const args = ` ${p.args} `;
  if (!args.includes(` --pidfile ${paths.pidfile} `) && !args.includes(` --pidfile=${paths.pidfile} `)) {
    return `pid ${pid} is another program now (${truncate(args.trim(), 80)})`;
  }
  return null;
}
