/**
 * The seed's minimal-vm has no sshd: its way in is the serial console. A real daemon and real CLI
 * processes over the simulator's real pty (autologin root, a shell): two clients attached at once
 * (one types, both see), a script piping commands in, a terminal (a pty of the test's own) that
 * detaches with Ctrl-], and the daemon SIGKILLed and started again: the console log goes on and
 * what the guest wrote while no agent ran is there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import type { ConsoleAttachment, ConsoleEvent } from '../../src/api/types.ts';
import { connectControl, type ControlClient } from '../../src/control/client.ts';
import { controlSocketPath } from '../../src/host/socket-path.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { SIMULATOR } from '../helpers/agent.ts';
import { killVfkitsUnder } from '../helpers/reap.ts';
import { settles, waitFor, watchChild, type Watched } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));
const VM = 'minimal-vm';
const PROMPT = `[root@${VM}:~]# `;

let flake: FlakeCopy;
let root: string;
let env: NodeJS.ProcessEnv;
let daemon: ChildProcess | null = null;
let daemonW: Watched;

async function startDaemon(extra: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'daemon', '--flake', flake.dir], {
    env: { ...env, ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  daemonW = watchChild(child, 'the daemon', { stdout: true });
  await waitFor(() => daemonW.output().includes('listening on'), { what: 'the daemon to listen', process: daemonW });
  return child;
}

const nixvm = (args: string[], input?: string) =>
  execa(process.execPath, [BIN, ...args], {
    env,
    reject: false,
    timeout: 60_000,
    ...(input !== undefined ? { input } : {}),
  });

/** An attachment seen from the test: everything it heard, as text. */
interface Seen {
  att: ConsoleAttachment;
  text(): string;
  writer(): boolean | null;
  ended(): string | null;
  client: ControlClient;
}

async function attach(input: boolean): Promise<Seen> {
  const client = await connectControl(controlSocketPath(path.join(root, 'state')));
  let text = '';
  let writer: boolean | null = null;
  let ended: string | null = null;
  const att = await client.attachConsole(VM, { input }, (ev: ConsoleEvent) => {
    if (ev.kind === 'data') text += Buffer.from(ev.data).toString('utf8');
    else if (ev.kind === 'input') writer = ev.writer;
    else ended = ev.reason;
  });
  return { att, client, text: () => text, writer: () => writer, ended: () => ended };
}

const consoleLog = () => fs.readFileSync(path.join(root, 'logs', 'vms', VM, 'console.log'), 'utf8');

/**
 * `nixvm <args>` on a pty of the test's own, 24 rows by 80 columns, whose window the test resizes
 * (TIOCSWINSZ on the master: the kernel sends SIGWINCH, as a terminal emulator's resize does).
 * Python relays our pipes to the pty; window sizes come on fd 3, one "ROWS COLS" line each.
 */
const PTY_RELAY = `
import fcntl, os, select, struct, sys, termios
def winsize(fd, rows, cols): fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
master, slave = os.openpty()
winsize(slave, 24, 80)
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2): os.dup2(slave, fd)
    os.execv(sys.argv[1], sys.argv[1:])
os.close(slave)
ctl = b''
fds = [0, 3, master]
while True:
    for fd in select.select(fds, [], [])[0]:
        try: data = os.read(fd, 65536)
        except OSError: data = b''
        if fd == master:
            if not data: sys.exit(os.waitpid(pid, 0)[1] >> 8)
            os.write(1, data)
        elif not data: fds.remove(fd)
        elif fd == 0: os.write(master, data)
        else:
            ctl += data
            while b'\\n' in ctl:
                line, ctl = ctl.split(b'\\n', 1)
                rows, cols = map(int, line.split())
                winsize(master, rows, cols)
`;

function onTerminal(args: string[]): { w: Watched; type(s: string): void; resize(rows: number, cols: number): void } {
  const child = spawn('python3', ['-c', PTY_RELAY, process.execPath, BIN, ...args], {
    env,
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
  });
  const w = watchChild(child, `nixvm ${args.join(' ')} on a pty`, { stdout: true });
  const ctl = child.stdio[3] as NodeJS.WritableStream;
  return { w, type: (s) => child.stdin!.write(s), resize: (rows, cols) => ctl.write(`${rows} ${cols}\n`) };
}

