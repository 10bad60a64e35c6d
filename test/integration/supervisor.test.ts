/**
 * The supervisor against the vfkit simulator: start/stop, crashes, stop escalation, adoption after
 * the supervising process is SIGKILLed, stale pidfiles, concurrent starts, refusals, version check.
 * Closures are fake directories (kernel/initrd/init files): no nix needed here.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { VmExit, VmSpec } from '../../src/api/types.ts';
import { recentRuns } from '../../src/host/runner.ts';
import { runtimePaths } from '../../src/core/vm/runtime-paths.ts';
import { deviceFacts, vfkitArgv } from '../../src/core/vm/vfkit-args.ts';
import { Supervisor, VmStartError, type SupervisedVm, type SupervisorOptions } from '../../src/core/vm/supervisor.ts';
import { VfkitRest, RestError, mapVfkitState } from '../../src/core/vm/rest.ts';
import { checkVfkitVersion, parseVfkitVersion, VfkitVersionError, locateVfkit } from '../../src/core/vm/vfkit.ts';
import { tail } from '../../src/core/vm/console.ts';
import { vfkitMessage } from '../../src/core/vm/ending.ts';
import { Launcher } from '../../src/core/vm/launcher.ts';
import { testSpec } from '../vfkit-sim/harness.ts';
import { killVfkit } from '../helpers/reap.ts';
import { settles, tail as tailText, waitFor, watchChild } from '../helpers/wait.ts';

const SIM = fileURLToPath(new URL('../vfkit-sim/vfkit', import.meta.url));
const REPO = fileURLToPath(new URL('../../', import.meta.url));

let root: string;
let closure: string;
const supervisors: Supervisor[] = [];
/** Each supervisor's log lines and state dir, for failure messages. */
const seen = new WeakMap<Supervisor, { log: string[]; stateDir: string }>();
/** vfkit pids with their pidfiles, and other children: killed at the end if still running. */
const pidsToReap = new Map<number, string>();
const children: ChildProcess[] = [];

function spec(name: string, over: Partial<VmSpec> = {}): VmSpec {
  return testSpec({
    name,
    flake: root,
    drvPath: `/nix/store/${'a'.repeat(32)}-nixos-system-${name}.drv`,
    kernelParams: ['console=hvc0', 'loglevel=4'],
    ...over,
  });
}

/** A fresh state root per test, so VMs of different tests never meet. */
function fresh(label: string): { stateDir: string; logsDir: string } {
  const base = mkdtempSync(path.join(root, `${label}-`));
  return { stateDir: path.join(base, 'state'), logsDir: path.join(base, 'logs') };
}

function vmFor(dirs: { stateDir: string; logsDir: string }, name: string, over: Partial<VmSpec> = {}): SupervisedVm {
  const s = spec(name, over);
  const paths = runtimePaths(dirs.stateDir, dirs.logsDir, name);
  const mac = `02:00:00:00:00:${(name.length * 7 + name.charCodeAt(0)).toString(16).padStart(2, '0').slice(-2)}`;
  const argv = vfkitArgv({ vfkit: SIM, spec: s, closure, mac, paths });
  return { name, argv, paths, drvPath: s.drvPath, outPath: closure, facts: deviceFacts(s, mac) };
}

function supervisor(dirs: { stateDir: string; logsDir: string }, over: Partial<SupervisorOptions> = {}): Supervisor {
  const sup = new Supervisor({
    ...dirs,
    stopTimeoutMs: 5000,
    env: { NIXVM_LEASES_FILE: path.join(root, 'leases'), NIXVM_SIM_BOOT_MS: '150', ...over.env },
    ...over,
  });
  supervisors.push(sup);
  const log: string[] = [];
  seen.set(sup, { log, stateDir: dirs.stateDir });
  sup.on('log', (l: string) => log.push(l));
  sup.on('change', (name: string) => {
    const pid = sup.status(name).pid;
    if (pid) pidsToReap.set(pid, runtimePaths(dirs.stateDir, dirs.logsDir, name).pidfile);
  });
  return sup;
}

