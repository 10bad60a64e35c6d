/**
 * The CLI as a script sees it (JSON everywhere, errors as JSON with the same exit codes, --all,
 * help and version) and the commands that work without the app (flake, config, doctor), against
 * a scripted agent port or a real settings.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentError } from '../../src/api/errors.ts';
import type { DoctorReport, VmSnapshot } from '../../src/api/types.ts';
import type { Command } from 'commander';
import { Session, buildProgram, main, type CliIo } from '../../src/cli/app.ts';
import { SettingsStore } from '../../src/core/settings.ts';
import pkg from '../../package.json' with { type: 'json' };
import { FakePort, agentSnapshot, buildInfo, collect, flakeSnapshot, vmSnapshot } from '../helpers/fake-port.ts';

const NOW = 1_700_000_000_000;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-cli-cmds-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function run(argv: string[], port: FakePort | 'not-running', extra: Partial<CliIo> = {}) {
  const stdout = collect();
  const stderr = collect();
  const code = await main(argv, {
    stdout,
    stderr,
    env: {},
    cwd: tmp,
    now: () => NOW,
    connect: async (p) => {
      if (port === 'not-running')
        throw new AgentError('not-running', `The nixvm agent is not running (no socket at ${p}).`);
      return port;
    },
    defaultSocketPath: async () => '/state/control.sock',
    devSocketPath: async () => null,
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
    confirm: async () => null,
    settingsFile: async () => {
      throw new Error('no settings file in this test');
    },
    doctorHere: async () => {
      throw new Error('no local doctor in this test');
    },
    ...extra,
  });
  return { code, out: stdout.text(), err: stderr.text() };
}

function vms(): FakePort {
  const port = new FakePort(
    agentSnapshot([
      vmSnapshot({ name: 'web', state: 'running', ipv4: '192.168.64.7', pid: 100, spec: {} as VmSnapshot['spec'] }),
      vmSnapshot({ name: 'db', spec: {} as VmSnapshot['spec'] }),
      vmSnapshot({ name: 'broken', spec: null, error: 'broken does not evaluate.' }),
    ]),
  );
  for (const m of ['start', 'stop', 'restart', 'build', 'apply'] as const) {
    port.handlers[m] = (p) => ({
      ...port.vm(p.vm),
      state: m === 'stop' ? 'stopped' : 'running',
      ...(m === 'build' || m === 'apply' ? { builtOutPath: `/nix/store/${'c'.repeat(32)}-${p.vm}` } : {}),
    });
  }
  return port;
}

/**
 * The commands that take no --json, and why: what they print is not a result a script could
 * read (the README's "For scripts" names each of them).
 */
const NO_JSON: Record<string, string> = {
  ssh: "a terminal session: what it prints is the guest's, its exit code the remote command's",
  console: "the VM's serial console on this terminal (or, from a pipe, the guest's answers)",
  proxy: "ssh's ProxyCommand: a byte stream joined to the guest's vsock port 22",
  daemon: 'the agent in the foreground: its log lines, until Ctrl-C',
  completion: 'a shell script for bash, zsh or fish',
  __complete: 'hidden: what the completion scripts ask for, one word a line',
};

/** Every command a user can run ("disk ls", "builder use", …): the leaves of the commander tree. */
function runnable(cmd: Command, prefix: string[] = []): { name: string; cmd: Command }[] {
  return cmd.commands.flatMap((c) =>
    c.commands.length ? runnable(c, [...prefix, c.name()]) : [{ name: [...prefix, c.name()].join(' '), cmd: c }],
  );
}

