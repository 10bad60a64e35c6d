import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'plist';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatLoginItem } from '../../src/cli/format.ts';
import {
  LAUNCH_AGENT_FIXED,
  LaunchctlMissingError,
  installLoginItem,
  launchAgentPlist,
  loginItemStatus,
  parseLaunchctlPrint,
  removeLoginItem,
  type Runner,
} from '../../src/host/launchd.ts';
import { BUNDLE_ID } from '../../src/host/paths.ts';
import { appBundleOf, loginProgram, selfCommand } from '../../src/host/app-bundle.ts';
import type { RunResult } from '../../src/host/runner.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const UID = 501;
const LABEL = BUNDLE_ID;
const ARGS = ['/usr/local/bin/node', '/Users/me/nixvm/bin/nixvm.js', 'daemon'];

/** What `launchctl print gui/501/dev.nixvm.agent` prints for a running agent (macOS 14). */
function printOutput(args: string[], plistPath: string): string {
  return [
    `gui/${UID}/${LABEL} = {`,
    '\tactive count = 1',
    `\tpath = ${plistPath}`,
    '\ttype = LaunchAgent',
    '\tstate = running',
    '',
    `\tprogram = ${args[0]}`,
    '\targuments = {',
    ...args.map((a) => `\t\t${a}`),
    '\t}',
    '',
    '\tstdout path = /Users/me/Library/Logs/NixVM/agent.log',
    '\tstderr path = /Users/me/Library/Logs/NixVM/agent.log',
    '\tinherited environment = {',
    '\t\tSSH_AUTH_SOCK => /private/tmp/com.apple.launchd.x/Listeners',
    '\t}',
    '',
    '\tdefault environment = {',
    '\t\tPATH => /usr/bin:/bin:/usr/sbin:/sbin',
    '\t}',
    '',
    `\tdomain = gui/${UID} [100005]`,
    '\tminimum runtime = 10',
    '\texit timeout = 5',
    '\truns = 1',
    '\tpid = 4321',
    '\timmediate reason = speculative',
    '\tforks = 0',
    '\texecs = 1',
    '\tlast exit code = (never exited)',
    '',
    '\tspawn type = interactive (4)',
    '\tendpoints = {',
    '\t\tstate = active',
    '\t}',
    '\tproperties = keepalive | runatload | inferred program',
    '}',
    '',
  ].join('\n');
}

const NOT_FOUND = { exitCode: 113, stderr: `Could not find service "${LABEL}" in domain for user gui: ${UID}\n` };
const BOOTOUT_NOT_LOADED = { exitCode: 3, stderr: 'Boot-out failed: 3: No such process\n' };
const BOOTSTRAP_EIO = {
  exitCode: 5,
  stderr: 'Bootstrap failed: 5: Input/output error\nTry re-running the command as root for richer errors.\n',
};

type Step = [argv: string[], result: Partial<RunResult> | (() => Partial<RunResult>)];

/** A runner that expects exactly these launchctl calls, in order, and answers each as given. */
function scripted(steps: Step[]): Runner & { calls: string[][]; done(): void } {
  const calls: string[][] = [];
  let i = 0;
  const fn = (async (argv: string[]) => {
    calls.push(argv);
    const step = steps[i++];
    if (!step) throw new Error(`unexpected call ${JSON.stringify(argv)}`);
    expect(argv).toEqual(step[0]);
    const r = typeof step[1] === 'function' ? step[1]() : step[1];
    return { argv, exitCode: 0, signal: null, stdout: '', stderr: '', durationMs: 1, ...r };
  }) as Runner & { calls: string[][]; done(): void };
  fn.calls = calls;
  fn.done = () => expect(calls.length, `calls: ${JSON.stringify(calls)}`).toBe(steps.length);
  return fn;
}

let dir: string;
let agentsDir: string;
let logDir: string;
let plistPath: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'launchd-'));
  agentsDir = path.join(dir, 'LaunchAgents');
  logDir = path.join(dir, 'Logs');
  plistPath = path.join(agentsDir, `${LABEL}.plist`);
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const print = ['/bin/launchctl', 'print', `gui/${UID}/${LABEL}`];
const bootout = ['/bin/launchctl', 'bootout', `gui/${UID}/${LABEL}`];
const bootstrap = () => ['/bin/launchctl', 'bootstrap', `gui/${UID}`, plistPath];

