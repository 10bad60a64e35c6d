/**
 * The `nixvm` CLI against a scripted agent port: exit codes, what it prints, and what it asks
 * the agent. (End-to-end runs against the real daemon live in the integration tests.)
 */
import { describe, expect, it } from 'vitest';
import type { DiskListing, SshDestination, VmSnapshot } from '../../src/api/types.ts';
import { AgentError } from '../../src/api/errors.ts';
import { main, type CliIo } from '../../src/cli/app.ts';
import { timeOfDay, visibleName } from '../../src/cli/format.ts';
import type { LoginItemStatus } from '../../src/host/launchd.ts';
import { FakePort, agentSnapshot, buildInfo, collect, flakeSnapshot, vmSnapshot } from '../helpers/fake-port.ts';
import { waitFor } from '../helpers/wait.ts';

const NOW = 1_700_000_000_000;
const H = 'c'.repeat(32);

interface Ran {
  code: number;
  out: string;
  err: string;
  connected: string[];
}

async function run(argv: string[], port: FakePort | 'not-running', extra: Partial<CliIo> = {}): Promise<Ran> {
  const stdout = collect();
  const stderr = collect();
  const connected: string[] = [];
  const code = await main(argv, {
    stdout,
    stderr,
    env: {},
    cwd: '/home/u/project',
    now: () => NOW,
    connect: async (p) => {
      connected.push(p);
      if (port === 'not-running') {
        throw new AgentError('not-running', `The nixvm agent is not running (no socket at ${p}).`);
      }
      return port;
    },
    defaultSocketPath: async () => '/state/control.sock',
    exec: async () => {
      throw new Error('this test does not run programs');
    },
    signal: new AbortController().signal,
    runDaemon: async () => {
      throw new Error('this test does not run the daemon');
    },
    loginItem: async () => {
      throw new Error('this test does not touch launchd');
    },
    devSocketPath: async () => null,
    confirm: async () => null,
    settingsFile: async () => {
      throw new Error('this test does not touch settings.json');
    },
    doctorHere: async () => {
      throw new Error('this test does not run doctor here');
    },
    ...extra,
  });
  return { code, out: stdout.text(), err: stderr.text(), connected };
}

function twoVms(): FakePort {
  return new FakePort(
    agentSnapshot([
      vmSnapshot({ name: 'web', state: 'running', ipv4: '192.168.64.7', ipv6: 'fe80::1%bridge100', pid: 100 }),
      vmSnapshot({ name: 'db' }),
    ]),
  );
}

/** Resolves on the next turn of the event loop after pending promise callbacks ran. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function until(cond: () => boolean, what = 'the CLI to get there'): Promise<boolean> {
  return waitFor(cond, { what, intervalMs: 1 });
}

describe('exit codes', () => {
  it('3 with the hint to start the agent when none listens', async () => {
    const r = await run(['ls'], 'not-running');
    expect(r.code).toBe(3);
    expect(r.out).toBe('');
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
    expect(r.err).toContain('/state/control.sock');
    expect(r.err).toContain('nixvm daemon');
    expect(r.err).toContain('NixVM.app');
  });

  it('uses --socket, relative to the working directory', async () => {
    const r = await run(['--socket', 'run/c.sock', 'ls'], 'not-running');
    expect(r.connected).toEqual(['/home/u/project/run/c.sock']);
    expect(r.err).toContain('/home/u/project/run/c.sock');
    // Global options also work after the command name.
    expect((await run(['ls', '--socket', '/x.sock'], 'not-running')).connected).toEqual(['/x.sock']);
  });

  it('finds the dev agent `npm start` runs when nothing answers at the default socket, unless --socket or NIXVM_STATE_DIR say where', async () => {
    const DEV = '/tmp/nixvm-dev-1000/control.sock';
    /** Only the dev agent's socket answers; every socket tried and each look for the dev one recorded. */
    const devOnly = (env: NodeJS.ProcessEnv = {}) => {
      const port = twoVms();
      const tried: string[] = [];
      const devLookups: NodeJS.ProcessEnv[] = [];
      const extra: Partial<CliIo> = {
        env,
        connect: async (p) => {
          tried.push(p);
          if (p === DEV) return port;
          throw new AgentError('not-running', `The nixvm agent is not running (no socket at ${p}).`);
        },
        devSocketPath: async (e) => {
          devLookups.push(e);
          return DEV;
        },
      };
      return { port, tried, devLookups, extra };
    };

    // The README's `npx nixvm ls` after `npm start`: the default place first, then the dev agent's.
    const dev = devOnly();
    const ls = await run(['ls'], dev.port, dev.extra);
    expect(ls.code, ls.err).toBe(0);
    expect(ls.out).toMatch(/^web\s+running/m);
    expect(dev.tried).toEqual(['/state/control.sock', DEV]);
    // The one connection is kept for the rest of the command (ip asks for the addresses, then the VM).
    const both = devOnly();
    both.port.handlers.ips = () => ({ ipv4: '192.168.64.7', ipv6: null });
    expect(await run(['ip', 'web'], both.port, both.extra)).toMatchObject({ code: 0, out: '192.168.64.7\n' });
    expect(both.tried).toEqual(['/state/control.sock', DEV]);

    // --socket: that socket only, and its own "not running" (naming it), never the dev agent.
    const given = devOnly();
    const r = await run(['--socket', '/x.sock', 'ls'], given.port, given.extra);
    expect(r.code).toBe(3);
    expect(r.err).toContain('/x.sock');
    expect(given.tried).toEqual(['/x.sock']);
    expect(given.devLookups, 'looked for the dev agent despite --socket').toEqual([]);

    // NIXVM_STATE_DIR: its socket only (what the tests and a second agent rely on).
    const state = devOnly({ NIXVM_STATE_DIR: '/elsewhere' });
    const s2 = await run(['ls'], state.port, state.extra);
    expect(s2.code).toBe(3);
    expect(state.tried).toEqual(['/state/control.sock']);
    expect(state.devLookups, 'looked for the dev agent despite NIXVM_STATE_DIR').toEqual([]);

    // No dev agent either (none of this user's, or nothing answers there): the default socket's error.
    for (const devPath of [null, DEV]) {
      const tried: string[] = [];
      const none = await run(['ls'], 'not-running', {
        connect: async (p) => {
          tried.push(p);
          throw new AgentError('not-running', `The nixvm agent is not running (no socket at ${p}).`);
        },
        devSocketPath: async () => devPath,
      });
      expect(none.code).toBe(3);
      expect(none.err).toContain('/state/control.sock');
      expect(none.err).not.toContain(DEV);
      expect(tried).toEqual(devPath ? ['/state/control.sock', DEV] : ['/state/control.sock']);
    }
  });

  it('4 for an unknown VM, naming the known ones, and nothing is started', async () => {
    const port = twoVms();
    const r = await run(['start', 'db', 'nope'], port);
    expect(r.code).toBe(4);
    expect(r.err).toBe('nixvm: No VM named "nope" (known VMs: web, db).\n');
    expect(port.calls.map((c) => c.method)).toEqual(['snapshot']);

    expect((await run(['status', 'nope'], twoVms())).code).toBe(4);
    // The agent's own no-such-vm (here from `ips`) maps to 4 as well.
    const ip = await run(['ip', 'nope'], twoVms());
    expect(ip.code).toBe(4);
    expect(ip.err).toBe('nixvm: No VM named nope.\n');
  });

  it("1 with the agent's sentence when a command fails, and no stack trace", async () => {
    const port = twoVms();
    port.handlers.start = () => {
      throw new AgentError(
        'failed',
        'Could not find vfkit (looked in /usr/bin); install it with `brew install vfkit`.',
      );
    };
    const r = await run(['start', 'db'], port);
    expect(r.code).toBe(1);
    expect(r.err).toBe('db: Could not find vfkit (looked in /usr/bin); install it with `brew install vfkit`.\n');
    expect(r.out).toBe('');
  });

  it('1 when a non-agent error escapes, printed as one line', async () => {
    const port = twoVms();
    port.handlers.inspect = () => {
      throw new Error('something odd happened\n    at frame (file.ts:1:1)');
    };
    const r = await run(['inspect', 'web'], port);
    expect(r.code).toBe(1);
    expect(r.err).toBe('nixvm: something odd happened\n');
  });

  it('2 for usage errors, without touching the agent', async () => {
    for (const argv of [
      ['frobnicate'],
      ['ip'],
      ['ip', 'web', '-4', '-6'],
      ['logs', 'web', '-n', 'ten'],
      ['ls', '--bogus'],
      ['login-item', 'maybe'],
      [],
    ]) {
      const port = twoVms();
      const r = await run(argv, port);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).not.toBe('');
      expect(port.calls, argv.join(' ')).toEqual([]);
    }
  });

  it('0 for --help, which documents the exit codes', async () => {
    const r = await run(['--help'], twoVms());
    expect(r.code).toBe(0);
    expect(r.out).toContain('Exit codes:');
    expect(r.out).toMatch(/3\s+the agent is not running/);
    expect(r.out).toMatch(/4\s+no such VM/);
    for (const cmd of [
      'ls',
      'status',
      'start',
      'apply',
      'ip',
      'ssh-command',
      'logs',
      'inspect',
      'watch',
      'daemon',
      'login-item',
    ]) {
      expect(r.out).toContain(cmd);
    }
  });
});