describe('which commands take --json', () => {
  const program = buildProgram(new Session({ stdout: collect(), stderr: collect() } as unknown as CliIo), () => {});
  const all = runnable(program);
  const hasJson = (c: Command) => c.options.some((o) => o.long === '--json');

  it('every command that prints a result takes --json, but for the documented exceptions', () => {
    expect(all.length, 'the walk found the commands').toBeGreaterThan(30);
    const missing = all.filter((c) => !Object.hasOwn(NO_JSON, c.name) && !hasJson(c.cmd)).map((c) => c.name);
    expect(missing, 'commands without --json that are not in NO_JSON (add --json, or the reason to NO_JSON)').toEqual(
      [],
    );
    // The list stays true: each exception exists and really has no --json.
    for (const name of Object.keys(NO_JSON)) {
      const c = all.find((x) => x.name === name);
      expect(c, `NO_JSON names ${name}, which is no command`).toBeDefined();
      expect(hasJson(c!.cmd), `${name} takes --json now: take it off NO_JSON`).toBe(false);
    }
  });

  it('the README\'s "For scripts" names every command without --json', () => {
    const readme = fs.readFileSync(path.join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    const forScripts = /\*\*For scripts\.\*\*([\s\S]*?)\n\n/.exec(readme)?.[1] ?? '';
    expect(forScripts).toContain('takes `--json`');
    // The ones the help lists (not the hidden __complete).
    const listed = new Set(
      program
        .createHelp()
        .visibleCommands(program)
        .map((c) => c.name()),
    );
    const publicOnes = Object.keys(NO_JSON).filter((n) => listed.has(n));
    expect(publicOnes).toEqual(['ssh', 'console', 'proxy', 'daemon', 'completion']);
    const unnamed = publicOnes.filter((n) => !forScripts.includes(`\`${n}\``));
    expect(unnamed, 'commands without --json the README does not name').toEqual([]);
  });
});

describe('--json everywhere, errors as JSON with the same exit codes', () => {
  it('a failure is {"error": {code, message}} on stdout, nothing on stderr, the usual exit code', async () => {
    const down = await run(['ls', '--json'], 'not-running');
    expect(down.code).toBe(3);
    expect(down.err).toBe('');
    expect(JSON.parse(down.out)).toEqual({
      error: {
        code: 'not-running',
        message: expect.stringMatching(/^The nixvm agent is not running \(nothing answers on \/state\/control\.sock\)/),
      },
    });
    const nope = await run(['status', 'nope', '--json'], vms());
    expect(nope.code).toBe(4);
    expect(JSON.parse(nope.out).error).toEqual({
      code: 'no-such-vm',
      message: expect.stringContaining('No VM named "nope"'),
    });
    const usage = await run(['ip', '--json'], vms());
    expect(usage.code).toBe(2);
    expect(usage.err).toBe('');
    expect(JSON.parse(usage.out)).toEqual({ error: { code: 'usage', message: "Missing required argument 'vm'" } });
  });

  it('start|stop|build|… print one result per VM; a failed one carries its error, and the exit code says so', async () => {
    const port = vms();
    port.handlers.start = (p) => {
      if (p.vm === 'db') throw new AgentError('failed', 'db cannot start: vfkit is missing.');
      return { ...port.vm(p.vm), state: 'running' };
    };
    const r = await run(['start', 'web', 'db', '--json'], port);
    expect(r.code).toBe(1);
    expect(r.err).toBe('');
    const out = JSON.parse(r.out) as {
      vm: string;
      ok: boolean;
      snapshot?: VmSnapshot;
      error?: { code: string; message: string };
    }[];
    expect(out.map((x) => [x.vm, x.ok])).toEqual([
      ['web', true],
      ['db', false],
    ]);
    expect(out[0]!.snapshot!.state).toBe('running');
    expect(out[1]!.error).toEqual({ code: 'failed', message: 'db cannot start: vfkit is missing.' });

    const built = JSON.parse((await run(['build', 'db', '--json'], vms())).out);
    expect(built[0]).toMatchObject({ vm: 'db', ok: true, snapshot: { builtOutPath: expect.stringMatching(/-db$/) } });
  });

  it('stop, restart and apply --json print one result per VM too, and nothing else on stdout', async () => {
    type Result = { vm: string; ok: boolean; snapshot?: VmSnapshot; error?: { code: string; message: string } };
    const parse = (r: { out: string; err: string }, what: string): Result[] => {
      expect(r.err, `${what}: stderr is for text mode`).toBe('');
      // Progress lines or a "web: stopped" on stdout would make this throw.
      return JSON.parse(r.out) as Result[];
    };

    const stop = await run(['stop', 'web', '--json'], vms());
    expect(stop.code).toBe(0);
    expect(parse(stop, 'stop').map((x) => [x.vm, x.ok, x.snapshot?.state])).toEqual([['web', true, 'stopped']]);

    // One VM fails to restart: its error in its own result, the other still reported, exit 1.
    const port = vms();
    port.handlers.restart = (p) => {
      if (p.vm === 'db') throw new AgentError('failed', 'db cannot start: vfkit is missing.');
      return { ...port.vm(p.vm), state: 'running', pid: 101 };
    };
    const restart = await run(['restart', 'web', 'db', '--json'], port);
    expect(restart.code).toBe(1);
    const restarted = parse(restart, 'restart');
    expect(restarted.map((x) => [x.vm, x.ok])).toEqual([
      ['web', true],
      ['db', false],
    ]);
    expect(restarted[0]!.snapshot).toMatchObject({ state: 'running', pid: 101 });
    expect(restarted[1]!.error).toEqual({ code: 'failed', message: 'db cannot start: vfkit is missing.' });

    // apply: what it did is in the VM's snapshot (switched in place); a failed switch is that VM's error.
    const applyPort = vms();
    applyPort.handlers.apply = (p) => {
      const at = Date.now();
      if (p.vm === 'db') {
        applyPort.setVm({
          ...applyPort.vm('db'),
          applied: { how: 'failed', outPath: '/nix/store/x', at, reasons: [], error: 'a unit failed', lastLine: null },
        });
        throw new AgentError('failed', 'Switching "db" left a unit failed (foo.service); it keeps running.');
      }
      return {
        ...applyPort.vm(p.vm),
        applied: {
          how: 'switch',
          outPath: `/nix/store/${'d'.repeat(32)}-web`,
          at,
          reasons: [],
          error: null,
          lastLine: null,
        },
      };
    };
    const apply = await run(['apply', 'web', 'db', '--json'], applyPort);
    expect(apply.code).toBe(1);
    const applied = parse(apply, 'apply');
    expect(applied.map((x) => [x.vm, x.ok])).toEqual([
      ['web', true],
      ['db', false],
    ]);
    expect(applied[0]!.snapshot!.applied).toMatchObject({ how: 'switch' });
    expect(applied[1]).toMatchObject({
      error: { code: 'failed', message: 'Switching "db" left a unit failed (foo.service); it keeps running.' },
      snapshot: { applied: { how: 'failed' } },
    });
  });

  it("apply prints the switch's lines as the snapshots bring them, each once, saying how many it missed", async () => {
    const port = vms();
    const line = (i: number) => `line ${i}`;
    const lines = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => line(from + k));
    const at = Date.now();
    const applied = (how: 'switching' | 'switch', count: number, tail: string[]) => ({
      how,
      outPath: `/nix/store/${'d'.repeat(32)}-web`,
      at,
      reasons: [],
      error: null,
      lastLine: tail.at(-1) ?? null,
      output: { count, tail },
    });
    port.handlers.apply = (p) => {
      // Snapshots while it runs: one line, the same again, then 28 more of which the last 20 are carried.
      port.setVm({ ...port.vm(p.vm), applied: applied('switching', 1, lines(1, 1)) });
      port.setVm({ ...port.vm(p.vm), applied: applied('switching', 1, lines(1, 1)) });
      port.setVm({ ...port.vm(p.vm), applied: applied('switching', 2, lines(1, 2)) });
      port.setVm({ ...port.vm(p.vm), applied: applied('switching', 29, lines(10, 29)) });
      return { ...port.vm(p.vm), state: 'running', applied: applied('switch', 30, lines(11, 30)) };
    };
    const r = await run(['apply', 'web'], port);
    expect(r.code, r.err).toBe(0);
    expect(r.out.split('\n').filter(Boolean)).toEqual([
      'web | line 1',
      'web | line 2',
      'web | … (7 more in its apply.log)',
      ...lines(10, 30).map((l) => `web | ${l}`),
      'web: switched in place (running, 192.168.64.7)',
    ]);
  });

  it('a failed build in JSON mode says why, with nix detail and the log path', async () => {
    const port = vms();
    port.handlers.build = (p) => ({
      ...port.vm(p.vm),
      build: buildInfo({
        status: 'failed',
        error: 'Building db failed.',
        detail: 'error: boom',
        logPath: '/l',
        finishedAt: NOW,
      }),
    });
    const r = await run(['build', 'db', '--json'], port);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out)[0].error).toEqual({
      code: 'build-failed',
      message: 'Building db failed.',
      detail: 'error: boom',
      logPath: '/l',
    });
  });
});