describe('LaunchAgent plist', () => {
  it('parses back to the keys launchd needs: crash-only KeepAlive, Aqua, logs in the logs dir', () => {
    const xml = launchAgentPlist({ label: LABEL, programArguments: ARGS, logDir: '/Users/me/Library/Logs/NixVM' });
    expect(parse(xml)).toEqual({
      Label: LABEL,
      ProgramArguments: ARGS,
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      LimitLoadToSessionType: 'Aqua',
      ProcessType: 'Interactive',
      StandardOutPath: '/Users/me/Library/Logs/NixVM/agent.log',
      StandardErrorPath: '/Users/me/Library/Logs/NixVM/agent.log',
    });
  });

  it('keeps awkward argument text intact through XML', () => {
    const args = ['/Applications/Nix & VM <dev>.app/Contents/MacOS/NixVM', '--flake', '/Users/me/"quoted" dir/'];
    const xml = launchAgentPlist({
      label: LABEL,
      programArguments: args,
      logDir: '/l',
      environment: { NIXVM_STATE_DIR: '/s' },
    });
    const back = parse(xml) as Record<string, unknown>;
    expect(back.ProgramArguments).toEqual(args);
    expect(back.EnvironmentVariables).toEqual({ NIXVM_STATE_DIR: '/s' });
  });

  it('refuses a program launchd could not start', () => {
    expect(() => launchAgentPlist({ label: LABEL, programArguments: ['nixvm', 'daemon'], logDir: '/l' })).toThrow(
      /absolute path/,
    );
    expect(() => launchAgentPlist({ label: LABEL, programArguments: [], logDir: '/l' })).toThrow(/absolute path/);
  });

  it('matches the template in plist/ on every fixed key', () => {
    const tpl = parse(fs.readFileSync(path.join(repo, 'plist', 'LaunchAgent.plist'), 'utf8')) as Record<
      string,
      unknown
    >;
    for (const [k, v] of Object.entries(LAUNCH_AGENT_FIXED)) expect(tpl[k], k).toEqual(v);
    expect(tpl.Label).toBe(BUNDLE_ID);
  });

  it('plist/Info.plist makes the app a menubar-only agent with our bundle id', () => {
    const info = parse(fs.readFileSync(path.join(repo, 'plist', 'Info.plist'), 'utf8')) as Record<string, unknown>;
    expect(info.LSUIElement).toBe(true);
    expect(info.CFBundleIdentifier).toBe(BUNDLE_ID);
    // Terminal is opened with a .command file through `open -a`: no Apple Events, so no usage string.
    expect(info.NSAppleEventsUsageDescription).toBeUndefined();
  });
});

describe('launchctl print', () => {
  it('reads state, pid, exit code and arguments from the top level only', () => {
    const s = parseLaunchctlPrint(printOutput(ARGS, '/p'));
    expect(s).toEqual({ state: 'running', pid: 4321, lastExitCode: null, program: ARGS[0], arguments: ARGS });
  });

  it('reads a crashed service', () => {
    const text = printOutput(ARGS, '/p')
      .replace('\tstate = running', '\tstate = not running')
      .replace('\tpid = 4321\n', '')
      .replace('(never exited)', '1');
    expect(parseLaunchctlPrint(text)).toMatchObject({ state: 'not running', pid: null, lastExitCode: 1 });
  });
});