describe('read commands', () => {
  it('ls --json prints {vms, flakes, problems}; each of .vms has the contract fields', async () => {
    const port = twoVms();
    port.snapshot.vms[0]!.shares = [{ tag: 'home', source: '/Users/u', target: '/mnt/home' }];
    port.snapshot.agent.problems = ['Could not find vfkit.'];
    const r = await run(['ls', '--json'], port);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out) as {
      vms: VmSnapshot[];
      flakes: { dir: string; state: string }[];
      problems: string[];
    };
    expect(Object.keys(out)).toEqual(['vms', 'flakes', 'problems']);
    expect(out.flakes.map((f) => [f.dir, f.state])).toEqual([['/flakes/demo', 'ok']]);
    expect(out.problems).toEqual(['Could not find vfkit.']);
    const vms = out.vms;
    expect(vms.map((v) => v.name)).toEqual(['web', 'db']);
    for (const v of vms) {
      for (const k of ['name', 'state', 'stale', 'cpus', 'memoryMiB', 'mac', 'ipv6', 'ipv4', 'shares', 'error']) {
        expect(v).toHaveProperty(k);
      }
    }
    expect(vms[0]!.shares).toEqual([{ tag: 'home', source: '/Users/u', target: '/mnt/home' }]);
    expect(vms[0]!.ipv4).toBe('192.168.64.7');
  });

  it('ls prints the table', async () => {
    const r = await run(['ls'], twoVms());
    expect(r.out.split('\n')[0]).toMatch(/^NAME\s+STATE\s+STALE\s+CPUS\/MEM\s+IP$/);
    expect(r.out).toMatch(/^web\s+running\s+never built\s+2\/2 GiB\s+192\.168\.64\.7$/m);
  });

  it('ls exits 1 when a flake did not evaluate (the table and its error still printed), 0 otherwise', async () => {
    const port = twoVms();
    port.snapshot.flakes = [
      flakeSnapshot({ dir: '/flakes/demo' }),
      flakeSnapshot({
        dir: '/flakes/broken',
        state: 'failed',
        error: 'The flake at /flakes/broken has a syntax error; fix it and save.',
      }),
    ];
    const r = await run(['ls'], port);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^web\s+running/m);
    expect(r.out).toContain('The flake at /flakes/broken has a syntax error; fix it and save.');
    port.snapshot.flakes = [flakeSnapshot({ dir: '/flakes/demo', state: 'evaluating', evaluatingSince: NOW - 3000 })];
    expect((await run(['ls'], port)).code).toBe(0);
    expect(JSON.parse((await run(['ls', '--json'], port)).out).flakes[0].state).toBe('evaluating');
  });

  it('reevaluate exits 1 when a flake did not evaluate and 0 otherwise, as ls; --json prints the flakes with the same code', async () => {
    const port = twoVms();
    let flakes = [flakeSnapshot({ dir: '/flakes/demo' })];
    port.handlers.reevaluate = () => flakes;
    const both = async () => {
      const text = await run(['reevaluate'], port);
      const json = await run(['reevaluate', '--json'], port);
      expect(json.code, `reevaluate --json exits as reevaluate does (${text.out.trim()})`).toBe(text.code);
      expect(json.err, 'nothing on stderr in JSON mode').toBe('');
      return { text, json: JSON.parse(json.out) as unknown };
    };

    let r = await both();
    expect(r.text).toMatchObject({ code: 0, out: '/flakes/demo: evaluated, 2 VMs.\n', err: '' });
    expect(r.json).toEqual(flakes);

    // Still evaluating is not a failure (its sentence says for how long).
    flakes = [
      flakeSnapshot({ dir: '/flakes/demo', state: 'evaluating', evaluating: true, evaluatingSince: NOW - 4000 }),
    ];
    r = await both();
    expect(r.text.code).toBe(0);
    expect(r.text.out).toBe('/flakes/demo is still being evaluated (for 4s); its VMs appear when nix is done.\n');

    // Each way of not evaluating is exit 1, with the flake's own sentence; the fine flake is still reported.
    const failures = [
      flakeSnapshot({
        dir: '/flakes/net',
        state: 'failed',
        errorKind: 'network',
        error:
          'The flake at /flakes/net could not fetch one of its inputs (https://x/y.tar.gz: the host name does not resolve); check the network connection (and any proxy or substituter in between), then run `nixvm reevaluate`.\nerror: …',
      }),
      flakeSnapshot({
        dir: '/flakes/nonix',
        state: 'nix-missing',
        error: '/flakes/nonix cannot be evaluated: could not find nix in your PATH; install Nix.',
      }),
      flakeSnapshot({
        dir: '/flakes/gone',
        state: 'no-such-dir',
        error: 'The flake folder /flakes/gone does not exist; fix the path in Settings.',
      }),
    ];
    for (const failed of failures) {
      flakes = [flakeSnapshot({ dir: '/flakes/demo' }), failed];
      r = await both();
      expect(r.text.code, `a flake in state ${failed.state} makes reevaluate exit 1`).toBe(1);
      expect(r.text.out.split('\n')).toEqual(['/flakes/demo: evaluated, 2 VMs.', failed.error!.split('\n')[0], '']);
      expect(r.json).toEqual(flakes);
    }

    // No agent: 3, and in JSON mode the error as JSON.
    const down = await run(['reevaluate', '--json'], 'not-running');
    expect(down.code).toBe(3);
    expect(JSON.parse(down.out).error.code).toBe('not-running');
  });

  it('status prints one VM, --json its snapshot', async () => {
    const r = await run(['status', 'web'], twoVms());
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^web\n {2}state:\s+running \(pid 100\)/);
    const j = await run(['status', 'db', '--json'], twoVms());
    expect(JSON.parse(j.out)).toMatchObject({ name: 'db', state: 'stopped' });
  });

  it('ip prefers IPv4, -6 gives the link-local, -4 fails with a sentence when there is none', async () => {
    const port = twoVms();
    let ips: { ipv4: string | null; ipv6: string | null } = { ipv4: '192.168.64.7', ipv6: 'fe80::1%bridge100' };
    port.handlers.ips = () => ips;
    expect(await run(['ip', 'web'], port)).toMatchObject({ code: 0, out: '192.168.64.7\n' });
    expect(await run(['ip', 'web', '-6'], port)).toMatchObject({ code: 0, out: 'fe80::1%bridge100\n' });
    expect(await run(['ip', 'web', '--ipv4'], port)).toMatchObject({ code: 0, out: '192.168.64.7\n' });

    ips = { ipv4: null, ipv6: 'fe80::1%bridge100' };
    expect(await run(['ip', 'web'], port)).toMatchObject({ code: 0, out: 'fe80::1%bridge100\n' });
    const r4 = await run(['ip', 'web', '-4'], port);
    expect(r4.code).toBe(1);
    expect(r4.out).toBe('');
    expect(r4.err).toMatch(/^nixvm: web has no IPv4 address yet .*`nixvm status web`\.\n$/);

    ips = { ipv4: null, ipv6: null };
    expect((await run(['ip', 'web'], port)).code).toBe(1);
  });

  it('ip --json exits as the text form does in each case, a failure as {"error"} on stdout', async () => {
    const port = twoVms();
    port.setVm(vmSnapshot({ name: 'db', state: 'stopped', ipv6: 'fe80::2%bridge100' }));
    let ips: { ipv4: string | null; ipv6: string | null } = { ipv4: '192.168.64.7', ipv6: 'fe80::1%bridge100' };
    port.handlers.ips = (p) => (p.vm === 'db' ? { ipv4: null, ipv6: 'fe80::2%bridge100' } : ips);
    const both = async (...argv: string[]) => {
      const text = await run(argv, port);
      const json = await run([...argv, '--json'], port);
      expect(json.code, `nixvm ${argv.join(' ')} --json exits as without --json (${text.err.trim()})`).toBe(text.code);
      expect(json.err, 'nothing on stderr in JSON mode').toBe('');
      return { text, json: JSON.parse(json.out) as unknown };
    };

    // An address: 0, both addresses.
    let r = await both('ip', 'web');
    expect(r.text).toMatchObject({ code: 0, out: '192.168.64.7\n' });
    expect(r.json).toEqual(ips);

    // No IPv4 yet, asked for IPv4: 1 with the sentence; the IPv6 is still there for -6.
    ips = { ipv4: null, ipv6: 'fe80::1%bridge100' };
    r = await both('ip', 'web', '-4');
    expect(r.text.code).toBe(1);
    expect(r.json).toEqual({
      error: { code: 'failed', message: expect.stringMatching(/^web has no IPv4 address yet /) },
    });
    expect((await both('ip', 'web', '-6')).text).toMatchObject({ code: 0, out: 'fe80::1%bridge100\n' });

    // No address at all yet: 1.
    ips = { ipv4: null, ipv6: null };
    r = await both('ip', 'web');
    expect(r.text.code).toBe(1);
    expect(r.json).toMatchObject({
      error: { code: 'failed', message: expect.stringMatching(/^web has no IP address yet/) },
    });

    // Not running: its link-local address follows from the MAC, but nothing answers on it: 1.
    r = await both('ip', 'db');
    expect(r.text).toMatchObject({ code: 1, out: '' });
    expect(r.text.err).toBe('nixvm: db is stopped, so no address of it answers; start it with `nixvm start db`.\n');
    expect(r.json).toEqual({
      error: { code: 'failed', message: 'db is stopped, so no address of it answers; start it with `nixvm start db`.' },
    });

    // No such VM: 4.
    r = await both('ip', 'nope');
    expect(r.text.code).toBe(4);
    expect(r.json).toEqual({ error: { code: 'no-such-vm', message: 'No VM named nope.' } });
  });

  it('inspect --json prints the spec and the exact argv, program first', async () => {
    const port = twoVms();
    const argv = [
      '/opt/bin/vfkit',
      '--cpus',
      '2',
      '--device',
      'virtio-net,nat,mac=5a:94:ef:e4:0c:ee',
      '--pidfile',
      '/s/web/vfkit.pid',
    ];
    port.handlers.inspect = () => ({ spec: null, argv });
    const r = await run(['inspect', 'web', '--json'], port);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ spec: null, argv });
    expect(port.calls.at(-1)).toEqual({ method: 'inspect', params: { vm: 'web' } });
  });

  it("ssh-command prints the command rebuilt from the agent's destination, never the agent's own string", async () => {
    const port = twoVms();
    port.handlers.sshCommand = () => ({
      argv: ['/bin/sh', '-c', 'id > /tmp/pwned'],
      command: 'id > /tmp/pwned',
      target: destination({
        host: 'fe80::1%bridge100',
        ipv4: null,
        ipv6: 'fe80::1%bridge100',
        user: 'alice',
        port: 2222,
      }),
      route: 'ipv6',
    });
    const r = await run(['ssh-command', 'web'], port);
    expect(r).toMatchObject({
      code: 0,
      out: 'ssh -o HostKeyAlias=nixvm-web -o UserKnownHostsFile=/state/vms/web/known_hosts -o StrictHostKeyChecking=accept-new -o LogLevel=ERROR -o IdentityFile=/state/vms/web/keys/nixvm_ed25519 -p 2222 -l alice fe80::1%bridge100\n',
      err: '',
    });
    // Over vsock: ssh runs this nixvm as its ProxyCommand, on the socket the agent named.
    port.handlers.sshCommand = () => ({
      argv: [],
      command: '',
      target: destination({ vsock: '/state/vms/web/ssh.sock' }),
      route: 'vsock',
    });
    const v = await run(['ssh-command', 'web'], port, { selfArgv: ['/usr/bin/node', '/opt/nix vm/bin/nixvm.js'] });
    expect(v.out).toContain(
      `-o "ProxyCommand=/usr/bin/node '/opt/nix vm/bin/nixvm.js' proxy --unix /state/vms/web/ssh.sock"`,
    );
    expect(v.out.trim().endsWith('-l root nixvm-web')).toBe(true);
  });

  it('ssh-config offers the Include line and never claims to have edited ~/.ssh/config', async () => {
    const port = twoVms();
    const r = await run(['ssh-config'], port);
    expect(r.code).toBe(0);
    expect(r.out).toContain('add this line at the top of ~/.ssh/config yourself');
    expect(r.out).toContain('  Include /state/ssh_config\n');
    const j = await run(['ssh-config', '--json'], port);
    expect(JSON.parse(j.out)).toMatchObject({ path: '/state/ssh_config', status: 'not-included' });
  });

  it('logs --json prints the tail as the agent gave it, one JSON value; a VM with no output yet is an empty list, said nowhere else', async () => {
    const port = twoVms();
    port.handlers.logs = (p) => ({
      path: `/logs/${p.vm}/${p.kind}.log`,
      lines: p.vm === 'web' ? ['[nixvm: run started at 2023-11-14T22:13:20.000Z]', 'Welcome to NixOS'] : [],
    });
    const r = await run(['logs', 'web', '--json', '-n', '2'], port);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(r.out)).toEqual({
      path: '/logs/web/console.log',
      lines: ['[nixvm: run started at 2023-11-14T22:13:20.000Z]', 'Welcome to NixOS'],
    });
    expect(port.calls.at(-1)).toEqual({ method: 'logs', params: { vm: 'web', kind: 'console', lines: 2 } });
    // Text mode says "no console output yet" on stderr; JSON mode is the empty list, and stderr stays empty.
    const none = await run(['logs', 'db', '--build', '--json'], port);
    expect(none).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(none.out)).toEqual({ path: '/logs/db/build.log', lines: [] });
    const nope = await run(['logs', 'nope', '--json'], port);
    expect(nope.code).toBe(4);
    expect(JSON.parse(nope.out)).toEqual({ error: { code: 'no-such-vm', message: 'No VM named nope.' } });
  });

  it('ssh-command --json prints the argv nixvm rebuilt, the quoted line and the checked destination', async () => {
    const port = twoVms();
    port.handlers.sshCommand = () => ({
      argv: ['/bin/sh', '-c', 'id > /tmp/pwned'],
      command: 'id > /tmp/pwned',
      target: destination({ user: 'alice' }),
      route: 'ipv4',
    });
    const r = await run(['ssh-command', 'web', '--json'], port);
    expect(r).toMatchObject({ code: 0, err: '' });
    const out = JSON.parse(r.out) as { argv: string[]; command: string; target: SshDestination };
    expect(Object.keys(out)).toEqual(['argv', 'command', 'target']);
    // Never the agent's own argv or command.
    expect(out.argv).toEqual([
      'ssh',
      '-o',
      'HostKeyAlias=nixvm-web',
      '-o',
      'UserKnownHostsFile=/state/vms/web/known_hosts',
      '-o',
      'StrictHostKeyChecking=accept-new',
      '-o',
      'LogLevel=ERROR',
      '-o',
      'IdentityFile=/state/vms/web/keys/nixvm_ed25519',
      '-p',
      '22',
      '-l',
      'alice',
      '192.168.64.7',
    ]);
    // The same line the text form prints.
    expect(out.command).toBe((await run(['ssh-command', 'web'], port)).out.trimEnd());
    expect(out.target).toEqual(destination({ user: 'alice' }));
    // A destination that cannot be checked is a JSON error, exit 1, and no argv.
    port.handlers.sshCommand = () => ({
      argv: [],
      command: '',
      target: destination({ host: 'evil.example; id', ipv4: '192.168.64.7' }),
      route: 'ipv4',
    });
    const bad = await run(['ssh-command', 'web', '--json'], port);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.out)).toEqual({
      error: {
        code: 'failed',
        message: `The agent's ssh destination for "web" is not an address, user and port nixvm can use; it was not run.`,
      },
    });
  });

  it('disk ls --json prints every image as the agent lists it, orphans included', async () => {
    const disks: DiskListing[] = [
      {
        role: 'nix-store',
        path: `/state/images/${H}-nixos-system-web.img`,
        apparentBytes: 340 * 1024 ** 2,
        allocatedBytes: 340 * 1024 ** 2,
        readOnly: true,
        vms: ['web'],
        closure: `/nix/store/${H}-nixos-system-web`,
        orphan: false,
      },
      {
        role: 'writable-store',
        path: '/state/vms/old/store-writable.img',
        apparentBytes: 20 * 1024 ** 3,
        allocatedBytes: 3 * 1024 ** 3,
        readOnly: false,
        vms: ['old'],
        closure: null,
        orphan: true,
      },
    ];
    const port = twoVms();
    port.handlers.disks = () => disks;
    const r = await run(['disk', 'ls', '--json'], port);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(r.out)).toEqual(disks);
    port.handlers.disks = () => [];
    expect(JSON.parse((await run(['disk', 'list', '--json'], port)).out)).toEqual([]);
  });

  it('logs asks for the last N lines of the right log', async () => {
    const port = twoVms();
    port.handlers.logs = (p) => ({
      path: `/logs/${p.vm}/${p.kind}.log`,
      lines: Array.from({ length: p.lines }, (_, i) => `line ${i}`),
    });
    const r = await run(['logs', 'web', '-n', '3', '--build'], port);
    expect(r.out).toBe('line 0\nline 1\nline 2\n');
    expect(port.calls.at(-1)).toEqual({ method: 'logs', params: { vm: 'web', kind: 'build', lines: 3 } });
    await run(['logs', 'web'], port);
    expect(port.calls.at(-1)).toEqual({ method: 'logs', params: { vm: 'web', kind: 'console', lines: 50 } });
  });
});

