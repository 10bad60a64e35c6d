/**
 * `nixvm daemon` as a real process + the `nixvm` CLI as real processes, with real nix and the
 * vfkit simulator: the README's story, end to end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { controlSocketPath } from '../../src/host/socket-path.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { SIMULATOR } from '../helpers/agent.ts';
import { killVfkitsUnder } from '../helpers/reap.ts';
import { settles, waitFor, watchChild, type Watched } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));

let flake: FlakeCopy;
let root: string;
let env: NodeJS.ProcessEnv;
let daemon: ChildProcess | null = null;
/** The daemon as the waits race it: a daemon that dies fails them at once, with its output. */
let daemonW: Watched;

async function startDaemon(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'daemon', '--flake', flake.dir], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  daemonW = watchChild(child, 'the daemon', { stdout: true });
  await waitFor(() => daemonW.output().includes('listening on'), { what: 'the daemon to listen', process: daemonW });
  return child;
}

async function nixvm(...args: string[]) {
  return execa(process.execPath, [BIN, ...args], { env, reject: false, timeout: 60_000 });
}

/** `ls --json`'s VMs (the README documents them under `.vms`). */
async function lsJson(): Promise<Array<Record<string, unknown>>> {
  const r = await nixvm('ls', '--json');
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout).vms;
}

/** Runs `f` until `ok` holds for its result, racing the daemon. */
async function until<T>(what: string, f: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  let last: T | undefined;
  return waitFor(
    async () => {
      last = await f();
      return ok(last) ? { v: last } : null;
    },
    { what, process: daemonW, intervalMs: 200, detail: () => `Last: ${JSON.stringify(last)}` },
  ).then((r) => r.v);
}

beforeAll(async () => {
  flake = await copyFixture('seed');
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-cli-')));
  // builder-vm shares a host directory that does not exist yet (made later in a test).
  const builder = flake.file('hosts/builder-vm.nix');
  fs.writeFileSync(
    builder,
    fs.readFileSync(builder, 'utf8').replace('/var/tmp/nixvm-builder-cache', path.join(root, 'builder-cache')),
  );
  env = {
    ...process.env,
    NIXVM_STATE_DIR: root,
    NIXVM_VFKIT: SIMULATOR,
    NIXVM_LEASES_FILE: path.join(root, 'dhcpd_leases'),
    NIXVM_SIM_BOOT_MS: '200',
  };
  daemon = await startDaemon();
});

afterAll(async () => {
  // Stop VMs through the CLI, then the daemon; kill leftovers by pidfile.
  for (const vm of ['minimal-vm', 'builder-vm']) await nixvm('stop', vm);
  daemon?.kill('SIGTERM');
  killVfkitsUnder(path.join(root, 'state', 'vms'));
  fs.rmSync(root, { recursive: true, force: true });
  flake.remove();
});