/** Running, and not a zombie waiting to be reaped (orphans of the killed owner may briefly be). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    return stat !== '' && !stat.startsWith('Z');
  } catch {
    return false;
  }
}

/** What `sup` said and what vfkit wrote for VM `name`: why a wait on it failed. */
function story(sup: Supervisor, name: string): () => string {
  return () => {
    const s = seen.get(sup);
    if (!s) return '';
    let out = `The supervisor said:\n${s.log.slice(-20).join('\n')}`;
    try {
      out += `\n${name}'s vfkit.log:\n${tailText(readFileSync(path.join(s.stateDir, 'vms', name, 'vfkit.log'), 'utf8'))}`;
    } catch {
      out += `\n${name} has no vfkit.log.`;
    }
    return out;
  };
}

/** The next exit of VM `name`, within the wait deadline. */
function nextExit(sup: Supervisor, name: string): Promise<VmExit> {
  const exit = new Promise<VmExit>((resolve) => {
    const on = (n: string, e: VmExit) => {
      if (n !== name) return;
      sup.off('exit', on);
      resolve(e);
    };
    sup.on('exit', on);
  });
  return settles(exit, { what: `VM "${name}" to exit`, detail: story(sup, name) });
}

beforeAll(() => {
  root = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'nixvm-sup-')));
  closure = path.join(root, 'store', `${'b'.repeat(32)}-nixos-system-test-24.05`);
  mkdirSync(closure, { recursive: true });
  // An arm64 Image header is not needed: the simulator only opens and reads the kernel.
  writeFileSync(path.join(closure, 'kernel'), Buffer.alloc(4096, 1));
  writeFileSync(path.join(closure, 'initrd'), Buffer.alloc(1024, 2));
  writeFileSync(path.join(closure, 'init'), '#!/bin/sh\n');
});

afterEach(() => {
  for (const s of supervisors.splice(0)) s.close();
});