describe('following', () => {
  it("logs -f prints the tail, then this VM's console lines only, until Ctrl-C", async () => {
    const port = twoVms();
    port.handlers.logs = () => ({ path: '/logs/web/console.log', lines: ['old'] });
    const ctl = new AbortController();
    const stdout = collect();
    const done = run(['logs', 'web', '-f'], port, { signal: ctl.signal, stdout });
    await until(() => stdout.text() === 'old\n');
    expect(port.subscriptions).toEqual([{ logs: [{ vm: 'web', kind: 'console' }] }]);
    port.emit({ type: 'log', vm: 'web', kind: 'console', lines: ['Welcome to NixOS', 'login:'] });
    port.emit({ type: 'log', vm: 'db', kind: 'console', lines: ['not mine'] });
    port.emit({ type: 'log', vm: 'web', kind: 'build', lines: ['not this kind'] });
    ctl.abort();
    const r = await done;
    expect(r.code).toBe(0);
    expect(stdout.text()).toBe('old\nWelcome to NixOS\nlogin:\n');
    expect(port.listenerCount).toBe(0);
  });

  it('logs -f goes on after the agent restarts, from the last line it printed, without repeats', async () => {
    const first = twoVms();
    first.handlers.logs = () => ({ path: '/logs/web/console.log', lines: ['boot 1', 'boot 2'] });
    const second = twoVms();
    // The new agent's tail repeats what was printed, then what the VM wrote meanwhile.
    second.handlers.logs = () => ({
      path: '/logs/web/console.log',
      lines: ['boot 1', 'boot 2', 'live 1', 'meanwhile'],
    });
    let connects = 0;
    const ctl = new AbortController();
    const stdout = collect();
    const stderr = collect();
    const done = run(['logs', 'web', '-f'], first, {
      signal: ctl.signal,
      stdout,
      stderr,
      connect: async (p) => {
        connects += 1;
        if (connects === 1) return first;
        if (connects === 2) throw new AgentError('not-running', `nothing at ${p}`);
        return second;
      },
    });
    await until(() => stdout.text() === 'boot 1\nboot 2\n');
    first.emit({ type: 'log', vm: 'web', kind: 'console', lines: ['live 1'] });
    first.drop();
    await until(
      () => second.listenerCount === 1 && stdout.text().includes('meanwhile'),
      'the second agent to be followed',
    );
    second.emit({ type: 'log', vm: 'web', kind: 'console', lines: ['after'] });
    ctl.abort();
    const r = await done;
    expect(r.code).toBe(0);
    expect(stdout.text()).toBe('boot 1\nboot 2\nlive 1\nmeanwhile\nafter\n');
    expect(stderr.text()).toContain('the agent went away');
    expect(stderr.text()).toContain('the agent is back');
    expect(connects).toBe(3);
  });

  it('logs of a VM that never ran says it has no console output yet, and exits 0', async () => {
    const port = twoVms();
    port.handlers.logs = () => ({ path: '/logs/db/console.log', lines: [] });
    const r = await run(['logs', 'db'], port);
    expect(r.code).toBe(0);
    expect(r.out).toBe('');
    expect(r.err).toBe(
      'db has no console output yet (it has not run since its log was made); `nixvm start db` starts it.\n',
    );
    port.handlers.logs = () => ({ path: null, lines: [] });
    expect((await run(['logs', 'db', '--build'], port)).err).toBe(
      'db has no build log yet; `nixvm build db` builds it.\n',
    );
  });

  it('watch --json prints the snapshot, then only what changed, each line stamped', async () => {
    const port = twoVms();
    const ctl = new AbortController();
    const stdout = collect();
    const done = run(['watch', '--json'], port, { signal: ctl.signal, stdout });
    await until(() => stdout.text().length > 0);
    port.setVm({ ...port.vm('db'), state: 'starting' });
    // A snapshot in which nothing changed sends nothing.
    port.emit({ type: 'snapshot', snapshot: structuredClone(port.snapshot) });
    port.emit({ type: 'notice', notice: { level: 'info', title: 'Build finished', body: 'db is built.', vm: 'db' } });
    ctl.abort();
    expect((await done).code).toBe(0);
    const events = stdout
      .text()
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; at: number; snapshot?: unknown; vms?: Record<string, unknown> });
    expect(events.map((e) => e.type)).toEqual(['snapshot', 'change', 'notice']);
    expect(events.every((e) => e.at === NOW)).toBe(true);
    expect(events[1]).toEqual({ type: 'change', at: NOW, vms: { db: { state: 'starting' } } });
  });

  it('watch --json --full prints every snapshot whole', async () => {
    const port = twoVms();
    const ctl = new AbortController();
    const stdout = collect();
    const done = run(['watch', '--json', '--full'], port, { signal: ctl.signal, stdout });
    await until(() => stdout.text().length > 0);
    port.setVm({ ...port.vm('db'), state: 'starting' });
    ctl.abort();
    await done;
    const events = stdout
      .text()
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; snapshot: { vms: VmSnapshot[] } });
    expect(events.map((e) => e.type)).toEqual(['snapshot', 'snapshot']);
    expect(events[1]!.snapshot.vms.find((v) => v.name === 'db')!.state).toBe('starting');
  });

  it('watch prints human lines for changes, each with the time of day', async () => {
    const port = twoVms();
    const ctl = new AbortController();
    const stdout = collect();
    const done = run(['watch'], port, { signal: ctl.signal, stdout });
    await until(() => stdout.text().includes('db: stopped'));
    port.setVm({ ...port.vm('db'), state: 'starting' });
    ctl.abort();
    await done;
    const t = timeOfDay(NOW);
    expect(stdout.text()).toBe(`${t} web: running\n${t} db: stopped\n${t} db: stopped → starting\n`);
  });
});