describe('nixvm CLI against a running daemon', () => {
  it('lists the VMs as a table and as JSON with the contract fields', async () => {
    const table = await nixvm('ls');
    expect(table.exitCode).toBe(0);
    expect(table.stdout).toMatch(/minimal-vm\s+stopped/);
    const vms = await lsJson();
    const m = vms.find((v) => v.name === 'minimal-vm')!;
    for (const k of ['name', 'state', 'stale', 'cpus', 'memoryMiB', 'mac', 'ipv6', 'ipv4', 'shares', 'error'])
      expect(m).toHaveProperty(k);
    expect(m.shares).toEqual([
      { tag: 'persistent', source: path.join(flake.dir, 'persistent'), target: '/persistent' },
    ]);
  });

  it('inspect --json prints the exact vfkit argv', async () => {
    const r = await nixvm('inspect', 'minimal-vm', '--json');
    expect(r.exitCode, r.stderr).toBe(0);
    const { argv } = JSON.parse(r.stdout) as { argv: string[] };
    expect(argv[0]).toBe(SIMULATOR);
    expect(argv).toContain('virtio-net,nat,mac=f6:25:e2:48:58:1e');
  });

  it('starts (building first), gives an IP and ssh command, follows the console, applies an edit, stops', async () => {
    const follow = spawn(process.execPath, [BIN, 'logs', 'minimal-vm', '-f', '-n', '0'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let followed = '';
    follow.stdout!.on('data', (d) => (followed += d));

    const start = await nixvm('start', 'minimal-vm');
    expect(start.exitCode, start.stderr + start.stdout).toBe(0);
    expect((await lsJson()).find((v) => v.name === 'minimal-vm')!.state).toBe('running');

    const ip = await until(
      'an IPv4 address',
      () => nixvm('ip', 'minimal-vm', '-4'),
      (r) => r.exitCode === 0,
    );
    expect(ip.stdout.trim()).toMatch(/^192\.168\.64\.\d+$/);
    const ip6 = await nixvm('ip', 'minimal-vm', '-6');
    expect(ip6.stdout.trim()).toBe('fe80::f425:e2ff:fe48:581e%bridge100');
    const ssh = await nixvm('ssh-command', 'minimal-vm');
    expect(ssh.stdout).toContain(`-l alice ${ip.stdout.trim()}`);

    await waitFor(() => /login:/.test(followed), {
      what: 'the login prompt in `nixvm logs -f`',
      process: [daemonW, watchChild(follow, '`nixvm logs -f`')],
    });
    follow.kill('SIGINT');

    const host = flake.file('hosts/minimal-vm.nix');
    fs.writeFileSync(
      host,
      fs
        .readFileSync(host, 'utf8')
        .replace('services.getty', 'boot.kernelParams = [ "console=hvc0" "cli-edit" ];\n  services.getty'),
    );
    await until('minimal-vm to be stale', lsJson, (vms) => vms.find((v) => v.name === 'minimal-vm')!.stale === true);
    const apply = await nixvm('apply', 'minimal-vm');
    expect(apply.exitCode, apply.stderr).toBe(0);
    const after = (await lsJson()).find((v) => v.name === 'minimal-vm')!;
    expect(after).toMatchObject({ state: 'running', stale: false });
    const insp = JSON.parse((await nixvm('inspect', 'minimal-vm', '--json')).stdout) as { argv: string[] };
    expect(insp.argv.join(' ')).toContain('cli-edit');
  });

  it('distinguishes no such VM, and survives garbage on the socket', async () => {
    const r = await nixvm('start', 'no-such-vm');
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/no VM named "no-such-vm"/i);

    const sock = controlSocketPath(path.join(root, 'state'));
    const c = net.createConnection(sock, () => c.write('this is not json\n\u0000\u0001{]\n'));
    let answer = '';
    c.on('data', (d) => (answer += d));
    // The daemon reads the garbage and answers each line with an error, then we hang up.
    await waitFor(() => answer.split('\n').length > 2, { what: 'the answers to the garbage', process: daemonW });
    c.destroy();
    expect(answer).toMatch(/"code":"bad-request"/);
    expect((await nixvm('ls')).exitCode).toBe(0);
  });

  it('refuses a second daemon, naming the first', async () => {
    const second = await execa(process.execPath, [BIN, 'daemon', '--flake', flake.dir], {
      env,
      reject: false,
      timeout: 30_000,
    });
    expect(second.exitCode).not.toBe(0);
    expect(second.stderr).toMatch(new RegExp(`already running \\(pid ${daemon!.pid}`));
  });

  it('adopts running VMs after the daemon is killed with SIGKILL', async () => {
    const missing = await nixvm('start', 'builder-vm');
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain(
      `shared directory "cache" (${path.join(root, 'builder-cache')}) does not exist; create it`,
    );
    fs.mkdirSync(path.join(root, 'builder-cache'));
    const b = await nixvm('start', 'builder-vm');
    expect(b.exitCode, b.stderr).toBe(0);
    // Followed across the agent's death and restart: the VM and its console log stay.
    const follow = spawn(process.execPath, [BIN, 'logs', 'builder-vm', '-f', '-n', '1'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const followW = watchChild(follow, '`nixvm logs -f builder-vm`', { stdout: true });
    let followErr = '';
    follow.stderr!.on('data', (d) => (followErr += d));
    // It prints the last line once it follows: only then does the agent's death test anything.
    await waitFor(() => followW.output() !== '', { what: '`nixvm logs -f builder-vm` to follow', process: followW });
    const before = await lsJson();
    const running = before.filter((v) => v.state === 'running').map((v) => [v.name, v.pid]);
    expect(running.length).toBe(2);
    daemon!.kill('SIGKILL');
    await settles(daemonW.exited, { what: 'the SIGKILLed daemon to be gone' });
    const dead = await nixvm('ls');
    expect(dead.exitCode).toBe(3);
    expect(dead.stderr).toMatch(/not running/);

    daemon = await startDaemon();
    const after = await lsJson();
    expect(after.filter((v) => v.state === 'running').map((v) => [v.name, v.pid])).toEqual(running);
    const stop = await nixvm('stop', 'builder-vm');
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect((await lsJson()).find((v) => v.name === 'builder-vm')!.state).toBe('stopped');
    // The follower saw the agent go and come back, and printed the shutdown the new agent caused.
    await waitFor(() => followW.output().includes('Reached target System Power Off.'), {
      what: '`nixvm logs -f` to print the power-off lines after the agent restarted',
      process: [daemonW, followW],
      detail: () => `its stderr: ${followErr}`,
    });
    expect(followErr).toContain('the agent went away');
    expect(followErr).toContain('the agent is back');
    follow.kill('SIGINT');
    await settles(followW.exited, { what: 'the follower to stop on Ctrl-C' });
  });
});