describe('--all', () => {
  it('start --all starts every VM that can start; stop --all stops every running one', async () => {
    const port = vms();
    await run(['start', '--all'], port);
    expect(port.calls.filter((c) => c.method === 'start').map((c) => (c.params as { vm: string }).vm)).toEqual(['db']);
    const stop = vms();
    await run(['stop', '--all'], stop);
    expect(stop.calls.filter((c) => c.method === 'stop').map((c) => (c.params as { vm: string }).vm)).toEqual(['web']);
    const build = vms();
    await run(['build', '--all'], build);
    expect(build.calls.filter((c) => c.method === 'build').map((c) => (c.params as { vm: string }).vm)).toEqual([
      'web',
      'db',
    ]);
  });

  it('restart --all restarts only the VMs that are up; apply --all applies every VM that evaluates', async () => {
    const withBooting = (): FakePort => {
      const port = vms();
      port.snapshot.vms.push(
        vmSnapshot({ name: 'booting', state: 'starting', spec: {} as VmSnapshot['spec'] }),
        vmSnapshot({ name: 'halting', state: 'stopping', spec: {} as VmSnapshot['spec'] }),
      );
      port.handlers.restart = (p) => ({ ...port.vm(p.vm), state: 'running' });
      port.handlers.apply = (p) => ({ ...port.vm(p.vm) });
      return port;
    };
    const asked = (port: FakePort, m: string) =>
      port.calls.filter((c) => c.method === m).map((c) => (c.params as { vm: string }).vm);

    const restart = withBooting();
    const r = await run(['restart', '--all', '--json'], restart);
    expect(r.code).toBe(0);
    // db is stopped, broken never evaluated, halting is on its way down: none of them is restarted.
    expect(asked(restart, 'restart'), 'restart --all restarted').toEqual(['web', 'booting']);
    expect((JSON.parse(r.out) as { vm: string }[]).map((x) => x.vm)).toEqual(['web', 'booting']);

    const apply = withBooting();
    expect((await run(['apply', '--all'], apply)).code).toBe(0);
    // Running or not (apply builds a stopped one): all but the one that does not evaluate.
    expect(asked(apply, 'apply'), 'apply --all applied').toEqual(['web', 'db', 'booting', 'halting']);

    // Nothing running: restart --all has nothing to do, says so, and succeeds.
    const idle = vms();
    idle.snapshot.vms = idle.snapshot.vms.filter((v) => v.name !== 'web');
    const none = await run(['restart', '--all'], idle);
    expect(none).toMatchObject({ code: 0, out: '', err: 'No VM to restart.\n' });
    expect(asked(idle, 'restart')).toEqual([]);
    expect(JSON.parse((await run(['restart', '--all', '--json'], idle)).out)).toEqual([]);
  });

  it('names and --all together, or neither, is a usage error', async () => {
    expect((await run(['start', 'web', '--all'], vms())).code).toBe(2);
    const none = await run(['start'], vms());
    expect(none.code).toBe(2);
    expect(none.err).toBe('nixvm: nixvm start needs VM names (or --all).\n');
  });
});