describe('actions', () => {
  it('build shows progress lines (evaluating first, elapsed time on each) and waits for the build to end', async () => {
    const port = twoVms();
    const building = (percent: number, done: number, stage: 'evaluating' | 'building' = 'building'): VmSnapshot => ({
      ...port.vm('db'),
      build: buildInfo({
        status: 'building',
        startedAt: NOW,
        progress: {
          buildsDone: done,
          buildsExpected: 3,
          buildsRunning: 1,
          downloadsDone: 0,
          downloadsExpected: 0,
          bytesDone: 0,
          bytesExpected: 0,
          currentDrv: `/nix/store/${H}-etc.drv`,
          phase: null,
          lastLine: `step ${done}`,
          percent,
          stage,
        },
      }),
    });
    // The agent answers as soon as the build is under way, then streams its progress.
    port.handlers.build = () => {
      setImmediate(() => {
        port.setVm(building(0, 0));
        port.setVm(building(33, 1));
        port.setVm(building(66, 2));
        port.setVm({
          ...port.vm('db'),
          builtOutPath: `/nix/store/${H}-nixos-system-db`,
          build: buildInfo({ status: 'succeeded', finishedAt: NOW + 1 }),
        });
      });
      return building(0, 0, 'evaluating');
    };
    const r = await run(['build', 'db'], port, { now: () => NOW + 12_000 });
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      [
        'db: evaluating (12s)',
        `db: building 0% (0/3 builds) etc.drv, 12s | step 0`,
        `db: building 33% (1/3 builds) etc.drv, 12s | step 1`,
        `db: building 66% (2/3 builds) etc.drv, 12s | step 2`,
        `db: built /nix/store/${H}-nixos-system-db`,
        '',
      ].join('\n'),
    );
    expect(port.listenerCount).toBe(0);
  });

  it("a failed build prints the agent's sentence, nix's detail and the log path, exit 1", async () => {
    const port = twoVms();
    port.handlers.apply = () => {
      const failed = {
        ...port.vm('db'),
        build: buildInfo({
          status: 'failed',
          error: 'Building db failed: builder for hello.drv exited with code 1.',
          detail: 'error: builder for hello.drv failed with exit code 1\n> boom',
          logPath: '/logs/db/build.log',
          finishedAt: NOW + 5,
        }),
      };
      port.setVm(failed);
      throw new AgentError('failed', 'Building db failed: builder for hello.drv exited with code 1.');
    };
    const r = await run(['apply', 'db'], port);
    expect(r.code).toBe(1);
    expect(r.err.split('\n')).toEqual([
      'db: Building db failed: builder for hello.drv exited with code 1.',
      '  error: builder for hello.drv failed with exit code 1',
      '  > boom',
      '  full log: /logs/db/build.log (or `nixvm logs db --build`)',
      '',
    ]);
  });

  it('an old failed build is not blamed for a later failure', async () => {
    const port = twoVms();
    port.setVm({
      ...port.vm('db'),
      build: buildInfo({ status: 'failed', error: 'old', detail: 'old detail', finishedAt: NOW - 60_000 }),
    });
    port.handlers.start = () => {
      throw new AgentError('failed', 'vfkit refused the rosetta device: Rosetta is not installed.');
    };
    const r = await run(['start', 'db'], port);
    expect(r.err).toBe('db: vfkit refused the rosetta device: Rosetta is not installed.\n');
  });

  it('several VMs run side by side; one failure makes the exit code 1, the rest still report', async () => {
    const port = twoVms();
    port.handlers.stop = (p) => {
      if (p.vm === 'web') throw new AgentError('failed', 'web did not stop within 30 s; it was killed.');
      return { ...port.vm(p.vm), state: 'stopped' };
    };
    const r = await run(['stop', 'web', 'db'], port);
    expect(r.code).toBe(1);
    expect(r.out).toBe('db: stopped\n');
    expect(r.err).toBe('web: web did not stop within 30 s; it was killed.\n');
    expect(port.calls.filter((c) => c.method === 'stop').map((c) => c.params)).toEqual([{ vm: 'web' }, { vm: 'db' }]);
  });

  it('start reports the state and address the agent returns', async () => {
    const port = twoVms();
    port.handlers.start = (p) => ({ ...port.vm(p.vm), state: 'running', ipv4: '192.168.64.8' });
    const r = await run(['start', 'db'], port);
    expect(r).toMatchObject({ code: 0, out: 'db: started (running, 192.168.64.8)\n', err: '' });
  });

  it('Ctrl-C while a build runs, with no terminal: leaves it to the agent, says how to cancel, exits 130', async () => {
    const port = twoVms();
    port.handlers.build = () => ({ ...port.vm('db'), build: buildInfo({ status: 'building' }) });
    const ctl = new AbortController();
    const done = run(['build', 'db'], port, { signal: ctl.signal });
    await until(() => port.calls.some((c) => c.method === 'build'));
    await tick();
    ctl.abort();
    const r = await done;
    expect(r.code).toBe(130);
    expect(r.err).toBe(
      'Interrupted; the build of db goes on in the agent (`nixvm cancel db` cancels it, `nixvm watch` follows it).\n',
    );
    expect(port.calls.map((c) => c.method)).not.toContain('cancelBuild');
  });

  it('Ctrl-C while a build runs, on a terminal: asks once; yes cancels, no leaves it', async () => {
    for (const [answer, cancels] of [
      ['yes', true],
      ['no', false],
    ] as const) {
      const port = twoVms();
      port.handlers.build = () => ({ ...port.vm('db'), build: buildInfo({ status: 'building' }) });
      port.handlers.cancelBuild = () => ({ ...port.vm('db'), build: buildInfo({ status: 'cancelled' }) });
      const asked: string[] = [];
      const ctl = new AbortController();
      const done = run(['build', 'db'], port, {
        signal: ctl.signal,
        confirm: async (q) => {
          asked.push(q);
          return answer;
        },
      });
      await until(() => port.calls.some((c) => c.method === 'build'));
      await tick();
      ctl.abort();
      const r = await done;
      expect(r.code).toBe(130);
      expect(asked).toEqual(['Cancel the build of db? [y/N] (Ctrl-C again cancels) ']);
      expect(port.calls.some((c) => c.method === 'cancelBuild')).toBe(cancels);
      expect(r.err).toBe(
        cancels
          ? 'Cancelled the build of db.\n'
          : 'Left the build of db running in the agent; `nixvm cancel db` cancels it.\n',
      );
    }
  });

  it('a second Ctrl-C while it asks cancels the build', async () => {
    const port = twoVms();
    port.handlers.start = () => ({ ...port.vm('db'), build: buildInfo({ status: 'building' }) });
    port.handlers.cancelBuild = () => ({ ...port.vm('db'), build: buildInfo({ status: 'cancelled' }) });
    const ctl = new AbortController();
    const later = new Set<() => void>();
    let asked = false;
    const done = run(['start', 'db'], port, {
      signal: ctl.signal,
      // The question is never answered: the second Ctrl-C is.
      confirm: () => {
        asked = true;
        return new Promise(() => {});
      },
      onInterrupt: (fn) => {
        later.add(fn);
        return () => later.delete(fn);
      },
    });
    await until(() => port.calls.some((c) => c.method === 'start'));
    await tick();
    ctl.abort();
    await until(() => asked && later.size === 1, 'the question');
    for (const fn of later) fn();
    const r = await done;
    expect(r.code).toBe(130);
    expect(port.calls.filter((c) => c.method === 'cancelBuild')).toEqual([
      { method: 'cancelBuild', params: { vm: 'db' } },
    ]);
    expect(r.err).toBe('Cancelled the build of db.\n');
    expect(later.size).toBe(0);
  });

  it('cancel stops a build in flight and says when there was none; --all cancels every one', async () => {
    const port = twoVms();
    port.setVm({ ...port.vm('db'), build: buildInfo({ status: 'building' }) });
    port.handlers.cancelBuild = (p) => ({ ...port.vm(p.vm), build: buildInfo({ status: 'cancelled' }) });
    expect(await run(['cancel', 'db', 'web'], port)).toMatchObject({
      code: 0,
      out: 'db: build cancelled\nweb: no build was running\n',
    });
    const all = await run(['cancel', '--all', '--json'], port);
    expect(JSON.parse(all.out).map((x: { vm: string; ok: boolean }) => [x.vm, x.ok])).toEqual([['db', true]]);
  });

  it('the agent going away mid-build is exit 3', async () => {
    const port = twoVms();
    port.handlers.build = () => {
      setImmediate(() => port.drop());
      return { ...port.vm('db'), build: buildInfo({ status: 'building' }) };
    };
    const r = await run(['build', 'db'], port);
    expect(r.code).toBe(3);
  });
});

