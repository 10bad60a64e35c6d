/**
 * The state dir deleted under a running agent (issue 16, Medium): its lock and socket went with
 * it, the CLI said "not running", a second agent started beside the first (two vfkits for one
 * VM), and the first agent's shutdown deleted the second one's socket. Now the agent notices,
 * makes its lock, socket and its VMs' records again, and never removes a socket it did not make.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import type { AgentPort } from '../../src/api/types.ts';
import { connectControl } from '../../src/control/client.ts';
import { startControlServer } from '../../src/control/server.ts';
import { SIMULATOR } from '../helpers/agent.ts';
import { agentSnapshot, vmSnapshot } from '../helpers/fake-port.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { killVfkitsUnder } from '../helpers/reap.ts';
import { settles, waitFor, watchChild, type Watched } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));

let root: string;
let flake: FlakeCopy;
let env: NodeJS.ProcessEnv;
const daemons: ChildProcess[] = [];

beforeAll(async () => {
  flake = await copyFixture('seed');
});
afterAll(() => flake.remove());

afterEach(async () => {
  for (const d of daemons.splice(0)) {
    if (d.exitCode === null && d.signalCode === null) {
      d.kill('SIGTERM');
      await settles(watchChild(d, 'a daemon').exited, { what: 'a daemon to stop' });
    }
  }
  if (root) {
    killVfkitsUnder(path.join(root, 'state', 'vms'));
    fs.rmSync(root, { recursive: true, force: true });
  }
});

function fresh(): void {
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-statedir-')));
  fs.writeFileSync(path.join(root, 'settings.json'), JSON.stringify({ vfkitPath: SIMULATOR }));
  env = {
    ...process.env,
    NIXVM_STATE_DIR: root,
    NIXVM_LEASES_FILE: path.join(root, 'leases'),
    NIXVM_SIM_BOOT_MS: '200',
  };
}

async function startDaemon(): Promise<{ child: ChildProcess; w: Watched }> {
  const child = spawn(process.execPath, [BIN, 'daemon', '--flake', flake.dir], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  daemons.push(child);
  const w = watchChild(child, 'the daemon', { stdout: true });
  await waitFor(() => w.output().includes('listening on'), { what: 'the daemon to listen', process: w });
  return { child, w };
}

const nixvm = (...args: string[]) => execa(process.execPath, [BIN, ...args], { env, reject: false, timeout: 60_000 });

describe('the state dir deleted under a running agent', () => {
  it('is made again: the CLI reaches the same agent, a second agent is refused, the next one adopts the VM', async () => {
    fresh();
    const first = await startDaemon();
    const started = await nixvm('start', 'minimal-vm');
    expect(started.exitCode, started.stderr).toBe(0);
    const pid = (
      JSON.parse((await nixvm('ls', '--json')).stdout) as { vms: Array<{ name: string; pid: number }> }
    ).vms.find((v) => v.name === 'minimal-vm')!.pid;

    // As `rm -rf` would, while the running VM's supervisor writes there: a file made between the
    // walk and the rmdir is ENOTEMPTY, so walk again (Node retries that, 100 ms apart).
    fs.rmSync(path.join(root, 'state'), { recursive: true, force: true, maxRetries: 10 });
    // The agent notices within a few seconds and makes its lock and socket again.
    await waitFor(async () => (await nixvm('ls')).exitCode === 0, {
      what: 'the CLI to reach the agent again',
      process: first.w,
      intervalMs: 250,
    });
    const lock = JSON.parse(fs.readFileSync(path.join(root, 'state', 'agent.lock'), 'utf8')) as { pid: number };
    expect(lock.pid).toBe(first.child.pid);
    expect(first.w.output()).toContain('the state dir was deleted; its lock and');

    // A second agent is refused, as if nothing had happened.
    const second = await execa(process.execPath, [BIN, 'daemon', '--flake', flake.dir], {
      env,
      reject: false,
      timeout: 30_000,
    });
    expect(second.exitCode).not.toBe(0);
    expect(second.stderr).toMatch(new RegExp(`already running \\(pid ${first.child.pid}`));

    // What the next agent needs to adopt the VM is back: it finds the same vfkit.
    first.child.kill('SIGKILL');
    await settles(first.w.exited, { what: 'the first daemon to be gone' });
    await startDaemon();
    const after = (
      JSON.parse((await nixvm('ls', '--json')).stdout) as { vms: Array<{ name: string; state: string; pid: number }> }
    ).vms;
    expect(after.find((v) => v.name === 'minimal-vm')).toMatchObject({ state: 'running', pid });
    expect((await nixvm('stop', 'minimal-vm')).exitCode).toBe(0);
  });
});

describe('a control socket the agent did not make', () => {
  const port: AgentPort = {
    call: async () => agentSnapshot([vmSnapshot({ name: 'second' })]) as never,
    subscribe: () => () => {},
    attachConsole: () => Promise.reject(new Error('no console here')),
  };

  it('is never deleted when the agent stops (libuv unlinks the path a server listened on)', async () => {
    fresh();
    const sock = path.join(root, 'state', 'control.sock');
    const first = await startControlServer(port, sock);
    fs.rmSync(sock);
    const second = await startControlServer(port, sock);
    try {
      await first.close();
      expect(fs.existsSync(sock), 'the first agent deleted the second one’s socket').toBe(true);
      const c = await connectControl(sock);
      expect((await c.call('snapshot', {})).vms[0]!.name).toBe('second');
      await c.close();
    } finally {
      await second.close();
    }
  });

  it('is left alone by check(), which says another one took its place', async () => {
    fresh();
    const sock = path.join(root, 'state', 'control.sock');
    const first = await startControlServer(port, sock);
    fs.rmSync(sock);
    const second = await startControlServer(port, sock);
    try {
      expect(await first.check()).toBe('taken');
      await first.close();
      expect(fs.existsSync(sock)).toBe(true);
    } finally {
      await second.close();
    }
  });

  it('is made again by check() when ours vanished', async () => {
    fresh();
    const sock = path.join(root, 'state', 'control.sock');
    const server = await startControlServer(port, sock);
    try {
      fs.rmSync(path.join(root, 'state'), { recursive: true });
      expect(await server.check()).toBe('restored');
      const c = await connectControl(sock);
      expect((await c.call('snapshot', {})).vms[0]!.name).toBe('second');
      await c.close();
      expect(await server.check()).toBe('ok');
    } finally {
      await server.close();
    }
    expect(fs.existsSync(sock)).toBe(false);
  });
});