describe('login item', () => {
  const opts = (run: Runner) => ({ launchAgentsDir: agentsDir, logDir, uid: UID, run, programArguments: ARGS });

  it('writes the plist and bootstraps it into gui/<uid>', async () => {
    const run = scripted([
      [print, NOT_FOUND],
      [bootstrap(), {}],
      [print, () => ({ stdout: printOutput(ARGS, plistPath) })],
    ]);
    const st = await installLoginItem(opts(run));
    run.done();
    expect(st).toMatchObject({ installed: true, loaded: true, plistPath, programArguments: ARGS, problem: null });
    expect(st.service).toMatchObject({ state: 'running', pid: 4321 });
    expect((parse(fs.readFileSync(plistPath, 'utf8')) as Record<string, unknown>).StandardOutPath).toBe(
      path.join(logDir, 'agent.log'),
    );
    // launchd creates the log file, not its directory.
    expect(fs.statSync(logDir).isDirectory()).toBe(true);
  });

  it('goes to NIXVM_LAUNCH_AGENTS_DIR when no directory is given', async () => {
    const before = process.env.NIXVM_LAUNCH_AGENTS_DIR;
    process.env.NIXVM_LAUNCH_AGENTS_DIR = agentsDir;
    try {
      const run = scripted([
        [print, NOT_FOUND],
        [bootstrap(), {}],
        [print, NOT_FOUND],
      ]);
      const st = await installLoginItem({ uid: UID, run, logDir, programArguments: ARGS });
      expect(st.plistPath).toBe(plistPath);
      expect(fs.existsSync(plistPath)).toBe(true);
    } finally {
      if (before === undefined) delete process.env.NIXVM_LAUNCH_AGENTS_DIR;
      else process.env.NIXVM_LAUNCH_AGENTS_DIR = before;
    }
  });

  it('leaves an identical, loaded login item alone (no bootout that would kill the agent)', async () => {
    const first = scripted([
      [print, NOT_FOUND],
      [bootstrap(), {}],
      [print, () => ({ stdout: printOutput(ARGS, plistPath) })],
    ]);
    await installLoginItem(opts(first));
    const again = scripted([
      [print, () => ({ stdout: printOutput(ARGS, plistPath) })],
      [print, () => ({ stdout: printOutput(ARGS, plistPath) })],
    ]);
    const st = await installLoginItem(opts(again));
    again.done();
    expect(st.loaded).toBe(true);
  });

  it('reloads a loaded login item whose arguments changed', async () => {
    const first = scripted([
      [print, NOT_FOUND],
      [bootstrap(), {}],
      [print, NOT_FOUND],
    ]);
    await installLoginItem(opts(first));
    const newArgs = ['/opt/homebrew/bin/node', '/Users/me/nixvm/bin/nixvm.js', 'daemon'];
    const run = scripted([
      [print, () => ({ stdout: printOutput(ARGS, plistPath) })],
      [bootout, {}],
      [bootstrap(), {}],
      [print, () => ({ stdout: printOutput(newArgs, plistPath) })],
    ]);
    const st = await installLoginItem({ ...opts(run), programArguments: newArgs });
    run.done();
    expect(st.programArguments).toEqual(newArgs);
  });

  it('treats "Bootstrap failed: 5" as success when the service turns out loaded with our arguments', async () => {
    const run = scripted([
      [print, NOT_FOUND],
      [bootstrap(), BOOTSTRAP_EIO],
      [print, () => ({ stdout: printOutput(ARGS, plistPath) })],
      [print, () => ({ stdout: printOutput(ARGS, plistPath) })],
    ]);
    const st = await installLoginItem(opts(run));
    run.done();
    expect(st.loaded).toBe(true);
  });

  it('after "Bootstrap failed: 5" boots out and retries once, then explains', async () => {
    const run = scripted([
      [print, NOT_FOUND],
      [bootstrap(), BOOTSTRAP_EIO],
      [print, NOT_FOUND],
      [bootout, BOOTOUT_NOT_LOADED],
      [bootstrap(), BOOTSTRAP_EIO],
    ]);
    const err = (await installLoginItem(opts(run)).catch((e: unknown) => e)) as Error;
    run.done();
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(plistPath);
    expect(err.message).toContain('Bootstrap failed: 5: Input/output error');
    expect(err.message).toContain(`launchctl print gui/${UID}/${LABEL}`);
    // Not loaded means not installed: no plist is left to say otherwise.
    expect(fs.existsSync(plistPath)).toBe(false);
  });

  it('a failed reinstall puts the previous plist back', async () => {
    fs.mkdirSync(agentsDir, { recursive: true });
    fs.writeFileSync(plistPath, 'the previous plist');
    const run = scripted([
      [print, NOT_FOUND],
      [bootstrap(), BOOTSTRAP_EIO],
      [print, NOT_FOUND],
      [bootout, BOOTOUT_NOT_LOADED],
      [bootstrap(), BOOTSTRAP_EIO],
    ]);
    await expect(installLoginItem(opts(run))).rejects.toThrow('launchctl could not load');
    expect(fs.readFileSync(plistPath, 'utf8')).toBe('the previous plist');
  });

  it('succeeds when the retry after bootout works', async () => {
    const run = scripted([
      [print, NOT_FOUND],
      [bootstrap(), BOOTSTRAP_EIO],
      [print, NOT_FOUND],
      [bootout, {}],
      [bootstrap(), {}],
      [print, () => ({ stdout: printOutput(ARGS, plistPath) })],
    ]);
    expect((await installLoginItem(opts(run))).loaded).toBe(true);
    run.done();
  });

  it('can write without loading (an app that is itself the running agent)', async () => {
    const run = scripted([[print, NOT_FOUND]]);
    const st = await installLoginItem({ ...opts(run), load: false });
    run.done();
    expect(st).toMatchObject({ installed: true, loaded: false });
  });

  it('removes with bootout and deletes the file', async () => {
    fs.mkdirSync(agentsDir, { recursive: true });
    fs.writeFileSync(plistPath, launchAgentPlist({ label: LABEL, programArguments: ARGS, logDir }));
    const run = scripted([
      [bootout, {}],
      [print, NOT_FOUND],
    ]);
    const st = await removeLoginItem(opts(run));
    run.done();
    expect(st).toMatchObject({ installed: false, loaded: false, problem: null });
    expect(fs.existsSync(plistPath)).toBe(false);
  });

  it.each([
    ['exit 3 "No such process"', BOOTOUT_NOT_LOADED],
    [
      'exit 113 "Could not find specified service"',
      { exitCode: 113, stderr: 'Boot-out failed: 113: Could not find specified service\n' },
    ],
  ])('removing tolerates a service that is not loaded (%s)', async (_name, out) => {
    fs.mkdirSync(agentsDir, { recursive: true });
    fs.writeFileSync(plistPath, 'x');
    const run = scripted([
      [bootout, out],
      [print, NOT_FOUND],
    ]);
    await removeLoginItem(opts(run));
    run.done();
    expect(fs.existsSync(plistPath)).toBe(false);
  });

  it('keeps the file and says what failed when bootout fails otherwise', async () => {
    fs.mkdirSync(agentsDir, { recursive: true });
    fs.writeFileSync(plistPath, 'x');
    const run = scripted([[bootout, { exitCode: 1, stderr: 'Boot-out failed: 1: Operation not permitted\n' }]]);
    await expect(removeLoginItem(opts(run))).rejects.toThrow(/could not unload .*Operation not permitted/);
    expect(fs.existsSync(plistPath)).toBe(true);
  });

  it('reports an unreadable plist as a problem', async () => {
    fs.mkdirSync(agentsDir, { recursive: true });
    fs.writeFileSync(plistPath, '<plist><dict><key>Label</key>');
    const run = scripted([[print, NOT_FOUND]]);
    const st = await loginItemStatus(opts(run));
    expect(st.installed).toBe(true);
    expect(st.programArguments).toBeNull();
    expect(st.problem).toContain('not a readable plist');
  });

  const hasLaunchctl = fs.existsSync('/bin/launchctl');
  if (hasLaunchctl) console.log('launchd.test.ts: the no-launchctl case is skipped: this machine has /bin/launchctl');
  it.skipIf(hasLaunchctl)(
    'says login items need macOS where there is no launchctl, never pretending it ran',
    async () => {
      const st = await loginItemStatus({ launchAgentsDir: agentsDir, uid: UID });
      expect(st.loaded).toBe(false);
      expect(st.problem).toContain('Login items need macOS');
      await expect(
        installLoginItem({ launchAgentsDir: agentsDir, logDir, uid: UID, programArguments: ARGS }),
      ).rejects.toBeInstanceOf(LaunchctlMissingError);
      // Nothing left behind: the text and the JSON of `status` both say off.
      expect(fs.existsSync(plistPath)).toBe(false);
      const after = await loginItemStatus({ launchAgentsDir: agentsDir, uid: UID });
      expect(after.installed).toBe(false);
      expect(formatLoginItem(after)).toMatch(/^Login item: off\./);
    },
  );
});