/** The agent's ssh destination for "web", as the agent makes it. */
function destination(over: Partial<SshDestination> = {}): SshDestination {
  return {
    alias: 'nixvm-web',
    user: 'root',
    port: 22,
    host: '192.168.64.7',
    ipv4: '192.168.64.7',
    ipv6: 'fe80::1%bridge100',
    vsock: null,
    identityFile: '/state/vms/web/keys/nixvm_ed25519',
    knownHostsFile: '/state/vms/web/known_hosts',
    strictHostKeyChecking: 'accept-new',
    ...over,
  };
}
describe('disk reset and grow', () => {
  const IMG = '/state/vms/builder-vm/store-writable.img';
  /** A stopped VM with a writable store image of 3 GiB allocated; diskReset/diskGrow recorded. */
  function builder(name = 'builder-vm'): FakePort {
    const disks = (images: boolean) => ({
      images: images
        ? [
            {
              role: 'writable-store' as const,
              path: IMG,
              apparentBytes: 20 * 1024 ** 3,
              allocatedBytes: 3 * 1024 ** 3,
              readOnly: false,
            },
          ]
        : [],
      preparing: null,
      error: null,
      notice: null,
      canGrow: false,
    });
    const port = new FakePort(agentSnapshot([vmSnapshot({ name, disks: disks(true) })]), {
      diskReset: (p) => vmSnapshot({ name: p.vm, disks: disks(false) }),
      diskGrow: (p) => vmSnapshot({ name: p.vm, disks: disks(true) }),
    });
    return port;
  }
  const resets = (port: FakePort) => port.calls.filter((c) => c.method === 'diskReset').length;

  it('asks on a terminal, naming the VM, the image and its size; only "yes" deletes', async () => {
    const questions: string[] = [];
    let answer: 'yes' | 'no' | 'interrupt' = 'no';
    const confirm = async (q: string) => {
      questions.push(q);
      return answer;
    };
    const port = builder();
    const no = await run(['disk', 'reset', 'builder-vm'], port, { confirm });
    expect(questions).toEqual([
      `Delete the writable store image of builder-vm (${IMG}, 3 GiB on disk)? Everything builder-vm keeps in its writable Nix store is lost. [y/N] `,
    ]);
    expect(no).toMatchObject({ code: 1, out: '', err: 'nixvm: Nothing was deleted.\n' });
    expect(resets(port), 'diskReset calls after "no"').toBe(0);

    answer = 'interrupt';
    expect((await run(['disk', 'reset', 'builder-vm'], port, { confirm })).code).toBe(1);
    expect(resets(port), 'diskReset calls after Ctrl-C').toBe(0);

    answer = 'yes';
    const yes = await run(['disk', 'reset', 'builder-vm'], port, { confirm });
    expect(yes).toMatchObject({
      code: 0,
      out: 'builder-vm: writable store image deleted; its next start makes a new one.\n',
      err: '',
    });
    expect(resets(port)).toBe(1);
  });

  it('--yes deletes without asking; with no terminal and no --yes it refuses in one sentence, exit 2', async () => {
    const asked: string[] = [];
    const confirm = async (q: string) => {
      asked.push(q);
      return null;
    };
    const port = builder();
    const refused = await run(['disk', 'reset', 'builder-vm'], port, { confirm });
    expect(refused.code).toBe(2);
    expect(refused.err).toBe(
      'nixvm: nixvm disk reset deletes everything builder-vm keeps in its writable Nix store; run it in a terminal to be asked, or pass --yes.\n',
    );
    expect(resets(port)).toBe(0);

    asked.length = 0;
    const yes = await run(['disk', 'reset', 'builder-vm', '--yes'], port, { confirm });
    expect(yes.code).toBe(0);
    expect(asked, 'questions asked with --yes').toEqual([]);
    expect(resets(port)).toBe(1);
  });

  it('prints the name through visibleName in the question and the result', async () => {
    const name = 'evil\x1b]0;pwned\x07vm';
    const questions: string[] = [];
    const port = builder(name);
    const r = await run(['disk', 'reset', '--', name], port, {
      confirm: async (q) => {
        questions.push(q);
        return 'yes';
      },
    });
    expect(r.code).toBe(0);
    expect(questions).toHaveLength(1);
    for (const text of [questions[0]!, r.out]) {
      expect(text, 'no raw control characters reach the terminal').not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
      expect(text).toContain(visibleName(name));
    }
  });

  it('--json prints the VM after the reset or the growth; refusals are {"error"} on stdout with the same exit codes', async () => {
    const port = builder();
    const reset = await run(['disk', 'reset', 'builder-vm', '--yes', '--json'], port);
    expect(reset.code).toBe(0);
    expect(JSON.parse(reset.out)).toMatchObject({ name: 'builder-vm', disks: { images: [] } });

    const grow = await run(['disk', 'grow', 'builder-vm', '--json'], port);
    expect(grow.code).toBe(0);
    expect(JSON.parse(grow.out)).toMatchObject({ name: 'builder-vm', disks: { images: [{ path: IMG }] } });

    const noTty = await run(['disk', 'reset', 'builder-vm', '--json'], port);
    expect(noTty.code).toBe(2);
    expect(JSON.parse(noTty.out)).toEqual({
      error: { code: 'usage', message: expect.stringMatching(/^nixvm disk reset deletes everything builder-vm /) },
    });
    const no = await run(['disk', 'reset', 'builder-vm', '--json'], port, { confirm: async () => 'no' });
    expect(no.code).toBe(1);
    expect(JSON.parse(no.out)).toEqual({ error: { code: 'failed', message: 'Nothing was deleted.' } });

    // The agent's refusal (the VM runs) is JSON too.
    port.handlers.diskGrow = () => {
      throw new AgentError('failed', 'Stop builder-vm first: its writable store image is in use.');
    };
    const busy = await run(['disk', 'grow', 'builder-vm', '--json'], port);
    expect(busy).toMatchObject({ code: 1, err: '' });
    expect(JSON.parse(busy.out)).toEqual({
      error: { code: 'failed', message: 'Stop builder-vm first: its writable store image is in use.' },
    });
    expect((await run(['disk', 'grow', 'nope', '--json'], port)).code).toBe(4);
  });
});