describe('colour', () => {
  it('on a terminal only, and never with NO_COLOR', async () => {
    const tty = (env: NodeJS.ProcessEnv) => {
      const stdout = collect({ isTTY: true, columns: 120 });
      return run(['ls'], vms(), { stdout, env }).then(() => stdout.text());
    };
    expect(await tty({})).toContain('\u001b[32mrunning\u001b[0m');
    expect(await tty({ NO_COLOR: '1' })).not.toContain('\u001b[');
    expect((await run(['ls'], vms())).out).not.toContain('\u001b[');
  });
});

describe('help, no arguments, version', () => {
  it('`nixvm help <cmd>` prints that command and exits 0', async () => {
    const r = await run(['help', 'logs'], vms());
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: nixvm logs \[options\] <vm>/);
  });

  it('`nixvm` alone prints the help on stderr and exits 2, as the help says', async () => {
    const r = await run([], vms());
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^Usage: nixvm /);
    expect(r.err).toContain('also `nixvm` with no command');
  });

  it('-v, --version and the old -V print the version', async () => {
    for (const flag of ['-v', '--version', '-V']) {
      const r = await run([flag], vms());
      expect(r, flag).toMatchObject({ code: 0, out: `${pkg.version}\n` });
    }
  });
});

describe('no such VM, said from what the flakes are doing', () => {
  it('while a flake still evaluates, when nix is missing, and for a configuration that is not a VM', async () => {
    const port = vms();
    port.snapshot.flakes = [flakeSnapshot({ dir: '/vms', state: 'evaluating', evaluatingSince: NOW - 5000 })];
    expect((await run(['status', 'minimal-vm'], port)).err).toBe(
      'nixvm: No VM named "minimal-vm" yet: /vms is still being evaluated (for 5s); its VMs appear when nix is done.\n',
    );
    port.snapshot.flakes = [
      flakeSnapshot({
        dir: '/vms',
        state: 'nix-missing',
        error: '/vms cannot be evaluated: NIXVM_NIX, /x, is not an executable file; fix or clear it.',
      }),
    ];
    expect((await run(['status', 'minimal-vm'], port)).err).toBe(
      'nixvm: No VM named "minimal-vm": /vms cannot be evaluated: NIXVM_NIX, /x, is not an executable file; fix or clear it.\n',
    );
    port.snapshot.flakes = [flakeSnapshot({ dir: '/vms', hidden: ['laptop'] })];
    const hidden = await run(['status', 'laptop'], port);
    expect(hidden.code).toBe(4);
    expect(hidden.err).toContain('`nixvm flake include /vms laptop` makes it one');
  });
});

