/**
 * `nixvm daemon`'s wiring with a scripted agent behind the real control socket: it serves,
 * clients reach it, notices are printed, Ctrl-C shuts it down cleanly, and a refused agent
 * (the lock is held) is exit 1 with the agent's sentence.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VmSnapshot } from '../../src/api/types.ts';
import { main, type CliIo } from '../../src/cli/app.ts';
import { runDaemon, type DaemonAgent } from '../../src/cli/daemon.ts';
import { BUNDLE_ID } from '../../src/host/paths.ts';
import { FakePort, agentSnapshot, collect, flakeSnapshot, vmSnapshot, type Collected } from '../helpers/fake-port.ts';
import { waitFor, watchRun } from '../helpers/wait.ts';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-daemon-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Waits until the daemon says it is listening (failing at once if it ends first). */
function listening(running: Promise<number>, out: Collected, err?: Collected): Promise<boolean> {
  return waitFor(() => out.text().includes('listening on'), {
    what: 'the daemon to listen',
    process: watchRun(running, 'the daemon', () => `${out.text()}${err?.text() ?? ''}`),
  });
}

function io(over: Partial<CliIo> = {}): Partial<CliIo> {
  return { stdout: collect(), stderr: collect(), env: {}, cwd: dir, now: () => 0, ...over };
}