describe('ssh', () => {
  it("runs its own ssh towards the agent's destination plus the command after --, and exits with ssh's status", async () => {
    const port = twoVms();
    port.handlers.sshCommand = () => ({
      argv: ['ssh', '-p', '22', 'root@192.168.64.7'],
      command: 'ssh -p 22 root@192.168.64.7',
      target: destination(),
      route: 'ipv4',
    });
    const ran: string[][] = [];
    const r = await run(['ssh', 'web', '--', 'uname', '-a'], port, {
      probeSsh: async () => 'ipv4',
      exec: async (argv) => {
        ran.push(argv);
        // The agent connection is closed before ssh takes over the terminal.
        expect(port.closed).toBe(true);
        return 7;
      },
    });
    expect(ran).toEqual([
      [
        'ssh',
        '-o',
        'ConnectTimeout=10',
        '-o',
        'HostKeyAlias=nixvm-web',
        '-o',
        'UserKnownHostsFile=/state/vms/web/known_hosts',
        '-o',
        'StrictHostKeyChecking=accept-new',
        '-o',
        'LogLevel=ERROR',
        '-o',
        'IdentityFile=/state/vms/web/keys/nixvm_ed25519',
        '-p',
        '22',
        '-l',
        'root',
        '192.168.64.7',
        'uname',
        '-a',
      ],
    ]);
    expect(r.code).toBe(7);
  });

  // Issue 16 (High): whatever answers on the socket, `nixvm ssh` runs no command it was handed.
  it('runs nothing when the answer is a command or a destination it cannot check', async () => {
    const hostile: unknown[] = [
      undefined,
      destination({ host: '192.168.64.7; id', ipv4: '192.168.64.7; id' }),
      destination({ host: '-oProxyCommand=id', ipv4: '-oProxyCommand=id' }),
      destination({ host: 'evil.example', ipv4: 'evil.example' }),
      destination({ user: 'a\nb' }),
      destination({ port: 70000 }),
      destination({ port: '22' as never }),
      destination({ vsock: 'relative/ssh.sock' }),
      destination({ vsock: '/state/x\n.sock' }),
      destination({ identityFile: '-oProxyCommand=id' }),
      destination({ knownHostsFile: '/dev/null\nHost *' }),
      destination({ alias: 'nixvm-web -oProxyCommand=id' }),
      destination({ strictHostKeyChecking: 'no' as never }),
    ];
    for (const target of hostile) {
      const port = twoVms();
      port.handlers.sshCommand = () =>
        ({ argv: ['/bin/sh', '-c', 'id > /tmp/pwned'], command: 'id', target, route: 'ipv4' }) as never;
      const ran: string[][] = [];
      const r = await run(['ssh', 'web'], port, {
        probeSsh: async () => 'ipv4',
        exec: async (argv) => {
          ran.push(argv);
          return 0;
        },
      });
      expect(ran, JSON.stringify(target)).toEqual([]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/ssh destination for "web" is not an address, user and port nixvm can use; it was not run/);
    }
  });

  /**
   * A VM that boots, then gets its vsock socket, then a lease, with sshd answering only at the
   * end; `probes` is what the fake probe saw. Each snapshot the CLI asks for moves it on a step.
   */
  function bootingVm(): { port: FakePort; probes: string[]; answers: () => boolean } {
    const steps: Array<{ state: 'starting' | 'running'; target: SshDestination | null; answers: boolean }> = [
      { state: 'starting', target: null, answers: false },
      { state: 'starting', target: null, answers: false },
      {
        state: 'running',
        target: destination({ vsock: '/state/vms/web/ssh.sock', host: null, ipv4: null }),
        answers: false,
      },
      {
        state: 'running',
        target: destination({ vsock: '/state/vms/web/ssh.sock', host: null, ipv4: null }),
        answers: false,
      },
      { state: 'running', target: destination({ vsock: '/state/vms/web/ssh.sock' }), answers: false },
      { state: 'running', target: destination({ vsock: '/state/vms/web/ssh.sock' }), answers: true },
    ];
    let at = 0;
    const step = () => steps[Math.min(at, steps.length - 1)]!;
    const port = twoVms();
    const probes: string[] = [];
    port.handlers.snapshot = () => {
      const snap = structuredClone(port.snapshot);
      snap.vms = snap.vms.map((v) => (v.name === 'web' ? { ...v, state: step().state } : v));
      at++;
      return snap;
    };
    port.handlers.sshCommand = () => {
      const t = steps[Math.min(at - 1, steps.length - 1)]!.target;
      if (!t) throw new AgentError('failed', 'web is starting.');
      return { argv: [], command: '', target: t, route: 'vsock' };
    };
    const answers = () => steps[Math.min(at - 1, steps.length - 1)]!.answers;
    return { port, probes, answers };
  }

  it('says what it waits for, one line per change without a terminal, until sshd answers', async () => {
    const { port, probes, answers } = bootingVm();
    const ran: string[][] = [];
    const r = await run(['ssh', 'web', '--', 'true'], port, {
      probeSsh: async (d) => {
        probes.push(d.ipv4 ? 'vsock+ipv4' : 'vsock');
        return answers() ? 'vsock' : null;
      },
      exec: async (argv) => {
        ran.push(argv);
        return 0;
      },
    });
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe(
      [
        'nixvm: waiting for web to boot…',
        'nixvm: waiting for sshd on vsock or a DHCP lease…',
        'nixvm: waiting for sshd on vsock or sshd on 192.168.64.7…',
        '',
      ].join('\n'),
    );
    expect(probes).toEqual(['vsock', 'vsock', 'vsock+ipv4', 'vsock+ipv4']);
    expect(ran).toHaveLength(1);
    expect(ran[0]!.join(' ')).toContain('ProxyCommand=');
  });

  it('on a terminal: a spinner on one line that says what it waits for, erased before ssh starts', async () => {
    const { port, answers } = bootingVm();
    const stderr = collect({ isTTY: true });
    let atExec = '';
    const r = await run(['ssh', 'web'], port, {
      stderr,
      probeSsh: async () => (answers() ? 'vsock' : null),
      exec: async () => {
        atExec = stderr.text();
        return 0;
      },
    });
    expect(r.code).toBe(0);
    const frames = atExec.split('\r\x1b[2K').filter(Boolean);
    expect(frames.map((f) => f.slice(2))).toEqual([
      'waiting for web to boot…',
      'waiting for sshd on vsock or a DHCP lease…',
      'waiting for sshd on vsock or a DHCP lease…',
      'waiting for sshd on vsock or sshd on 192.168.64.7…',
    ]);
    // The frames turn (a different braille dot each time), and nothing is left on the line for ssh.
    expect(new Set(frames.map((f) => f[0])).size).toBe(frames.length);
    expect(atExec.endsWith('\r\x1b[2K')).toBe(true);
    expect(atExec).not.toContain('\n');
  });

  it('refuses a user ssh would expand or read as an option, naming the setting that fixes it, and runs nothing', async () => {
    for (const user of ['100%h', '${HOME}', '-oProxyCommand=touch /tmp/pwned']) {
      const port = twoVms();
      port.handlers.sshCommand = () => ({ argv: [], command: '', target: destination({ user }), route: 'ipv4' });
      const ran: string[][] = [];
      const r = await run(['ssh', 'web'], port, {
        probeSsh: async () => 'ipv4',
        exec: async (argv) => {
          ran.push(argv);
          return 0;
        },
      });
      expect(ran, user).toEqual([]);
      expect(r.code, user).toBe(1);
      expect(r.err, user).toContain(`The ssh user ${JSON.stringify(user)} of VM "web" cannot be handed to ssh: `);
      expect(r.err, user).toContain('set a plain one with `nixvm config set sshUser.web NAME`.');
      expect(r.err.trimEnd().split('\n'), user).toHaveLength(1);
    }
  });
});