afterAll(() => {
  // Nothing may outlive the suite, whatever failed; and nothing that is not ours is touched
  // (a pid seen earlier may belong to someone else by now).
  for (const [pid, pidfile] of pidsToReap) killVfkit(pid, pidfile);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

describe('Supervisor', () => {
  it('starts a VM to running and stops it cleanly', async () => {
    const dirs = fresh('basic');
    const sup = supervisor(dirs);
    const vm = vmFor(dirs, 'web');
    const states: string[] = [];
    sup.on('change', (n: string) => {
      const s = sup.status('web').state;
      if (n === 'web' && states.at(-1) !== s) states.push(s);
    });

    await sup.start(vm);
    const st = sup.status('web');
    expect(st.state).toBe('running');
    expect(st.pid).toBeGreaterThan(0);
    expect(alive(st.pid!)).toBe(true);
    // What it booted comes from the supervisor's memory: argv, closure, device facts, MAC.
    expect(st.booted).toEqual({
      drvPath: vm.drvPath,
      outPath: closure,
      argv: vm.argv,
      facts: vm.facts,
      mac: vm.facts!.mac,
      // Not switched in place (apply) since it booted.
      switchedTo: null,
    });
    expect(Number(readFileSync(vm.paths.pidfile, 'utf8'))).toBe(st.pid);
    const record = JSON.parse(readFileSync(vm.paths.bootRecord, 'utf8'));
    expect(record).toMatchObject({ name: 'web', argv: vm.argv, drvPath: vm.drvPath, outPath: closure, pid: st.pid });

    // The REST client reads the same state vfkit's API reports, and its config.
    const rest = new VfkitRest(`unix://${vm.paths.restSocket}`);
    expect((await rest.getState()).state).toBe('running');
    const inspect = await rest.inspect();
    expect(inspect.vcpus).toBe(1);
    expect(inspect.memoryBytes).toBe(512 * 1024 * 1024);
    // Asking for a change vfkit refuses comes back as a typed error with vfkit's text.
    const refused = await rest.setState('Resume').catch((e) => e);
    expect(refused).toBeInstanceOf(RestError);
    expect(refused.kind).toBe('http');
    expect(refused.status).toBe(500);

    // Booting wrote the console log.
    await waitFor(async () => (await tail(vm.paths.consoleLog, 5)).length > 0, {
      what: 'console output',
      detail: story(sup, 'web'),
    });

    const exitP = nextExit(sup, 'web');
    await sup.stop('web');
    const exit = await exitP;
    expect(sup.status('web').state).toBe('stopped');
    expect(exit.code).toBe(0);
    expect(exit.signal).toBeNull();
    expect(sup.status('web').error).toBeNull();
    expect(sup.status('web').pid).toBeNull();
    expect(alive(st.pid!)).toBe(false);
    expect(existsSync(vm.paths.pidfile)).toBe(false);
    expect(existsSync(vm.paths.restSocket)).toBe(false);
    expect(states).toEqual(['starting', 'running', 'stopping', 'stopped']);
    // The REST client now says nobody is there.
    const gone = await rest.getState().catch((e) => e);
    expect(gone).toBeInstanceOf(RestError);
    expect(gone.kind).toBe('unreachable');
  });

  it('reports a crash with the exit code and the last console lines', async () => {
    const dirs = fresh('crash');
    const sup = supervisor(dirs, { env: { NIXVM_SIM_CRASH_AFTER_MS: '1500', NIXVM_SIM_CRASH_CODE: '3' } });
    const vm = vmFor(dirs, 'db');
    const exitP = nextExit(sup, 'db');
    await sup.start(vm);
    const exit = await exitP;
    const st = sup.status('db');
    expect(st.state).toBe('crashed');
    expect(exit.code).toBe(3);
    expect(st.exit).toEqual(exit);
    expect(exit.lastLines.length).toBeGreaterThan(0);
    expect(exit.lastLines).toEqual(await tail(vm.paths.consoleLog, exit.lastLines.length));
    expect(st.error).toContain('"db"');
    expect(st.error).toContain('code 3');
    // Stopping a crashed VM is a no-op.
    await sup.stop('db');
    expect(sup.status('db').state).toBe('crashed');
  });

  it('escalates to HardStop when the guest ignores Stop', async () => {
    const dirs = fresh('esc');
    const sup = supervisor(dirs, { stopTimeoutMs: 300, env: { NIXVM_SIM_IGNORE_STOP: '1' } });
    const vm = vmFor(dirs, 'stubborn');
    const log: string[] = [];
    sup.on('log', (l: string) => log.push(l));
    await sup.start(vm);
    const exitP = nextExit(sup, 'stubborn');
    await sup.stop('stubborn');
    const exit = await exitP;
    expect(sup.status('stubborn').state).toBe('stopped');
    expect(exit.signal).toBeNull();
    expect(log.some((l) => l.includes('REST Stop'))).toBe(true);
    expect(log.some((l) => l.includes('REST HardStop'))).toBe(true);
    expect(log.some((l) => l.includes('SIGTERM'))).toBe(false);
  });

  it('falls back to signals when the REST API is gone', async () => {
    const dirs = fresh('sig');
    const sup = supervisor(dirs, {
      stopTimeoutMs: 300,
      hardStopTimeoutMs: 300,
      termTimeoutMs: 300,
      env: { NIXVM_SIM_IGNORE_STOP: '1' },
    });
    const vm = vmFor(dirs, 'deaf');
    const log: string[] = [];
    sup.on('log', (l: string) => log.push(l));
    await sup.start(vm);
    // Without its socket file, nothing reaches vfkit's API: only signals are left.
    rmSync(vm.paths.restSocket);
    const exitP = nextExit(sup, 'deaf');
    await sup.stop('deaf');
    const exit = await exitP;
    expect(sup.status('deaf').state).toBe('stopped');
    expect(log.some((l) => l.includes('sent SIGTERM'))).toBe(true);
    expect(log.some((l) => l.includes('sent REST'))).toBe(false);
    // vfkit handles SIGTERM by asking the guest to stop; this guest ignores that and vfkit would
    // force it only after 5 s, so within our 300 ms it is SIGKILL that ends it.
    expect(log.some((l) => l.includes('sent SIGKILL'))).toBe(true);
    expect(exit.signal).toBe('SIGKILL');
    // We asked for it: stopped, not crashed, even though it took a SIGKILL.
    expect(sup.status('deaf').error).toBeNull();
  });

  it('stops a VM that is still booting, starts again after a stop, and restarts onto a new closure', async () => {
    const dirs = fresh('boot');
    const sup = supervisor(dirs, { env: { NIXVM_SIM_BOOT_MS: '1500' } });
    const vm = vmFor(dirs, 'slow');
    // Cancelled by the stop below: caught at once, so the rejection is never unhandled.
    const started = sup.start(vm).catch((e: unknown) => e);
    await waitFor(() => sup.status('slow').pid !== null, { what: 'vfkit to be spawned', detail: story(sup, 'slow') });
    const pid1 = sup.status('slow').pid!;
    expect(sup.status('slow').state).toBe('starting');
    const stopped = sup.stop('slow');
    // A start asked for while stopping runs after the stop, on a fresh vfkit.
    const again = sup.start(vm);
    await stopped;
    // Issue 16: the interrupted start says it was cancelled (it used to report success).
    expect(await started).toMatchObject({
      name: 'VmStartError',
      cancelled: true,
      message: 'The start of VM "slow" was cancelled: it was stopped before it finished starting.',
    });
    expect(alive(pid1)).toBe(false);
    await again;
    expect(sup.status('slow').state).toBe('running');
    const pid2 = sup.status('slow').pid!;
    expect(pid2).not.toBe(pid1);

    const next = { ...vm, drvPath: vm.drvPath.replace('nixos-system', 'nixos-system-v2'), outPath: `${closure}-v2` };
    await sup.restart(next);
    expect(sup.status('slow').state).toBe('running');
    expect(sup.status('slow').pid).not.toBe(pid2);
    expect(sup.status('slow').booted).toMatchObject({ drvPath: next.drvPath, outPath: next.outPath, argv: next.argv });
    await sup.stop('slow');
  });

  it('gives up on a VM that never comes up, and says so', async () => {
    const dirs = fresh('never');
    const sup = supervisor(dirs, {
      bootTimeoutMs: 400,
      stopTimeoutMs: 200,
      hardStopTimeoutMs: 500,
      env: { NIXVM_SIM_BOOT_MS: '60000' },
    });
    const vm = vmFor(dirs, 'never');
    const err = await sup.start(vm).catch((e) => e);
    expect(err).toBeInstanceOf(VmStartError);
    expect(err.message).toMatch(/^VM "never" did not come up within 0.4 s/);
    expect(sup.status('never').state).toBe('crashed');
    expect(sup.status('never').pid).toBeNull();
    expect(existsSync(vm.paths.pidfile)).toBe(false);
  });

  it('spawns exactly one vfkit for concurrent starts, and start on a running VM is a no-op', async () => {
    const dirs = fresh('conc');
    const sup = supervisor(dirs);
    const vm = vmFor(dirs, 'twice');
    const spawnsBefore = recentRuns().filter((r) => r.argv.includes(vm.paths.pidfile)).length;
    await Promise.all([sup.start(vm), sup.start(vm), sup.start(vm)]);
    await sup.start(vm);
    const spawns = recentRuns().filter((r) => r.argv.includes(vm.paths.pidfile)).length - spawnsBefore;
    expect(spawns).toBe(1);
    expect(sup.status('twice').state).toBe('running');
    // A second supervisor (an agent that did not adopt yet) takes the running vfkit over instead of
    // starting another on the same files.
    const other = supervisor(dirs);
    await other.start(vm);
    expect(other.status('twice').pid).toBe(sup.status('twice').pid);
    expect(recentRuns().filter((r) => r.argv.includes(vm.paths.pidfile)).length - spawnsBefore).toBe(1);
    await sup.stop('twice');
  });

  it('surfaces vfkit refusing the configuration as one sentence', async () => {
    const dirs = fresh('refuse');
    const sup = supervisor(dirs, { env: { NIXVM_SIM_FAIL: 'rosetta' } });
    const vm = vmFor(dirs, 'intel', { rosetta: true });
    const err = await sup.start(vm).catch((e) => e);
    expect(err).toBeInstanceOf(VmStartError);
    expect(err.message).toMatch(
      /^vfkit refused to start VM "intel": rosetta is not installed; .*softwareupdate --install-rosetta/,
    );
    expect(err.message.split('\n')).toHaveLength(1);
    expect(sup.status('intel').state).toBe('crashed');
    expect(sup.status('intel').error).toBe(err.message);
    expect(sup.status('intel').exit?.code).toBe(1);

    // A kernel that went missing between composing and spawning: vfkit's own words, named file.
    const dirs2 = fresh('refuse2');
    const sup2 = supervisor(dirs2);
    const gone = path.join(root, 'store', `${'c'.repeat(32)}-nixos-system-gone-24.05`);
    mkdirSync(gone, { recursive: true });
    writeFileSync(path.join(gone, 'initrd'), 'x');
    const s = spec('gone');
    const paths = runtimePaths(dirs2.stateDir, dirs2.logsDir, 'gone');
    const argv = vfkitArgv({ vfkit: SIM, spec: s, closure: gone, mac: '02:00:00:00:01:01', paths });
    const err2 = await sup2
      .start({ name: 'gone', argv, paths, drvPath: s.drvPath, outPath: gone, facts: null })
      .catch((e) => e);
    expect(err2).toBeInstanceOf(VmStartError);
    expect(err2.message).toContain('vfkit refused to start VM "gone"');
    expect(err2.message).toContain(path.join(gone, 'kernel'));
  });

  it('refuses a vfkit older than 0.6.2, naming the version found, and spawns nothing', async () => {
    // The launcher owns the version check: a start never reaches the supervisor.
    const dirs = fresh('old');
    const sup = supervisor(dirs);
    const env = { NIXVM_SIM_VERSION: '0.5.0' };
    const launcher = new Launcher({ supervisor: sup, ...dirs, vmEnv: env, log: () => {} });
    await launcher.locate(SIM);
    expect(launcher.vfkit).toBeNull();
    expect(launcher.problem).toContain('vfkit 0.5.0');
    expect(launcher.problem).toContain('0.6.2');
    const target = { name: 'old', flake: root, spec: spec('old') };
    const err = await launcher
      .launch(target, { drvPath: target.spec.drvPath, outPath: closure }, { restart: false })
      .catch((e) => e);
    expect(err.message).toBe(launcher.problem);
    expect(sup.status('old').state).toBe('stopped');
    expect(existsSync(launcher.paths('old').pidfile)).toBe(false);
    await expect(checkVfkitVersion(SIM, { env })).rejects.toBeInstanceOf(VfkitVersionError);

    const ok = await checkVfkitVersion(SIM, { env: { NIXVM_SIM_VERSION: '0.6.4' } });
    expect(ok.parts).toEqual([0, 6, 4]);
    expect(parseVfkitVersion('vfkit version: v0.6.2-7-g1234abc\n').parts).toEqual([0, 6, 2]);
    expect(parseVfkitVersion('vfkit version: \n').version).toBeNull();
  });

  it('adopts every VM after the supervising process is SIGKILLed, and still sees later exits', async () => {
    const dirs = fresh('adopt');
    const names = ['a1', 'a2', 'a3'];
    const leases = path.join(root, 'leases');
    const script = path.join(root, 'owner.mjs');
    writeFileSync(
      script,
      `
import { Supervisor } from ${JSON.stringify(path.join(REPO, 'src/core/vm/supervisor.ts'))};
const [dirs, vms] = JSON.parse(process.argv[2]);
const base = { ...dirs };
const env = { NIXVM_LEASES_FILE: ${JSON.stringify(leases)}, NIXVM_SIM_BOOT_MS: '100' };
const plain = new Supervisor({ ...base, env });
// a3 will crash on its own long after its owner is gone.
const crashy = new Supervisor({ ...base, env: { ...env, NIXVM_SIM_CRASH_AFTER_MS: '4000', NIXVM_SIM_CRASH_CODE: '7' } });
await Promise.all(vms.map((vm) => (vm.name === 'a3' ? crashy : plain).start(vm)));
process.stdout.write('ready ' + JSON.stringify(vms.map((vm) => plain.status(vm.name).pid ?? crashy.status(vm.name).pid)) + '\\n');
setInterval(() => {}, 1000);
`,
    );
    const vms = names.map((n) => vmFor(dirs, n));
    const owner: ChildProcess = spawn(process.execPath, [script, JSON.stringify([dirs, vms])], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env },
    });
    const ownerW = watchChild(owner, 'the supervising process', { stdout: true });
    const pids = await waitFor(
      () => {
        const m = ownerW.output().match(/ready (\[.*\])/);
        return m ? (JSON.parse(m[1]!) as number[]) : null;
      },
      { what: 'the supervising process to start its VMs', process: ownerW },
    );
    for (const [i, p] of pids.entries()) pidsToReap.set(p, vms[i]!.paths.pidfile);
    owner.kill('SIGKILL');
    await settles(ownerW.exited, { what: 'the SIGKILLed supervising process to be gone' });
    expect(pids.every(alive)).toBe(true);

    const sup = supervisor(dirs);
    const adopted = await sup.adoptAll();
    expect(adopted.sort()).toEqual(names);
    for (const [i, n] of names.entries()) {
      const st = sup.status(n);
      expect(st.state).toBe('running');
      expect(st.pid).toBe(pids[i]);
      expect(st.booted?.drvPath).toBe(vms[i]!.drvPath);
    }

    // a3 crashes by itself: learned without being its parent (exit code unknowable, so null).
    const crash = await nextExit(sup, 'a3');
    expect(crash.code).toBeNull();
    expect(sup.status('a3').state).toBe('crashed');
    expect(sup.status('a3').error).toContain('exit code is unknown');
    expect(crash.lastLines.length).toBeGreaterThan(0);

    // a2 is shut down from outside (SIGTERM → vfkit stops the guest cleanly): stopped, not crashed.
    const ext = nextExit(sup, 'a2');
    process.kill(pids[1]!, 'SIGTERM');
    await ext;
    expect(sup.status('a2').state).toBe('stopped');

    // a1 is stopped through the new supervisor.
    await sup.stop('a1');
    expect(sup.status('a1').state).toBe('stopped');
    expect(pids.some(alive)).toBe(false);
    for (const vm of vms) expect(existsSync(vm.paths.pidfile)).toBe(false);
  });

  it('cleans up stale pidfiles and sockets: a dead pid, and a pid reused by another program', async () => {
    const dirs = fresh('stale');
    const sup = supervisor(dirs);
    const log: string[] = [];
    sup.on('log', (l: string) => log.push(l));
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(other);
    const dead = spawn('true', [], { stdio: 'ignore' });
    await settles(watchChild(dead, '`true`').exited, { what: 'a process that exits at once to exit' });
    const cases = [
      { name: 'reused', pid: other.pid! },
      { name: 'dead', pid: dead.pid! },
    ];
    for (const c of cases) {
      const vm = vmFor(dirs, c.name);
      mkdirSync(vm.paths.dir, { recursive: true });
      writeFileSync(vm.paths.pidfile, String(c.pid));
      writeFileSync(vm.paths.restSocket, ''); // a leftover socket path
      writeFileSync(
        vm.paths.bootRecord,
        JSON.stringify({
          name: c.name,
          argv: vm.argv,
          drvPath: vm.drvPath,
          outPath: closure,
          startedAt: 1,
          pid: c.pid,
          paths: vm.paths,
        }),
      );
    }
    expect(await sup.adoptAll()).toEqual([]);
    for (const c of cases) {
      const p = runtimePaths(dirs.stateDir, dirs.logsDir, c.name);
      expect(existsSync(p.pidfile)).toBe(false);
      expect(existsSync(p.restSocket)).toBe(false);
      expect(sup.status(c.name).state).toBe('stopped');
    }
    expect(log.some((l) => l.includes('"reused"') && l.includes(`pid ${other.pid} is another program`))).toBe(true);
    expect(log.some((l) => l.includes('"dead"') && l.includes('stale'))).toBe(true);
    // The unrelated process was left alone.
    expect(alive(other.pid!)).toBe(true);
    other.kill();
    // A second scan finds nothing left to clean and says nothing.
    log.length = 0;
    expect(await sup.adoptAll()).toEqual([]);
    expect(log).toEqual([]);
    // And the VM starts normally on the cleaned files.
    const vm = vmFor(dirs, 'reused');
    await sup.start(vm);
    expect(sup.status('reused').state).toBe('running');
    await sup.stop('reused');
  });
});