describe('nixvm daemon', () => {
  it('serves the agent on the socket until Ctrl-C, then closes the agent', async () => {
    const socket = path.join(dir, 'control.sock');
    const port = new FakePort(agentSnapshot([vmSnapshot({ name: 'web' })]));
    let closed = 0;
    const agent: DaemonAgent = Object.assign(port, { close: async () => void closed++ });
    const ctl = new AbortController();
    const out = collect();
    const err = collect();
    const flakesSeen: (string[] | undefined)[] = [];
    const running = runDaemon({
      socketPath: socket,
      flakes: ['/flakes/demo'],
      io: { ...(io() as CliIo), stdout: out, stderr: err, signal: ctl.signal },
      createAgent: async (o) => {
        flakesSeen.push(o.flakes);
        return agent;
      },
    });
    await listening(running, out, err);
    expect(flakesSeen).toEqual([['/flakes/demo']]);
    expect(out.text()).toContain(socket);
    expect(out.text()).toContain('flakes: /flakes/demo');
    expect(out.text()).toContain('VMs keep running');

    const stdout = collect();
    expect(await main(['--socket', socket, 'ls', '--json'], io({ stdout }))).toBe(0);
    expect((JSON.parse(stdout.text()) as { vms: VmSnapshot[] }).vms.map((v) => v.name)).toEqual(['web']);

    port.emit({ type: 'notice', notice: { level: 'error', title: 'web crashed', body: 'exit code 1', vm: 'web' } });
    expect(out.text()).toMatch(/error: web: web crashed — exit code 1\n/);

    ctl.abort();
    expect(await running).toBe(0);
    expect(closed).toBe(1);
    expect(err.text()).toBe('');
    expect(out.text()).toMatch(/stopped\.\n$/);
    // Nobody listens any more.
    expect(await main(['--socket', socket, 'ls'], io())).toBe(3);
  });

  it('says which flakes came from --flake (this run only) and how to keep one; a settings-only run says neither', async () => {
    /** The daemon's lines from start to "stopped.", over an agent with these flakes. */
    const banner = async (flakes: ReturnType<typeof flakeSnapshot>[]): Promise<string[]> => {
      const port = new FakePort(agentSnapshot([vmSnapshot({ name: 'web' })], { flakes }));
      const ctl = new AbortController();
      const out = collect();
      const err = collect();
      const running = runDaemon({
        socketPath: path.join(dir, `control-${flakes.length}.sock`),
        io: { ...(io() as CliIo), stdout: out, stderr: err, signal: ctl.signal },
        createAgent: async () => Object.assign(port, { close: async () => {} }),
      });
      await listening(running, out, err);
      ctl.abort();
      expect(await running).toBe(0);
      // Each line after its time of day.
      return out
        .text()
        .trimEnd()
        .split('\n')
        .map((l) => l.replace(/^\d\d:\d\d:\d\d /, ''));
    };

    const lines = await banner([
      flakeSnapshot({ dir: '/flakes/demo' }),
      flakeSnapshot({ dir: '/tmp/try', source: 'command-line' }),
    ]);
    expect(lines[0]).toMatch(
      /^nixvm agent \(pid \d+\) listening on .*; flakes: \/flakes\/demo, \/tmp\/try \(--flake: this run only\); 1 VM\. /,
    );
    expect(lines[1]).toBe('`nixvm flake add DIR` keeps a --flake folder for later runs and the login item.');

    const settingsOnly = await banner([flakeSnapshot({ dir: '/flakes/demo' })]);
    expect(settingsOnly[0]).toContain('; flakes: /flakes/demo; 1 VM.');
    expect(settingsOnly.join('\n')).not.toContain('this run only');
    expect(settingsOnly.join('\n')).not.toContain('nixvm flake add');
  });

  it("exits 1 with the agent's sentence when another agent holds the lock", async () => {
    const socket = path.join(dir, 'control.sock');
    const err = collect();
    const code = await runDaemon({
      socketPath: socket,
      io: { ...(io() as CliIo), stderr: err, signal: new AbortController().signal },
      createAgent: async () => {
        throw new Error(
          'Another nixvm agent is already running (pid 99, node nixvm.js daemon, since 2025-01-01T00:00:00.000Z).',
        );
      },
    });
    expect(code).toBe(1);
    expect(err.text()).toBe(
      'nixvm daemon: Another nixvm agent is already running (pid 99, node nixvm.js daemon, since 2025-01-01T00:00:00.000Z).\n',
    );
    expect(fs.existsSync(socket)).toBe(false);
  });

  it('exits 0 when launchd started it and another agent already runs (no KeepAlive respawn loop)', async () => {
    const held = Object.assign(new Error('Another nixvm agent is already running (pid 99).'), {
      name: 'AlreadyRunningError',
    });
    const run = (env: NodeJS.ProcessEnv) =>
      runDaemon({
        socketPath: path.join(dir, 'control.sock'),
        io: { ...(io() as CliIo), env, stderr: collect(), signal: new AbortController().signal },
        createAgent: async () => {
          throw held;
        },
      });
    expect(await run({ XPC_SERVICE_NAME: BUNDLE_ID })).toBe(0);
    expect(await run({})).toBe(1);
  });

  it('exits 1 and closes the agent when the socket is already served', async () => {
    const socket = path.join(dir, 'control.sock');
    const ctl = new AbortController();
    const first = new FakePort(agentSnapshot([]));
    const out = collect();
    const running = runDaemon({
      socketPath: socket,
      io: { ...(io() as CliIo), stdout: out, signal: ctl.signal },
      createAgent: async () => Object.assign(first, { close: async () => {} }),
    });
    await listening(running, out);
    let closed = 0;
    const err = collect();
    const code = await runDaemon({
      socketPath: socket,
      io: { ...(io() as CliIo), stderr: err, signal: new AbortController().signal },
      createAgent: async () => Object.assign(new FakePort(agentSnapshot([])), { close: async () => void closed++ }),
    });
    expect(code).toBe(1);
    expect(err.text()).toMatch(/^nixvm daemon: .*already serving.*\n$/);
    expect(closed).toBe(1);
    ctl.abort();
    expect(await running).toBe(0);
  });

  it('passes --flake directories as absolute paths and --socket through', async () => {
    const seen: unknown[] = [];
    const code = await main(['daemon', '--flake', 'a', '/b', '--socket', 's.sock'], {
      ...io(),
      runDaemon: async (o) => {
        seen.push({ flakes: o.flakes, socketPath: o.socketPath });
        return 0;
      },
    });
    expect(code).toBe(0);
    expect(seen).toEqual([{ flakes: [path.join(dir, 'a'), '/b'], socketPath: path.join(dir, 's.sock') }]);
  });
});