describe('console', () => {
  it('refuses --resize with --read-only (it types into the guest), without attaching', async () => {
    const port = twoVms();
    const r = await run(['console', 'web', '--read-only', '--resize'], port);
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      'nixvm: --resize types `stty` into the guest, which --read-only does not do; drop one of them.\n',
    );
    expect(port.calls).toEqual([]);
  });
});

describe('login-item', () => {
  const status = (over: Partial<LoginItemStatus>): LoginItemStatus => ({
    label: 'dev.nixvm.agent',
    plistPath: '/LA/dev.nixvm.agent.plist',
    installed: false,
    programArguments: null,
    loaded: false,
    service: null,
    problem: null,
    ...over,
  });

  it('on installs and prints the resulting status; status and off do what they say', async () => {
    const did: string[] = [];
    const api = {
      loginItem: async () => ({
        install: async () => {
          did.push('install');
          return status({
            installed: true,
            loaded: true,
            service: { state: 'running', pid: 321, lastExitCode: null, program: null, arguments: [] },
          });
        },
        remove: async () => {
          did.push('remove');
          return status({});
        },
        status: async () => {
          did.push('status');
          return status({ installed: true, problem: 'launchctl is missing; the plist loads at next login.' });
        },
      }),
    };
    const port = twoVms();
    port.handlers.getSettings = () => ({ ...port.snapshot.settings, flakes: ['/Users/u/vms'] });
    const on = await run(['login-item', 'on'], port, api);
    expect(on).toMatchObject({
      code: 0,
      out: 'Login item: on, running (pid 321); /LA/dev.nixvm.agent.plist.\nAt login the agent watches /Users/u/vms (from the settings; `nixvm flake add DIR` adds one).\n',
    });
    port.handlers.getSettings = () => ({ ...port.snapshot.settings, flakes: [] });
    expect((await run(['login-item', 'on'], port, api)).out).toContain(
      'At login the agent watches no flake yet: add one with `nixvm flake add DIR`',
    );
    const st = await run(['login-item', 'status'], twoVms(), api);
    expect(st.out).toBe(
      'Login item: on, not loaded in launchd (it starts at next login); /LA/dev.nixvm.agent.plist.\nlaunchctl is missing; the plist loads at next login.\n',
    );
    const off = await run(['login-item', 'off', '--json'], twoVms(), api);
    expect(JSON.parse(off.out)).toMatchObject({ installed: false });
    expect(did).toEqual(['install', 'install', 'status', 'remove']);
  });
});