describe('what the login item runs', () => {
  const APP = '/Applications/NixVM.app';
  const EXE = `${APP}/Contents/MacOS/NixVM`;
  const files =
    (...present: string[]) =>
    (p: string) =>
      present.includes(p);

  it("from the app's own CLI, or the app itself: the app's executable, in the plist written", async () => {
    for (const entry of [`${APP}/Contents/Resources/cli/nixvm.mjs`, EXE, `${APP}/Contents/Resources/app.asar`]) {
      const p = loginProgram({ entry, home: '/Users/me', isFile: files(EXE) });
      expect(p).toEqual({ programArguments: [EXE], app: APP });
    }
    const p = loginProgram({ entry: `${APP}/Contents/Resources/cli/nixvm.mjs`, home: '/Users/me', isFile: files(EXE) });
    await installLoginItem({
      launchAgentsDir: agentsDir,
      logDir,
      uid: UID,
      programArguments: p.programArguments!,
      load: false,
    });
    const plist = parse(fs.readFileSync(plistPath, 'utf8')) as Record<string, unknown>;
    expect(plist.ProgramArguments).toEqual([EXE]);
    expect(JSON.stringify(plist)).not.toMatch(/node_modules|bin\/node|nixvm\.js/);
  });

  it('from a checkout: an installed NixVM.app if there is one, else a refusal that says why and what to do', async () => {
    const entry = '/Users/me/src/nixvm/bin/nixvm.js';
    const home = `/Users/me/Applications/NixVM.app/Contents/MacOS/NixVM`;
    expect(loginProgram({ entry, home: '/Users/me', isFile: files(EXE, home) })).toEqual({
      programArguments: [EXE],
      app: APP,
    });
    expect(loginProgram({ entry, home: '/Users/me', isFile: files(home) }).programArguments).toEqual([home]);
    const no = loginProgram({ entry, home: '/Users/me', isFile: files() });
    expect(no.programArguments).toBeUndefined();
    expect(no.refused).toBe(
      'This nixvm runs from a checkout (/Users/me/src/nixvm/bin), and a login item pointing into it would start nothing once the checkout moves or is deleted. Install NixVM.app (`npm run package`, then drag it to Applications) and turn the login item on from the app or its nixvm; until then, start the agent with `npx nixvm daemon`.',
    );
    // An app without its executable is not pointed at either.
    expect(
      loginProgram({ entry: `${APP}/Contents/Resources/cli/nixvm.mjs`, home: '/Users/me', isFile: files() }).refused,
    ).toMatch(/^\/Applications\/NixVM\.app has no Contents\/MacOS\/NixVM; reinstall NixVM\.app/);
  });

  it("names the app a path lies in, and runs the app's CLI again by its launcher", () => {
    expect(appBundleOf(`${APP}/Contents/Resources/cli/nixvm.mjs`)).toBe(APP);
    expect(appBundleOf('/Users/me/My Apps/NixVM.app/Contents/MacOS/NixVM')).toBe('/Users/me/My Apps/NixVM.app');
    expect(appBundleOf('/Users/me/src/nixvm/bin/nixvm.js')).toBeNull();
    // A folder merely named *.app is no bundle.
    expect(appBundleOf('/Users/me/x.app/bin/nixvm.js')).toBeNull();
    expect(selfCommand(EXE, `${APP}/Contents/Resources/cli/nixvm.mjs`)).toEqual([
      `${APP}/Contents/Resources/cli/nixvm`,
    ]);
    expect(selfCommand('/usr/local/bin/node', '/Users/me/src/nixvm/bin/nixvm.js')).toEqual([
      '/usr/local/bin/node',
      '/Users/me/src/nixvm/bin/nixvm.js',
    ]);
  });
});