beforeAll(async () => {
  flake = await copyFixture('seed');
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-console-')));
  env = {
    ...process.env,
    NIXVM_STATE_DIR: root,
    NIXVM_VFKIT: SIMULATOR,
    NIXVM_LEASES_FILE: path.join(root, 'dhcpd_leases'),
    NIXVM_SIM_BOOT_MS: '200',
  };
  daemon = await startDaemon();
  const start = await nixvm(['start', VM]);
  expect(start.exitCode, start.stderr + start.stdout).toBe(0);
});

afterAll(async () => {
  await nixvm(['stop', VM]);
  daemon?.kill('SIGTERM');
  killVfkitsUnder(path.join(root, 'state', 'vms'));
  fs.rmSync(root, { recursive: true, force: true });
  flake.remove();
});

describe('the serial console of a VM without sshd', () => {
  it('logs in by itself; one client types, both see it; the input passes on when the typist detaches', async () => {
    const a = await attach(true);
    await waitFor(() => a.text().includes(PROMPT), { what: 'the autologin prompt', process: daemonW, detail: a.text });
    expect(a.text()).toContain(`${VM} login: root (automatic login)`);
    expect(a.writer()).toBe(true);
    const b = await attach(true);
    // The newest client asking for the input has it; the first watches.
    await waitFor(() => b.writer() === true && a.writer() === false, {
      what: 'the input to pass to the second client',
      process: daemonW,
    });
    b.att.write(Buffer.from('echo hello from b\r'));
    for (const s of [a, b])
      await waitFor(() => s.text().includes('hello from b\r\n'), {
        what: 'the echo on both clients',
        process: daemonW,
        detail: s.text,
      });
    // The first one's keys go nowhere while it watches.
    a.att.write(Buffer.from('echo typed by a\r'));
    b.att.write(Buffer.from('hostname\r'));
    await waitFor(() => b.text().includes(`hostname\r\n${VM}\r\n`), {
      what: 'hostname',
      process: daemonW,
      detail: b.text,
    });
    expect(b.text()).not.toContain('typed by a');
    b.att.detach();
    await waitFor(() => a.writer() === true, { what: 'the input back at the first client', process: daemonW });
    a.att.write(Buffer.from('whoami\r'));
    await waitFor(() => a.text().includes('whoami\r\nroot\r\n'), { what: 'whoami', process: daemonW, detail: a.text });
    a.att.detach();
    // The log has the session as lines, not CRLFs.
    await waitFor(() => consoleLog().includes(`${PROMPT}whoami\nroot\n`), {
      what: 'the session in the console log',
      process: daemonW,
    });
  });

  it('a script pipes commands in and gets their output back', async () => {
    const r = await nixvm(['console', VM, '--quiet-ms', '300'], 'uname -a\nsystemctl status\n');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Linux ${VM} 6.6.32 #1-NixOS SMP aarch64 GNU/Linux\n`);
    expect(r.stdout).toContain('    State: running\n');
    expect(r.stdout).not.toContain('\r');
    // Not the screen from before it attached.
    expect(r.stdout).not.toContain('hello from b');
  });

  it('on a terminal: raw keys, the detach key shown and working', async () => {
    // A terminal of our own: python's pty.spawn runs the CLI on a pty and relays our pipes to it.
    const child = spawn(
      'python3',
      ['-c', 'import pty,sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)', process.execPath, BIN, 'console', VM],
      {
        env,
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    const w = watchChild(child, 'nixvm console on a pty', { stdout: true });
    await waitFor(() => w.output().includes('Detach with Ctrl-]'), { what: 'the detach hint', process: w });
    child.stdin!.write('echo raw mode\r');
    // libuv's raw mode keeps ONLCR, so the guest's CRLF reaches the terminal as CR CR LF.
    await waitFor(() => /\nraw mode\r+\n/.test(w.output()), { what: 'the echo', process: w });
    child.stdin!.write('\x1d');
    const exit = await settles(w.exited, { what: 'nixvm console to detach' });
    expect(exit.code, w.output()).toBe(0);
    expect(w.output()).toContain(`Detached from the console of VM "${VM}".`);
  });

  it('passes the window size on: the stty line after a resize, or with --resize typed at the guest prompt', async () => {
    const hinted = onTerminal(['console', VM]);
    await waitFor(() => hinted.w.output().includes('Detach with Ctrl-]'), {
      what: 'the attach message',
      process: hinted.w,
    });
    expect(hinted.w.output()).toContain('run `stty rows 24 cols 80` in it');
    hinted.resize(40, 120);
    await waitFor(() => hinted.w.output().includes('run `stty rows 40 cols 120` in it.)'), {
      what: 'the stty line for the resized window',
      process: hinted.w,
    });
    hinted.type('\x1d');
    expect((await settles(hinted.w.exited, { what: 'nixvm console to detach' })).code, hinted.w.output()).toBe(0);
    expect(consoleLog(), 'stty typed into the guest without --resize').not.toContain('stty rows 40 cols 120');

    const typed = onTerminal(['console', '--resize', VM]);
    await waitFor(() => typed.w.output().includes('stty rows 24 cols 80\r'), {
      what: 'the size typed at attach',
      process: typed.w,
    });
    typed.resize(50, 132);
    await waitFor(() => typed.w.output().includes('stty rows 50 cols 132\r'), {
      what: 'the new size typed',
      process: typed.w,
    });
    // The guest's tty has it: its own stty says so.
    typed.type('stty size\r');
    await waitFor(() => /stty size\r+\n50 132\r+\n/.test(typed.w.output()), {
      what: "the guest's stty to report 50 132",
      process: typed.w,
    });
    typed.type('\x1d');
    expect((await settles(typed.w.exited, { what: 'nixvm console to detach' })).code, typed.w.output()).toBe(0);
  });

  it('goes on after the daemon is SIGKILLed and started again, without losing what the guest wrote meanwhile', async () => {
    // The VM again, now saying a line every 50 ms once booted: what the guest writes while no agent reads.
    expect((await nixvm(['stop', VM])).exitCode).toBe(0);
    daemon!.kill('SIGTERM');
    await settles(daemonW.exited, { what: 'the daemon to stop' });
    daemon = await startDaemon({ NIXVM_SIM_CHATTER_MS: '50' });
    const started = await nixvm(['start', VM]);
    expect(started.exitCode, started.stderr).toBe(0);
    const beats = () => [...consoleLog().matchAll(/nixvm-sim: heartbeat (\d+)/g)].map((m) => Number(m[1]));
    await waitFor(() => beats().length > 3, { what: 'heartbeats in the console log', process: daemonW });
    daemon!.kill('SIGKILL');
    await settles(daemonW.exited, { what: 'the daemon to die' });
    const atKill = beats().at(-1)!;
    daemon = await startDaemon();
    // Re-attached: the screen it had, then live lines.
    const a = await attach(true);
    await waitFor(() => beats().at(-1)! > atKill + 5, { what: 'new heartbeats after the restart', process: daemonW });
    const got = beats();
    // Every heartbeat, in order, none missing: those written while no agent ran waited in the pty.
    expect(got).toEqual(got.map((_, i) => got[0]! + i));
    a.att.write(Buffer.from('echo after restart\r'));
    await waitFor(() => a.text().includes('after restart\r\n'), {
      what: 'the echo after the restart',
      process: daemonW,
      detail: a.text,
    });
    a.att.detach();
  });

  it('--start starts a stopped VM, then attaches: a script gets the answers on stdout, the start on stderr', async () => {
    const stop = await nixvm(['stop', VM]);
    expect(stop.exitCode, stop.stderr).toBe(0);
    const r = await nixvm(['console', '--start', VM, '--quiet-ms', '300'], 'hostname\n');
    expect(r.exitCode, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^${VM}: started \\(running`, 'm'));
    expect(r.stdout, 'the start said on stdout, amid the guest’s answers').not.toContain('started');
    expect(r.stdout).toContain(`hostname\n${VM}\n`);
    const status = await nixvm(['status', VM, '--json']);
    expect(JSON.parse(status.stdout).state).toBe('running');
    // Already running: --start attaches without starting it again.
    const again = await nixvm(['console', '--start', VM, '--quiet-ms', '300'], 'whoami\n');
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).not.toContain('started');
    expect(again.stdout).toContain('whoami\nroot\n');
  });

  it('refuses a VM that is not running, with the way to start it', async () => {
    const r = await nixvm(['console', 'builder-vm']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      'VM "builder-vm" is not running, so it has no console; start it with `nixvm start builder-vm` or attach with `nixvm console --start builder-vm`.',
    );
    const none = await nixvm(['console', 'no-such']);
    expect(none.exitCode).toBe(4);
  });
});