describe('VMs that ended while no agent watched', () => {
  it('tells a crash from a clean power-off and from a host restart, by the console and the boot time', async () => {
    const dirs = fresh('away');
    const sup = supervisor(dirs);
    const exits: string[] = [];
    sup.on('exit', (name: string) => exits.push(name));
    const dead = spawn('true', [], { stdio: 'ignore' });
    await settles(watchChild(dead, '`true`').exited, { what: 'a process that exits at once to exit' });
    const booted = Date.now() - os.uptime() * 1000;
    const cases = [
      {
        name: 'panicked',
        startedAt: Date.now() - 5000,
        console:
          '[  OK  ] Reached target Multi-User System.\n[   42.1] Kernel panic - not syncing: Attempted to kill init!\n',
      },
      {
        name: 'poweredoff',
        startedAt: Date.now() - 5000,
        console: '[  OK  ] Reached target System Power Off.\n[   9.9] reboot: Power down\n',
      },
      { name: 'hostrestart', startedAt: booted - 60_000, console: '[  OK  ] Started SSH Daemon.\n' },
    ];
    for (const c of cases) {
      const vm = vmFor(dirs, c.name);
      mkdirSync(vm.paths.dir, { recursive: true });
      mkdirSync(path.dirname(vm.paths.consoleLog), { recursive: true });
      writeFileSync(vm.paths.pidfile, String(dead.pid));
      writeFileSync(vm.paths.consoleLog, c.console);
      writeFileSync(
        vm.paths.bootRecord,
        JSON.stringify({
          name: c.name,
          argv: vm.argv,
          drvPath: vm.drvPath,
          outPath: closure,
          startedAt: c.startedAt,
          pid: dead.pid,
          paths: vm.paths,
        }),
      );
    }
    expect(await sup.adoptAll()).toEqual([]);
    expect(sup.status('panicked').state).toBe('crashed');
    expect(sup.status('panicked').error).toMatch(
      /^VM "panicked" ended while nixvm was not running, without a clean shutdown \(last console line: .*Kernel panic/,
    );
    expect(sup.status('panicked').exit).toMatchObject({ code: null, signal: null });
    expect(sup.status('panicked').exit!.lastLines.at(-1)).toMatch(/Kernel panic/);
    expect(sup.status('poweredoff').state).toBe('stopped');
    expect(sup.status('hostrestart').state).toBe('stopped');
    expect(sup.status('hostrestart').error).toBeNull();
    expect(exits.sort()).toEqual(['hostrestart', 'panicked', 'poweredoff']);
    // Known now: a second scan (another agent start) says nothing new.
    exits.length = 0;
    await sup.adoptAll();
    expect(exits).toEqual([]);
  });
});

describe('pieces', () => {
  it('maps vfkit state names to ours', () => {
    expect(mapVfkitState('VirtualMachineStateRunning')).toEqual({ state: 'running', paused: false });
    expect(mapVfkitState('VirtualMachineStatePaused')).toEqual({ state: 'running', paused: true });
    expect(mapVfkitState('VirtualMachineStateStarting').state).toBe('starting');
    expect(mapVfkitState('VirtualMachineStateStopping').state).toBe('stopping');
    expect(mapVfkitState('VirtualMachineStateStopped').state).toBe('stopped');
    expect(mapVfkitState('VirtualMachineStateError').state).toBe('crashed');
  });

  it("finds vfkit's error in its output", () => {
    const out = [
      'time="2024-06-01T10:00:00+02:00" level=info msg="virtual machine parameters:"',
      'Error: kernel must be uncompressed, /nix/store/x/kernel is a compressed file',
      'Usage:',
      '  vfkit [flags]',
      'kernel must be uncompressed, /nix/store/x/kernel is a compressed file',
    ].join('\n');
    expect(vfkitMessage(out)).toBe('kernel must be uncompressed, /nix/store/x/kernel is a compressed file');
    expect(vfkitMessage('time="x" level=fatal msg="listen unix /x: bind: address already in use"\n')).toBe(
      'listen unix /x: bind: address already in use',
    );
  });

  it('names what to install when vfkit is missing, and a wrong configured path as such', () => {
    const saved = { PATH: process.env.PATH, NIXVM_VFKIT: process.env.NIXVM_VFKIT };
    try {
      delete process.env.NIXVM_VFKIT;
      expect(() => locateVfkit('/nope/vfkit')).toThrow(
        'The vfkit path in the settings, /nope/vfkit, is not an executable file; fix or clear it.',
      );
      process.env.NIXVM_VFKIT = SIM;
      expect(locateVfkit()).toBe(SIM);
      delete process.env.NIXVM_VFKIT;
      process.env.PATH = '/nonexistent';
      let found: string | Error;
      try {
        found = locateVfkit();
      } catch (e) {
        found = e as Error;
      }
      // Homebrew or a Nix profile may really hold vfkit on some machine; check the message when missing.
      if (found instanceof Error) expect(found.message).toMatch(/Could not find vfkit .*brew install vfkit/);
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.NIXVM_VFKIT === undefined) delete process.env.NIXVM_VFKIT;
      else process.env.NIXVM_VFKIT = saved.NIXVM_VFKIT;
    }
  });
});