describe('settings without the app', () => {
  it('config get/set/unset go through the running agent (applied live), by the one schema', async () => {
    const port = vms();
    let settings = { ...port.snapshot.settings };
    port.handlers.getSettings = () => settings;
    port.handlers.setSettings = (p) => {
      settings = { ...settings, ...p };
      return settings;
    };
    expect(await run(['config', 'set', 'autoRebuild', 'build'], port)).toMatchObject({
      code: 0,
      out: 'autoRebuild = build; the agent applied it.\n',
    });
    expect(await run(['config', 'set', 'stopTimeoutSec', '45'], port)).toMatchObject({ code: 0 });
    expect(settings.stopTimeoutSec).toBe(45);
    await run(['config', 'set', 'autostart.web', 'true'], port);
    expect(settings.autostart).toEqual({ web: true });
    expect((await run(['config', 'get', 'autostart.web'], port)).out).toBe('true\n');
    await run(['config', 'unset', 'autostart.web'], port);
    expect(settings.autostart).toEqual({});
    await run(['config', 'unset', 'autoRebuild'], port);
    expect(settings.autoRebuild).toBe('off');
    expect(JSON.parse((await run(['config', 'get', '--json'], port)).out)).toMatchObject({ stopTimeoutSec: 45 });
    expect(JSON.parse((await run(['config', 'set', 'onQuit', 'stop', '--json'], port)).out)).toMatchObject({
      where: 'agent',
      settings: { onQuit: 'stop' },
    });
    const bad = await run(['config', 'set', 'onQuit', 'later', '--json'], port);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.out).error.message).toBe('Setting onQuit must be one of "keep", "stop", got "later".');

    const unknown = await run(['config', 'set', 'colour', 'blue'], port);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/^nixvm: There is no setting named "colour"; known settings are flakes, autoRebuild/);
    const notJson = await run(['config', 'set', 'flakes', '/a'], port);
    expect(notJson.code).toBe(2);
    expect(notJson.err).toContain('flakes takes JSON (a list');
  });

  it('without an agent, writes settings.json, validated, for the agent to read when it starts', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'conf-'));
    const flake = path.join(dir, 'vms');
    fs.mkdirSync(flake);
    fs.writeFileSync(path.join(flake, 'flake.nix'), '{ outputs = { self }: { }; }\n');
    const files = (): Partial<CliIo> => ({
      cwd: dir,
      settingsFile: async () => {
        const store = new SettingsStore({ dir, watch: false });
        return { path: store.path, get: () => store.get(), update: (p) => store.update(p), close: () => store.close() };
      },
    });
    const added = await run(['flake', 'add', 'vms'], 'not-running', files());
    expect(added).toMatchObject({
      code: 0,
      out: `Added ${flake}; saved in ${path.join(dir, 'settings.json')}; the agent reads it when it starts.\n`,
    });
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'settings.json'), 'utf8')).flakes).toEqual([flake]);
    expect((await run(['flake', 'add', 'vms'], 'not-running', files())).out).toBe(
      `${flake} is already in the settings.\n`,
    );

    const notAFlake = await run(['flake', 'add', '.'], 'not-running', files());
    expect(notAFlake.code).toBe(1);
    expect(notAFlake.err).toBe(`nixvm: ${dir} has no flake.nix; give the directory that holds your flake.nix.\n`);

    await run(['flake', 'include', 'vms', 'laptop'], 'not-running', files());
    await run(['flake', 'exclude', 'vms', 'old-vm'], 'not-running', files());
    let saved = JSON.parse(fs.readFileSync(path.join(dir, 'settings.json'), 'utf8'));
    expect(saved.includeConfigurations).toEqual({ [flake]: ['laptop'] });
    expect(saved.excludeConfigurations).toEqual({ [flake]: ['old-vm'] });
    await run(['flake', 'exclude', 'vms', 'laptop'], 'not-running', files());
    saved = JSON.parse(fs.readFileSync(path.join(dir, 'settings.json'), 'utf8'));
    expect(saved.includeConfigurations).toEqual({});
    expect(saved.excludeConfigurations).toEqual({ [flake]: ['old-vm', 'laptop'] });

    const bad = await run(['config', 'set', 'stopTimeoutSec', 'soon'], 'not-running', files());
    expect(bad.code).toBe(1);
    expect(bad.err).toBe('nixvm: Setting stopTimeoutSec must be a number, got "soon".\n');

    expect((await run(['flake', 'ls'], 'not-running', files())).out).toContain(flake);
    const gone = await run(['flake', 'remove', '/not/there'], 'not-running', files());
    expect(gone.code).toBe(1);
    expect(gone.err).toBe(`nixvm: /not/there is not in the settings (they list ${flake}).\n`);
    expect((await run(['flake', 'remove', 'vms'], 'not-running', files())).code).toBe(0);
    saved = JSON.parse(fs.readFileSync(path.join(dir, 'settings.json'), 'utf8'));
    expect(saved).toMatchObject({ flakes: [], excludeConfigurations: {} });
  });

  it('flake add and flake ls --json: the settings after and where they live; each flake with its state and VMs', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'json-'));
    const flake = path.join(dir, 'vms');
    fs.mkdirSync(flake);
    fs.writeFileSync(path.join(flake, 'flake.nix'), '{ outputs = { self }: { }; }\n');

    // Through the agent.
    const port = vms();
    let settings = { ...port.snapshot.settings };
    port.handlers.getSettings = () => settings;
    port.handlers.setSettings = (p) => {
      settings = { ...settings, ...p };
      return settings;
    };
    const added = await run(['flake', 'add', flake, '--json'], port);
    expect(added).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(added.out)).toEqual({
      where: 'agent',
      settings: { ...settings, flakes: ['/flakes/demo', flake] },
    });
    port.snapshot.flakes = [
      flakeSnapshot({ dir: '/flakes/demo', hidden: ['laptop'] }),
      flakeSnapshot({ dir: flake, state: 'evaluating', evaluating: true, evaluatingSince: NOW - 1000 }),
    ];
    const ls = await run(['flake', 'ls', '--json'], port);
    expect(ls).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(ls.out)).toEqual([
      { ...port.snapshot.flakes[0], vms: ['web', 'db', 'broken'] },
      { ...port.snapshot.flakes[1], vms: [] },
    ]);
    // A folder without flake.nix: the JSON error, exit 1, nothing saved.
    const notAFlake = await run(['flake', 'add', dir, '--json'], port);
    expect(notAFlake.code).toBe(1);
    expect(JSON.parse(notAFlake.out)).toEqual({
      error: { code: 'failed', message: `${dir} has no flake.nix; give the directory that holds your flake.nix.` },
    });
    expect(settings.flakes).toEqual(['/flakes/demo', flake]);

    // No agent: settings.json, and flake ls lists the settings' folders only.
    const files = (): Partial<CliIo> => ({
      settingsFile: async () => {
        const store = new SettingsStore({ dir, watch: false });
        return { path: store.path, get: () => store.get(), update: (p) => store.update(p), close: () => store.close() };
      },
    });
    const offline = await run(['flake', 'add', flake, '--json'], 'not-running', files());
    expect(offline).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(offline.out)).toMatchObject({
      where: path.join(dir, 'settings.json'),
      settings: { flakes: [flake] },
    });
    const offlineLs = await run(['flake', 'ls', '--json'], 'not-running', files());
    expect(JSON.parse(offlineLs.out)).toEqual([{ dir: flake, source: 'settings' }]);
  });

  it('flake ls with an agent says where each flake stands', async () => {
    const port = vms();
    port.snapshot.flakes = [
      flakeSnapshot({ dir: '/flakes/demo', hidden: ['laptop'] }),
      flakeSnapshot({
        dir: '/tmp/x',
        source: 'command-line',
        state: 'no-such-dir',
        error: 'The flake folder /tmp/x does not exist; check the path given to `nixvm daemon --flake`.',
      }),
    ];
    const r = await run(['flake', 'ls'], port);
    expect(r.out).toBe(
      [
        '/flakes/demo',
        '  VMs: web, db, broken',
        '  hidden: laptop',
        '/tmp/x (from `daemon --flake`, this run only)',
        '  VMs: none',
        '  The flake folder /tmp/x does not exist; check the path given to `nixvm daemon --flake`.',
        '',
      ].join('\n'),
    );
  });
});