describe('through the real control socket', () => {
  it('ls, a no-such-vm error and logs -f work over the socket client', async () => {
    const { startControlServer } = await import('../../src/control/server.ts');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-cli-'));
    const socket = path.join(dir, 'c.sock');
    const port = twoVms();
    port.handlers.logs = () => ({ path: '/logs/web/console.log', lines: ['old'] });
    const server = await startControlServer(port, socket);
    try {
      const viaSocket = async (argv: string[], extra: Partial<CliIo> = {}): Promise<Ran> => {
        const stdout = collect();
        const stderr = collect();
        const code = await main(['--socket', socket, ...argv], {
          stdout,
          stderr,
          env: {},
          cwd: dir,
          now: () => NOW,
          ...extra,
        });
        return { code, out: stdout.text(), err: stderr.text(), connected: [] };
      };
      const ls = await viaSocket(['ls', '--json']);
      expect(ls.code).toBe(0);
      expect((JSON.parse(ls.out) as { vms: VmSnapshot[] }).vms.map((v) => v.name)).toEqual(['web', 'db']);

      const missing = await viaSocket(['inspect', 'nope']);
      expect(missing).toMatchObject({ code: 4, err: 'nixvm: No VM named nope.\n' });

      const ctl = new AbortController();
      const stdout = collect();
      const follow = viaSocket(['logs', 'web', '-f'], { signal: ctl.signal, stdout });
      await until(() => stdout.text() === 'old\n', 'the tail');
      // The subscription reaches the server asynchronously: emit once it asked for web's console.
      await until(
        () => port.subscriptions.some((o) => o?.logs?.some((l) => l.vm === 'web' && l.kind === 'console')),
        "the server to subscribe to web's console",
      );
      port.emit({ type: 'log', vm: 'web', kind: 'console', lines: ['boot'] });
      port.emit({ type: 'log', vm: 'db', kind: 'console', lines: ['other vm'] });
      await until(() => stdout.text().includes('boot'), "web's console line");
      ctl.abort();
      expect((await follow).code).toBe(0);
      expect(stdout.text()).toBe('old\nboot\n');
    } finally {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('disk reset asks on a real terminal and reads the answer from it', async () => {
    const { startControlServer } = await import('../../src/control/server.ts');
    const { spawn } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { settles, watchChild } = await import('../helpers/wait.ts');
    const bin = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-cli-'));
    const socket = path.join(dir, 'c.sock');
    const img = '/state/vms/builder-vm/store-writable.img';
    const image = { role: 'writable-store' as const, path: img, apparentBytes: 2 ** 30, allocatedBytes: 2 ** 20 };
    const disks = {
      images: [{ ...image, readOnly: false }],
      preparing: null,
      error: null,
      notice: null,
      canGrow: false,
    };
    const port = new FakePort(agentSnapshot([vmSnapshot({ name: 'builder-vm', disks })]), {
      diskReset: (p) => vmSnapshot({ name: p.vm }),
    });
    const server = await startControlServer(port, socket);
    /** `nixvm disk reset builder-vm` on a pseudo-terminal (util-linux script), typing `answer` once asked. */
    const onTerminal = async (answer: string) => {
      const cmd = [process.execPath, bin, '--socket', socket, 'disk', 'reset', 'builder-vm']
        .map((a) => `'${a.replaceAll("'", "'\\''")}'`)
        .join(' ');
      const child = spawn('script', ['-qefc', cmd, '/dev/null'], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, TERM: 'dumb', NO_COLOR: '1' },
      });
      const w = watchChild(child, '`nixvm disk reset` on a terminal', { stdout: true });
      await waitFor(() => w.output().includes('[y/N]'), { what: 'the question on the terminal', process: w });
      child.stdin!.write(answer);
      const exit = await settles(w.exited, { what: '`nixvm disk reset` to exit once answered' });
      child.stdin!.end();
      return { code: exit.code, text: w.output().replaceAll('\r', '') };
    };
    try {
      const no = await onTerminal('n\r');
      expect(no.text).toContain(
        `Delete the writable store image of builder-vm (${img}, 1 MiB on disk)? Everything builder-vm keeps in its writable Nix store is lost. [y/N] `,
      );
      expect(no.text).toContain('nixvm: Nothing was deleted.');
      expect(no.code).toBe(1);
      expect(port.calls.filter((c) => c.method === 'diskReset')).toHaveLength(0);

      const yes = await onTerminal('y\r');
      expect(yes.text).toContain('builder-vm: writable store image deleted; its next start makes a new one.');
      expect(yes.code).toBe(0);
      expect(port.calls.filter((c) => c.method === 'diskReset')).toHaveLength(1);
    } finally {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('3 when nothing listens on the socket', async () => {
    const stderr = collect();
    const code = await main(['--socket', '/nonexistent-nixvm-dir/c.sock', 'ls'], {
      stdout: collect(),
      stderr,
      env: {},
      cwd: '/',
    });
    expect(code).toBe(3);
    expect(stderr.text()).toContain('/nonexistent-nixvm-dir/c.sock');
    expect(stderr.text()).toContain('nixvm daemon');
  });
});

describe('start of a stale VM', () => {
  it('waits for the build the agent started and reports its failure', async () => {
    const port = twoVms();
    port.handlers.start = (p) => {
      setImmediate(() =>
        port.setVm({
          ...port.vm(p.vm),
          build: buildInfo({
            status: 'failed',
            error: 'Building db failed: hello.drv exited with code 2.',
            finishedAt: NOW + 10,
          }),
        }),
      );
      return { ...port.vm(p.vm), build: buildInfo({ status: 'building', startedAt: NOW }) };
    };
    const r = await run(['start', 'db'], port);
    expect(r.code).toBe(1);
    expect(r.err).toBe('db: Building db failed: hello.drv exited with code 2.\n');
  });
});
