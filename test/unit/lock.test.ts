import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { settles, waitFor, watchChild } from '../helpers/wait.ts';
import {
  AlreadyRunningError,
  LOCK_FILE,
  acquireInstanceLock,
  commandMatches,
  isHolderProcess,
  readInstanceLock,
  type InstanceLock,
} from '../../src/host/lock.ts';

const lockModule = fileURLToPath(new URL('../../src/host/lock.ts', import.meta.url));

let dir: string;
const locks: InstanceLock[] = [];
const children: ChildProcess[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lock-'));
});

afterEach(() => {
  for (const l of locks.splice(0)) l.release();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

async function take(opts: Parameters<typeof acquireInstanceLock>[0] = {}): Promise<InstanceLock> {
  const l = await acquireInstanceLock({ stateDir: dir, ...opts });
  locks.push(l);
  return l;
}

/** Another agent process: takes the lock through the real module and waits. */
async function holderProcess(): Promise<ChildProcess> {
  const script = path.join(dir, 'holder-agent.mjs');
  fs.writeFileSync(
    script,
    `import { acquireInstanceLock } from ${JSON.stringify(lockModule)};
     await acquireInstanceLock({ stateDir: ${JSON.stringify(dir)} });
     process.stdout.write('locked\\n');
     setInterval(() => {}, 1000);`,
  );
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const holder = watchChild(child, 'the lock holder', { stdout: true });
  await waitFor(() => holder.output().includes('locked'), {
    what: 'the other process to take the lock',
    process: holder,
  });
  return child;
}

/** A `sleep` that is running (exec'd, so `ps` shows it as itself). */
async function startSleeper(): Promise<ChildProcess> {
  const c = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(c);
  await settles(once(c, 'spawn'), { what: '`sleep` to start' });
  return c;
}

async function deadPid(): Promise<number> {
  const c = spawn('true', [], { stdio: 'ignore' });
  await settles(watchChild(c, '`true`').exited, { what: '`true` to exit' });
  return c.pid as number;
}

function writeLock(content: unknown): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, LOCK_FILE), typeof content === 'string' ? content : JSON.stringify(content));
}

describe('instance lock', () => {
  it('records pid, start time and argv, and release removes it', async () => {
    const l = await take();
    const onDisk = JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8'));
    expect(onDisk.pid).toBe(process.pid);
    expect(onDisk.argv[0]).toBe(process.execPath);
    expect(Math.abs(onDisk.startedAt - Date.now())).toBeLessThan(10_000);
    l.release();
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    // No temp files left behind.
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('refuses a second agent while the first lives, naming its pid and how to reach it', async () => {
    const child = await holderProcess();
    const err = await acquireInstanceLock({ stateDir: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AlreadyRunningError);
    const e = err as AlreadyRunningError;
    expect(e.holder.pid).toBe(child.pid);
    expect(e.message).toContain(`pid ${child.pid}`);
    expect(e.message).toContain('`nixvm ls` to talk to it');
    expect(e.message).toContain('holder-agent.mjs');
    expect(await readInstanceLock(dir)).toMatchObject({ holder: { pid: child.pid }, live: true });

    // Once it is killed (no chance to clean up), the lock is taken over.
    child.kill('SIGKILL');
    await settles(once(child, 'exit'), { what: 'the SIGKILLed holder to be gone' });
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(true);
    const l = await take();
    expect(l.holder.pid).toBe(process.pid);
  });

  it('is released when the holding process exits normally', async () => {
    const script = path.join(dir, 'short-lived.mjs');
    fs.writeFileSync(
      script,
      `import { acquireInstanceLock } from ${JSON.stringify(lockModule)};
       import fs from 'node:fs';
       const l = await acquireInstanceLock({ stateDir: ${JSON.stringify(dir)} });
       process.stdout.write(String(fs.existsSync(l.path)));`,
    );
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    // 'close': its output is all read by then.
    const [code] = await settles(once(child, 'close'), { what: 'the short-lived holder to finish' });
    expect(code).toBe(0);
    expect(out).toBe('true');
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
  });

  it('refuses a second lock in the same process too', async () => {
    await take();
    await expect(acquireInstanceLock({ stateDir: dir })).rejects.toThrow(`pid ${process.pid}`);
  });

  it('takes over a lock whose pid is dead', async () => {
    const pid = await deadPid();
    writeLock({ pid, startedAt: Date.now() - 60_000, argv: ['/usr/bin/node', '/opt/nixvm/bin/nixvm.js', 'daemon'] });
    expect(await readInstanceLock(dir)).toMatchObject({ live: false });
    const l = await take();
    expect(JSON.parse(fs.readFileSync(l.path, 'utf8')).pid).toBe(process.pid);
  });

  it('takes over a lock whose pid now belongs to a process that started after the lock', async () => {
    const sleeper = await startSleeper();
    writeLock({
      pid: sleeper.pid,
      startedAt: Date.now() - 3_600_000,
      argv: ['/usr/bin/node', '/opt/sleep/bin/sleep', 'daemon'],
    });
    const l = await take();
    expect(l.holder.pid).toBe(process.pid);
    expect(sleeper.exitCode).toBeNull(); // Left alone.
  });

  it('takes over a lock whose pid now runs something that is not nixvm', async () => {
    const sleeper = await startSleeper();
    // Start time cannot tell (the lock claims a later start); the command line can.
    writeLock({
      pid: sleeper.pid,
      startedAt: Date.now() + 60_000,
      argv: ['/usr/bin/node', '/opt/x/bin/nixvm.js', 'daemon'],
    });
    const l = await take();
    expect(l.holder.pid).toBe(process.pid);
  });

  it('takes over a lock file with unreadable content', async () => {
    writeLock('\0\0 not json');
    const l = await take();
    expect(l.holder.pid).toBe(process.pid);
  });

  it('release leaves a lock that someone else took over in place', async () => {
    const l = await acquireInstanceLock({ stateDir: dir });
    const theirs = JSON.stringify({ pid: 1, startedAt: 0, argv: ['/sbin/init'] });
    writeLock(theirs);
    l.release();
    expect(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')).toBe(theirs);
  });

  it('assumes the holder is alive when ps cannot be run (refusing beats two agents)', async () => {
    const sleeper = await startSleeper();
    const failingRun = async (): Promise<never> => {
      throw new Error('ps: not found');
    };
    const holder = { pid: sleeper.pid as number, startedAt: 0, argv: ['/x/nixvm.js'] };
    expect(await isHolderProcess(holder, failingRun)).toBe(true);
  });

  it('matches command lines by the program name, whether ps shows it relative or absolute', () => {
    const argv = ['/usr/local/bin/node', '/Users/me/nixvm/bin/nixvm.js', 'daemon'];
    expect(commandMatches('node bin/nixvm.js daemon', argv)).toBe(true);
    expect(commandMatches('/usr/local/bin/node /Users/me/nixvm/bin/nixvm.js daemon', argv)).toBe(true);
    expect(commandMatches('vim /Users/me/notes.txt', argv)).toBe(false);
    expect(
      commandMatches('/Applications/NixVM.app/Contents/MacOS/NixVM', ['/Applications/NixVM.app/Contents/MacOS/NixVM']),
    ).toBe(true);
  });
});