describe('doctor', () => {
  const report = (statuses: DoctorReport['checks'][number]['status'][]): DoctorReport => ({
    at: NOW,
    checks: statuses.map((status, i) => ({
      id: `c${i}`,
      title: `check ${i}`,
      status,
      summary: `summary ${i}.`,
      fix: status === 'ok' ? null : `fix ${i}`,
      details: status === 'fail' ? ['looked in /a', 'looked in /b'] : [],
    })),
  });

  it('asks the agent when it runs, else checks from here; exits 1 when a check fails', async () => {
    const port = vms();
    port.handlers.doctor = () => report(['ok', 'warn']);
    const viaAgent = await run(['doctor'], port);
    expect(viaAgent.code).toBe(0);
    expect(viaAgent.out).toBe(
      [
        'ok    check 0  summary 0.',
        'warn  check 1  summary 1.',
        '               fix: fix 1',
        'Nothing blocks nixvm; 1 warning.',
        '',
      ].join('\n'),
    );
    const here = await run(['doctor', '--json'], 'not-running', { doctorHere: async () => report(['fail']) });
    expect(here.code).toBe(1);
    expect(JSON.parse(here.out)).toMatchObject({
      agent: false,
      checks: [{ status: 'fail', details: ['looked in /a', 'looked in /b'] }],
    });
    const text = await run(['doctor'], 'not-running', { doctorHere: async () => report(['fail']) });
    expect(text.out).toContain('(No agent is running: checked from here');
    expect(text.out).toContain('looked in /b');
  });
});
