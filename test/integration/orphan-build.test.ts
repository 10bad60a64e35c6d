/**
 * A `nix build` the agent started outlived the agent's SIGKILL, working for nobody (issue 16,
 * Low). The agent records the builds it runs; the next agent stops the ones still running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { pidAlive } from '../../src/host/process.ts';
import { SIMULATOR } from '../helpers/agent.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { settles, waitFor, watchChild, type Watched } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));

let root: string | null = null;
let flake: FlakeCopy | null = null;
const children: ChildProcess[] = [];
const orphans: number[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      await settles(watchChild(c, 'a daemon').exited, { what: 'a daemon to stop' });
    }
  }
  for (const pid of orphans.splice(0)) if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  if (root) fs.rmSync(root, { recursive: true, force: true });
  root = null;
  flake?.remove();
  flake = null;
});

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    return `(unreadable: ${(err as Error).message})`;
  }
}

/** The nix build of `flakeDir`'s VM, if one runs (from ps, like a user would find it). */
function nixBuildPid(flakeDir: string, vm: string): number | null {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let cmd: string;
    try {
      cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    if (/\/nix /.test(cmd) && cmd.includes(' build ') && cmd.includes(`${flakeDir}#nixosConfigurations.${vm}.`)) {
      return Number(d);
    }
  }
  return null;
}

describe('a build an agent left running', () => {
  it('is stopped by the next agent', async () => {
    flake = await copyFixture('build', { salt: true });
    flake.write('slow-seconds', '600');
    root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-orphan-')));
    fs.writeFileSync(path.join(root, 'settings.json'), JSON.stringify({ vfkitPath: SIMULATOR }));
    const env = { ...process.env, NIXVM_STATE_DIR: root };
    const daemon = async (): Promise<{ child: ChildProcess; w: Watched }> => {
      const child = spawn(process.execPath, [BIN, 'daemon', '--flake', flake!.dir], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      const w = watchChild(child, 'the daemon', { stdout: true });
      await waitFor(() => w.output().includes('listening on'), { what: 'the daemon to listen', process: w });
      return { child, w };
    };
    const first = await daemon();
    const build = spawn(process.execPath, [BIN, 'build', 'slow'], { env, stdio: 'ignore' });
    children.push(build);
    const pid = await waitFor(() => nixBuildPid(flake!.dir, 'slow'), {
      what: 'the nix build to run',
      process: first.w,
    });
    orphans.push(pid);
    // The agent records a build right after its spawn returns; a kill between exec and that
    // write (microseconds, unless the machine is starved) leaves nothing to reap, so wait for it.
    const journalFile = path.join(root, 'state', 'builds-running.json');
    await waitFor(() => readOr(journalFile).includes(`"pid":${pid}`), {
      what: `the agent to record the build (pid ${pid}) in ${journalFile}`,
      process: first.w,
    });
    first.child.kill('SIGKILL');
    await settles(first.w.exited, { what: 'the daemon to be gone' });
    // The bug: it keeps building for nobody.
    expect(pidAlive(pid)).toBe(true);

    const journal = readOr(journalFile);
    const second = await daemon();
    await waitFor(() => !pidAlive(pid) || fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] === 'Z', {
      what: 'the orphaned nix build to be stopped',
      process: second.w,
    }).catch((err: Error) => {
      // What the second agent decided is in its log, and what it read in the journal.
      const log = readOr(path.join(root!, 'logs', 'agent.log'));
      throw new Error(`${err.message}\njournal the first agent left: ${journal}\nagent.log:\n${log}`);
    });
    expect(fs.readFileSync(path.join(root, 'logs', 'agent.log'), 'utf8')).toContain(
      `stopped the nix build of slow (pid ${pid}) that an earlier agent left running`,
    );
  });
});
