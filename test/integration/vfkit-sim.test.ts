/**
 * The vfkit simulator against the argv the agent composes (vfkitArgv): everything we would run is
 * accepted, and what vfkit refuses, the simulator refuses with vfkit's words.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { VmSpec } from '../../src/api/types.ts';
import { runtimePaths, prepareRuntimeDirs, type VmRuntimePaths } from '../../src/core/vm/runtime-paths.ts';
import { planDisks, vfkitArgv } from '../../src/core/vm/vfkit-args.ts';
import type { ConsoleRelay } from '../../src/core/vm/console-relay.ts';
import { settles, tail, waitFor } from '../helpers/wait.ts';
import {
  makeClosure,
  relayConsole,
  restCall,
  simState,
  spawnSim,
  testSpec,
  VFKIT_SIM,
  type SimProcess,
} from '../vfkit-sim/harness.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-sim-'));
const closure = makeClosure(root, 'web');
const spawned: SimProcess[] = [];
afterAll(() => {
  for (const s of spawned) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

let seq = 0;
function spec(over: Partial<VmSpec> = {}): VmSpec {
  return testSpec({ flake: root, cpus: 2, memoryMiB: 1024, ssh: { enabled: true, port: 22, user: 'me' }, ...over });
}

/** A fresh VM: its runtime paths (dirs made), the argv the agent would run, and a leases file. */
function vm(over: Partial<VmSpec> = {}, mac = '02:04:00:0a:00:01') {
  const n = ++seq;
  const s = spec({ name: `vm${n}`, ...over });
  const paths: VmRuntimePaths = runtimePaths(path.join(root, `s${n}`), path.join(root, `l${n}`), s.name);
  prepareRuntimeDirs(paths);
  const argv = vfkitArgv({ vfkit: VFKIT_SIM, spec: s, closure, mac, paths });
  consoleOf.set(argv, paths);
  return { spec: s, paths, argv, leases: path.join(root, `leases${n}`) };
}

/** The paths of each composed argv: the console is a pty, which the test reads into the log as the agent does. */
const consoleOf = new WeakMap<string[], VmRuntimePaths>();

function start(argv: string[], env: Record<string, string> = {}, cwd?: string): SimProcess {
  const p = spawnSim(argv, env, cwd);
  spawned.push(p);
  const paths = consoleOf.get(argv);
  if (paths) relays.set(p, relayConsole(p, paths.restSocket, paths.consoleLog));
  return p;
}
const relays = new WeakMap<SimProcess, Promise<ConsoleRelay | null>>();

/** The simulator's exit, within the wait deadline. */
async function exitOf(p: SimProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const exit = await settles(p.exited, { what: `${p.name} to exit`, detail: () => `It wrote:\n${tail(p.output())}` });
  // The guest's last words are in the log once the console reader has seen the pty close.
  const relay = await relays.get(p);
  if (relay) await settles(relay.closed, { what: `the console of ${p.name} to close` });
  return exit;
}

/** Waits until the simulator `p` reports VirtualMachineStateRunning on `socket` (failing if it exits). */
async function running(p: SimProcess, socket: string): Promise<void> {
  await waitFor(async () => (await simState(socket)) === 'VirtualMachineStateRunning', {
    what: `VirtualMachineStateRunning on ${socket}`,
    process: p,
  });
}

/** Waits until the console log at `file` satisfies `ok`. */
function consoleShows(p: SimProcess, file: string, what: string, ok: (text: string) => boolean): Promise<boolean> {
  return waitFor(() => ok(fs.readFileSync(file, 'utf8')), { what: `${what} on the console`, process: p });
}

const lastLine = (s: string) => s.trimEnd().split('\n').at(-1);

/** Run the simulator to its exit and return the exit code and the error vfkit printed last. */
async function refused(
  argv: string[],
  env: Record<string, string> = {},
  cwd?: string,
): Promise<{ code: number | null; last: string | undefined; stderr: string }> {
  const p = start(argv, env, cwd);
  const { code } = await exitOf(p);
  return { code, last: lastLine(p.stderr()), stderr: p.stderr() };
}

describe.concurrent('the simulator runs what vfkitArgv composes', () => {
  it('boots, serves the REST API with vfkit’s shapes, records a lease and stops on Stop', async () => {
    const shareDir = fs.mkdtempSync(path.join(root, 'share-'));
    const v = vm({
      mountHostNixStore: true,
      rosetta: true,
      graphics: true,
      shares: [{ tag: 'src', source: shareDir, target: '/mnt/src' }],
    });
    const p = start(v.argv, { NIXVM_LEASES_FILE: v.leases, NIXVM_SIM_BOOT_MS: '1500' });

    // The pidfile: vfkit's pid, no newline.
    const pid = await waitFor(() => fs.readFileSync(v.paths.pidfile, 'utf8'), { what: 'the pidfile', process: p });
    expect(pid).toBe(String(p.pid));

    const first = await waitFor(() => simState(v.paths.restSocket), { what: 'the REST socket', process: p });
    expect(first).toBe('VirtualMachineStateStarting');
    const sizeWhileBooting = fs.statSync(v.paths.consoleLog, { throwIfNoEntry: false })?.size ?? 0;
    await running(p, v.paths.restSocket);

    const st = await restCall(v.paths.restSocket, 'GET', '/vm/state');
    expect(st.status).toBe(200);
    expect(st.headers['content-type']).toBe('application/json; charset=utf-8');
    // gin.H is a map: encoding/json writes its keys sorted.
    expect(st.body).toBe(
      '{"canHardStop":true,"canPause":true,"canResume":false,"canStart":false,"canStop":true,"state":"VirtualMachineStateRunning"}',
    );

    const insp = JSON.parse((await restCall(v.paths.restSocket, 'GET', '/vm/inspect')).body);
    expect(insp).toEqual({
      vcpus: 2,
      memoryBytes: 1024 * 1024 * 1024,
      bootloader: {
        kind: 'linuxBootloader',
        vmlinuzPath: `${closure}/kernel`,
        kernelCmdLine: `console=hvc0 init=${closure}/init`,
        initrdPath: `${closure}/initrd`,
      },
      devices: [
        { kind: 'virtionet', nat: true, macAddress: '02:04:00:0a:00:01' },
        { kind: 'virtioserial', usesPty: true, ptyName: expect.stringMatching(/^\/dev\/pts\/\d+$/) },
        { kind: 'virtiorng' },
        { kind: 'virtiofs', mountTag: 'nix-store', sharedDir: '/nix/store' },
        { kind: 'virtiofs', mountTag: 'src', sharedDir: shareDir },
        { kind: 'rosetta', mountTag: 'rosetta', installRosetta: false, ignoreIfMissing: false },
        { kind: 'virtiogpu', usesGUI: true, width: 1024, height: 768 },
        { kind: 'virtioinput', inputType: 'keyboard' },
        { kind: 'virtioinput', inputType: 'pointing' },
        // The host end of the guest's vsock port 22, for ssh without an IP.
        { kind: 'virtiosock', port: 22, socketURL: v.paths.sshSocket },
      ],
    });

    // The console grows while booting and ends at the login prompt.
    const lease = await waitFor(() => fs.readFileSync(v.leases, 'utf8'), { what: 'the lease', process: p });
    await consoleShows(p, v.paths.consoleLog, 'the login prompt', (c) => c.includes('web login:'));
    const console1 = fs.readFileSync(v.paths.consoleLog, 'utf8');
    expect(console1.length).toBeGreaterThan(sizeWhileBooting);
    expect(console1).toContain(`Kernel command line: console=hvc0 init=${closure}/init`);
    expect(console1).toContain('<<< NixOS Stage 2 >>>');
    expect(console1.indexOf('Kernel command line')).toBeLessThan(console1.indexOf('web login:'));

    // bootpd's format, leading zeros dropped from every octet.
    expect(lease).toMatch(
      /^\{\n\tname=web\n\tip_address=192\.168\.64\.2\n\thw_address=1,2:4:0:a:0:1\n\tidentifier=1,2:4:0:a:0:1\n\tlease=0x[0-9a-f]+\n\}\n$/,
    );

    const stop = await restCall(v.paths.restSocket, 'POST', '/vm/state', '{"state":"Stop"}');
    expect(stop.status).toBe(202);
    expect(stop.body).toBe('');
    expect(await exitOf(p)).toEqual({ code: 0, signal: null });
    expect(fs.readFileSync(v.paths.consoleLog, 'utf8').trimEnd().endsWith('reboot: Power down')).toBe(true);
    // vfkit removes its REST socket on a clean exit, and leaves its pidfile behind.
    expect(fs.existsSync(v.paths.restSocket)).toBe(false);
    expect(fs.existsSync(v.paths.pidfile)).toBe(true);
  });

  it('accepts every variant of the composed argv', async () => {
    const share = fs.mkdtempSync(path.join(root, 'Data Disk x=y '));
    const variants: Partial<VmSpec>[] = [
      {},
      { mountHostNixStore: true },
      { rosetta: true, kernelParams: [] },
      { graphics: true, resolution: { width: 1, height: 1 } },
      {
        shares: [
          { tag: 'x'.repeat(36), source: share, target: '/x' },
          { tag: 'é'.repeat(18), source: share, target: '/y' },
        ],
      },
      { kernelParams: ['console=hvc0', 'systemd.unit=rescue.target', 'a=b,c'], cpus: 1, memoryMiB: 128 },
    ];
    await Promise.all(
      variants.map(async (over, i) => {
        const v = vm(over, `02:00:00:00:01:${String(i).padStart(2, '0')}`);
        const p = start(v.argv, { NIXVM_SIM_BOOT_MS: '50' });
        await running(p, v.paths.restSocket);
        const insp = JSON.parse((await restCall(v.paths.restSocket, 'GET', '/vm/inspect')).body) as {
          devices: unknown[];
        };
        expect(insp.devices).toHaveLength(v.argv.filter((a) => a === '--device').length);
        expect((await restCall(v.paths.restSocket, 'POST', '/vm/state', '{"state":"HardStop"}')).status).toBe(202);
        expect((await exitOf(p)).code).toBe(0);
      }),
    );
  });

  it('HardStop ends it at once; Pause and Resume change the state; bad requests get vfkit’s errors', async () => {
    const v = vm();
    const p = start(v.argv, { NIXVM_SIM_BOOT_MS: '50', NIXVM_SIM_SHUTDOWN_MS: '30000' });
    const sock = v.paths.restSocket;
    await running(p, sock);

    expect((await restCall(sock, 'POST', '/vm/state', '{"state":"Pause"}')).status).toBe(202);
    expect(await simState(sock)).toBe('VirtualMachineStatePaused');
    expect(JSON.parse((await restCall(sock, 'GET', '/vm/state')).body)).toMatchObject({
      canPause: false,
      canResume: true,
      canStop: false,
      canHardStop: true,
    });
    const again = await restCall(sock, 'POST', '/vm/state', '{"state":"Pause"}');
    expect(again.status).toBe(500);
    expect(JSON.parse(again.body).error).toMatch(/^Error Domain=VZErrorDomain Code=4 /);
    expect((await restCall(sock, 'POST', '/vm/state', '{"state":"Resume"}')).status).toBe(202);
    expect(await simState(sock)).toBe('VirtualMachineStateRunning');

    expect(await restCall(sock, 'POST', '/vm/state', '{"state":"Bogus"}')).toMatchObject({
      status: 500,
      body: '{"error":"invalid new VMState: Bogus"}',
    });
    expect(await restCall(sock, 'POST', '/vm/state', '')).toMatchObject({ status: 400, body: '{"error":"EOF"}' });
    expect(await restCall(sock, 'POST', '/vm/state', '{"state":1}')).toMatchObject({
      status: 400,
      body: '{"error":"json: cannot unmarshal number into Go struct field VMState.state of type string"}',
    });
    expect(await restCall(sock, 'GET', '/vm/nothing')).toMatchObject({ status: 404, body: '404 page not found' });

    const t0 = Date.now();
    expect((await restCall(sock, 'POST', '/vm/state', '{"state":"HardStop"}')).status).toBe(202);
    expect(await exitOf(p)).toEqual({ code: 0, signal: null });
    // Far sooner than the 30 s the guest would take to shut down.
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(fs.readFileSync(v.paths.consoleLog, 'utf8')).not.toContain('reboot: Power down');
  });

  it('SIGTERM asks the guest to stop, and the guest stops', async () => {
    const v = vm();
    const p = start(v.argv, { NIXVM_SIM_BOOT_MS: '50' });
    await running(p, v.paths.restSocket);
    p.child.kill('SIGTERM');
    expect(await exitOf(p)).toEqual({ code: 0, signal: null });
    expect(p.stderr()).toMatch(
      /\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d captured terminated, calling exit handlers and exiting\.\./,
    );
    expect(fs.readFileSync(v.paths.consoleLog, 'utf8')).toContain('reboot: Power down');
  });

  it('with NIXVM_SIM_IGNORE_STOP, Stop is accepted but ignored, and SIGTERM forces it off after 5 s', async () => {
    const v = vm();
    const p = start(v.argv, {
      NIXVM_SIM_BOOT_MS: '50',
      NIXVM_SIM_SHUTDOWN_MS: '50',
      NIXVM_SIM_IGNORE_STOP: '1',
      NIXVM_SIM_CHATTER_MS: '20',
    });
    const beats = () => (fs.readFileSync(v.paths.consoleLog, 'utf8').match(/heartbeat/g) ?? []).length;
    await consoleShows(p, v.paths.consoleLog, 'a heartbeat', () => beats() > 0);
    expect((await restCall(v.paths.restSocket, 'POST', '/vm/state', '{"state":"Stop"}')).status).toBe(202);
    // A guest that shuts down stops its heartbeat at once and is gone 50 ms later; this one
    // goes on writing it (and the wait fails if the simulator exits).
    const atStop = beats();
    await consoleShows(p, v.paths.consoleLog, 'ten more heartbeats', () => beats() >= atStop + 10);
    expect(fs.readFileSync(v.paths.consoleLog, 'utf8')).not.toContain('reboot: Power down');
    expect(await simState(v.paths.restSocket)).toBe('VirtualMachineStateRunning');
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    expect(await exitOf(p)).toEqual({ code: 0, signal: null });
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(4900);
    expect(took).toBeLessThan(15_000);
    expect(p.stderr()).toContain(
      'level=warning msg="failed to wait for VM stop: timeout waiting for VM state, forcing stop"',
    );
  });

  it('crashes with NIXVM_SIM_CRASH_CODE after NIXVM_SIM_CRASH_AFTER_MS, leaving a panic on the console', async () => {
    const v = vm();
    const p = start(v.argv, { NIXVM_SIM_BOOT_MS: '50', NIXVM_SIM_CRASH_AFTER_MS: '1500', NIXVM_SIM_CRASH_CODE: '3' });
    await running(p, v.paths.restSocket);
    expect(await exitOf(p)).toEqual({ code: 3, signal: null });
    expect(fs.readFileSync(v.paths.consoleLog, 'utf8')).toMatch(/\] Kernel panic - not syncing: /);
    expect(lastLine(p.stderr())).toBe('virtualization error: hypervisor virtualization error');
  });

  it('appends a console line every NIXVM_SIM_CHATTER_MS once booted', async () => {
    const v = vm();
    const p = start(v.argv, { NIXVM_SIM_BOOT_MS: '20', NIXVM_SIM_CHATTER_MS: '30' });
    await consoleShows(p, v.paths.consoleLog, 'three heartbeats', (c) => (c.match(/heartbeat/g) ?? []).length >= 3);
    const log = fs.readFileSync(v.paths.consoleLog, 'utf8');
    expect(log.indexOf('login:')).toBeLessThan(log.indexOf('heartbeat'));
    p.child.kill('SIGKILL');
    await exitOf(p);
  });

  it('answers --version like vfkit, with NIXVM_SIM_VERSION overriding the default', async () => {
    const a = start([VFKIT_SIM, '--version']);
    expect((await exitOf(a)).code).toBe(0);
    expect(a.stdout()).toMatch(/^vfkit version: v0\.6\.\d+\n$/);
    const b = start([VFKIT_SIM, '--version'], { NIXVM_SIM_VERSION: 'v0.5.1' });
    await exitOf(b);
    expect(b.stdout()).toBe('vfkit version: v0.5.1\n');
  });

  it('serves the REST API on tcp://host:port too', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => resolve(port));
      });
    });
    const v = vm();
    const argv = v.argv.map((a) => (a.startsWith('unix://') ? `tcp://127.0.0.1:${port}` : a));
    const p = start(argv, { NIXVM_SIM_BOOT_MS: '20' });
    await running(p, `tcp:127.0.0.1:${port}`);
    expect((await restCall(`tcp:127.0.0.1:${port}`, 'POST', '/vm/state', '{"state":"HardStop"}')).status).toBe(202);
    expect((await exitOf(p)).code).toBe(0);
  });
});

describe.concurrent('leases', () => {
  it('concurrent VMs get their own entries; a restart renews its entry and keeps its address', async () => {
    const leases = path.join(root, 'shared-leases');
    const macs = ['02:00:00:00:02:01', '02:00:00:00:02:02', '02:00:00:00:02:03', '02:00:00:00:02:04'];
    const boot = async (mac: string, env: Record<string, string> = {}) => {
      const v = vm({}, mac);
      const p = start(v.argv, { NIXVM_LEASES_FILE: leases, NIXVM_SIM_BOOT_MS: '30', ...env });
      await consoleShows(p, v.paths.consoleLog, 'the login prompt', (c) => c.includes('login:'));
      p.child.kill('SIGKILL');
      await exitOf(p);
    };
    await Promise.all(macs.map((m) => boot(m)));
    const text = fs.readFileSync(leases, 'utf8');
    const blocks = text.match(/\{[^}]*\}/g)!;
    expect(blocks).toHaveLength(4);
    const ipOf = (t: string, hw: string) => new RegExp(`ip_address=(\\S+)\\n\\thw_address=1,${hw}\\n`).exec(t)?.[1];
    const ips = ['2:0:0:0:2:1', '2:0:0:0:2:2', '2:0:0:0:2:3', '2:0:0:0:2:4'].map((hw) => ipOf(text, hw));
    expect(new Set(ips).size).toBe(4);
    expect(ips.every((ip) => /^192\.168\.64\.([2-5])$/.test(ip ?? ''))).toBe(true);

    await boot(macs[1]!);
    const after = fs.readFileSync(leases, 'utf8');
    expect(after.match(/\{[^}]*\}/g)).toHaveLength(4);
    expect(ipOf(after, '2:0:0:0:2:2')).toBe(ips[1]);
    // The renewed lease comes first, as the newest.
    expect(after.startsWith(`{\n\tname=web\n\tip_address=${ips[1]}\n\thw_address=1,2:0:0:0:2:2\n`)).toBe(true);

    await boot('02:00:00:00:02:09', { NIXVM_SIM_IP: '192.168.64.77' });
    expect(ipOf(fs.readFileSync(leases, 'utf8'), '2:0:0:0:2:9')).toBe('192.168.64.77');
  });
});

describe.concurrent('the simulator refuses what vfkit refuses', () => {
  const base = () => vm().argv;
  const replaceDevice = (argv: string[], from: string, to: string) => argv.map((a) => (a.startsWith(from) ? to : a));

  it('fails at start with vfkit’s Rosetta and compressed-kernel errors', async () => {
    const v = vm({ rosetta: true });
    const r = await refused(v.argv, { NIXVM_SIM_FAIL: 'rosetta' });
    expect(r).toMatchObject({ code: 1, last: 'rosetta is not installed' });
    expect(r.stderr).toContain('Error: rosetta is not installed\nUsage:\n  vfkit [flags]\n');
    // vfkit writes its pidfile before it gets that far.
    expect(fs.existsSync(v.paths.pidfile)).toBe(true);
    // Without a rosetta device there is nothing to fail.
    const w = vm();
    const ok = start(w.argv, { NIXVM_SIM_FAIL: 'rosetta', NIXVM_SIM_BOOT_MS: '20' });
    await running(ok, w.paths.restSocket);
    ok.child.kill('SIGKILL');

    expect(await refused(base(), { NIXVM_SIM_FAIL: 'compressed-kernel' })).toMatchObject({
      code: 1,
      last: `kernel must be uncompressed, ${closure}/kernel is a compressed file`,
    });
  });

  it('unknown device types and options, and values split on commas', async () => {
    const [a, b, c, d] = await Promise.all([
      refused([...base(), '--device', 'virtio-sound']),
      refused(replaceDevice(base(), 'virtio-rng', 'virtio-rng,foo=bar')),
      refused([...base(), '--device', `virtio-fs,sharedDir=${root}/a,b,mountTag=x`]),
      refused([...base(), '--device', 'virtio-input']),
    ]);
    expect(a).toMatchObject({ code: 1, last: 'unknown device type: virtio-sound' });
    expect(b).toMatchObject({ code: 1, last: 'unknown options for virtio-rng devices: [{foo bar}]' });
    expect(c).toMatchObject({ code: 1, last: 'unknown option for virtio-fs devices: b' });
    // vfkit prints the empty input type it found, trailing space and all.
    expect(d.code).toBe(1);
    expect(d.stderr.endsWith('\nunknown option for virtio-input devices: \n')).toBe(true);
  });

  it('rosetta options vfkit does not know (its docs’ "ignoreIfMissing" included)', async () => {
    const [a, b] = await Promise.all([
      refused([...base(), '--device', 'rosetta,mountTag=rosetta,ignoreIfMissing']),
      refused([...base(), '--device', 'rosetta,mountTag=rosetta,readonly']),
    ]);
    expect(a).toMatchObject({ code: 1, last: 'unknown option for rosetta share: ignoreIfMissing' });
    expect(b).toMatchObject({ code: 1, last: 'unknown option for rosetta share: readonly' });
  });

  it('unknown flags, bad values and exclusive flags together', async () => {
    const k = `${closure}/kernel`;
    const i = `${closure}/initrd`;
    const [a, b, c, d, e] = await Promise.all([
      refused([...base(), '--bogus']),
      refused([...base(), '--cpus', 'two']),
      refused([
        VFKIT_SIM,
        '--kernel',
        k,
        '--initrd',
        i,
        '--kernel-cmdline',
        'console=hvc0',
        '--bootloader',
        `linux,kernel=${k},initrd=${i}`,
      ]),
      refused([VFKIT_SIM, '--kernel', k]),
      refused([VFKIT_SIM, '--bootloader', `linux,kernel=${k},cmdline="console=hvc0`]),
    ]);
    expect(a).toMatchObject({ code: 1, last: 'unknown flag: --bogus' });
    expect(b).toMatchObject({
      code: 1,
      last: 'invalid argument "two" for "-c, --cpus" flag: strconv.ParseUint: parsing "two": invalid syntax',
    });
    expect(c).toMatchObject({
      code: 1,
      last: 'if any flags in the group [initrd bootloader] are set none of the others can be; [bootloader initrd] were all set',
    });
    expect(d).toMatchObject({
      code: 1,
      last: 'if any flags in the group [kernel initrd kernel-cmdline] are set they must all be set; missing [initrd kernel-cmdline]',
    });
    expect(e).toMatchObject({
      code: 1,
      last: `invalid argument "linux,kernel=${k},cmdline=\\"console=hvc0" for "-b, --bootloader" flag: mismatched "`,
    });
  });

  it('accepts the legacy --kernel/--initrd/--kernel-cmdline trio', async () => {
    const v = vm();
    const rest = v.argv.slice(1).filter((_, j, all) => all[j] !== '--bootloader' && all[j - 1] !== '--bootloader');
    const p = start(
      [
        VFKIT_SIM,
        '--kernel',
        `${closure}/kernel`,
        '--initrd',
        `${closure}/initrd`,
        '--kernel-cmdline',
        'console=hvc0',
        ...rest,
      ],
      { NIXVM_SIM_BOOT_MS: '20' },
    );
    await running(p, v.paths.restSocket);
    const insp = JSON.parse((await restCall(v.paths.restSocket, 'GET', '/vm/inspect')).body);
    expect(insp.bootloader).toEqual({
      kind: 'linuxBootloader',
      vmlinuzPath: `${closure}/kernel`,
      kernelCmdLine: 'console=hvc0',
      initrdPath: `${closure}/initrd`,
    });
    p.child.kill('SIGKILL');
  });

  it('missing kernel or initrd, and relative paths where vfkit needs absolute ones', async () => {
    const missing = makeClosure(path.join(root, 'broken'), 'web');
    fs.rmSync(path.join(missing, 'initrd'));
    const withKernel = (kernel: string, initrd = `${closure}/initrd`) =>
      base().map((a) =>
        a.startsWith('linux,') ? `linux,kernel=${kernel},initrd=${initrd},cmdline="console=hvc0"` : a,
      );
    const [a, b, c, d, e] = await Promise.all([
      refused(withKernel(`${root}/nope/kernel`)),
      refused(withKernel(`${missing}/kernel`, `${missing}/initrd`)),
      // vfkit opens a relative kernel path from its working directory, which a detached vfkit does not choose.
      refused(withKernel('kernel'), {}, '/'),
      refused(base().map((a) => (a.startsWith('unix://') ? 'unix://rest.sock' : a))),
      refused(base().map((a) => (a.startsWith('unix://') ? 'unix:rest.sock' : a))),
    ]);
    expect(a).toMatchObject({ code: 1, last: `open ${root}/nope/kernel: no such file or directory` });
    expect(b).toMatchObject({
      code: 1,
      last: `invalid initial RAM disk path: stat ${missing}/initrd: no such file or directory`,
    });
    expect(c).toMatchObject({ code: 1, last: 'open kernel: no such file or directory' });
    expect(d).toMatchObject({ code: 1, last: 'invalid unix uri: missing path' });
    expect(e).toMatchObject({ code: 1, last: 'invalid unix uri: missing path' });
  });

  it('a socket path over 103 bytes, an over-long or duplicate mount tag, a bad MAC', async () => {
    const longSock = `/tmp/${'s'.repeat(100)}.sock`;
    const [a, b, c, d] = await Promise.all([
      refused(base().map((x) => (x.startsWith('unix://') ? `unix://${longSock}` : x))),
      refused([...base(), '--device', `virtio-fs,sharedDir=${root},mountTag=${'t'.repeat(37)}`]),
      refused([
        ...base(),
        '--device',
        `virtio-fs,sharedDir=${root},mountTag=dup`,
        '--device',
        `virtio-fs,sharedDir=${root},mountTag=dup`,
      ]),
      refused(base().map((x) => (x.startsWith('virtio-net') ? 'virtio-net,nat,mac=52:54:0:1:2:3' : x))),
    ]);
    // vfkit hands any uint to Virtualization.framework, which refuses more CPUs than it allows.
    const e = await refused(base().map((x, i, all) => (all[i - 1] === '--cpus' ? '1000000000' : x)));
    expect(e.code).toBe(1);
    expect(e.stderr).toContain('The number of CPUs (1000000000) exceeds the maximum allowed (64).');
    expect(a).toMatchObject({ code: 1, last: 'invalid unix uri: socket path length exceeds macOS limits' });
    expect(b.code).toBe(1);
    expect(b.stderr).toContain(
      `Error: Error Domain=VZErrorDomain Code=2 Description="Invalid virtual machine configuration. The Virtio file system device “tag” cannot exceed 36 bytes when encoded in UTF-8. The tag “${'t'.repeat(37)}” is invalid" UserInfo={`,
    );
    expect(c.code).toBe(1);
    expect(c.stderr).toContain('tag “dup” is used by more than one device');
    expect(d).toMatchObject({ code: 1, last: 'address 52:54:0:1:2:3: invalid MAC address' });
  });

  it('a serial console on stdio without a terminal, as the flake’s own run script would use it', async () => {
    expect(await refused(replaceDevice(base(), 'virtio-serial', 'virtio-serial,stdio'))).toMatchObject({
      code: 1,
      last: 'inappropriate ioctl for device',
    });
  });

  it('a stale socket file in the way of the REST server', async () => {
    const v = vm();
    fs.writeFileSync(v.paths.restSocket, '');
    const r = await refused(v.argv);
    expect(r.code).toBe(1);
    expect(lastLine(r.stderr)).toMatch(
      new RegExp(
        `level=fatal msg="listen unix ${v.paths.restSocket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: bind: address already in use"$`,
      ),
    );
  });

  it('writes its pidfile before parsing devices, so a bad device still leaves one', async () => {
    const v = vm();
    expect((await refused([...v.argv, '--device', 'virtio-sound'])).code).toBe(1);
    expect(fs.readFileSync(v.paths.pidfile, 'utf8')).toMatch(/^\d+$/);
  });
});

describe.concurrent('the guest’s disks and mounts (what its closure says it mounts)', () => {
  /** A closure whose etc/fstab mounts the store image by label, the writable store, and shares `tags`. */
  function nixosClosure(name: string, tags: string[], repartDevice: string | null): string {
    const dir = makeClosure(path.join(root, `c-${name}`), name);
    fs.mkdirSync(path.join(dir, 'etc', 'repart.d'), { recursive: true });
    const lines = [
      'none / tmpfs defaults 0 0',
      '/dev/disk/by-label/nix-store /nix/.ro-store erofs ro 0 0',
      ...(repartDevice ? ['/dev/disk/by-label/nix-store-write /nix/.rw-store ext4 defaults 0 0'] : []),
      ...tags.map((t) => `${t} /mnt/${t} virtiofs defaults 0 0`),
    ];
    fs.writeFileSync(path.join(dir, 'etc', 'fstab'), `${lines.join('\n')}\n`);
    if (repartDevice) {
      fs.writeFileSync(path.join(dir, 'etc', 'repart.d', 'device'), `${repartDevice}\n`);
      fs.writeFileSync(
        path.join(dir, 'etc', 'repart.d', '10-nix-store-writable.conf'),
        '[Partition]\nFormat=ext4\nLabel=nix-store-write\nType=linux-generic\n',
      );
    }
    return dir;
  }

  /** A file with an erofs superblock labelled `label` (all the guest reads of it). */
  function erofsStub(label: string): string {
    const f = path.join(root, `store-${++seq}.img`);
    const b = Buffer.alloc(8192);
    b.writeUInt32LE(0xe0f5e1e2, 1024);
    b.write(label, 1024 + 64, 'utf8');
    fs.writeFileSync(f, b);
    return f;
  }

  function diskVm(tagsGiven: string[], tagsMounted: string[], writable: string) {
    const n = ++seq;
    const s = spec({
      name: `disk${n}`,
      storeImage: true,
      writableStore: { sizeMiB: 64, device: '/dev/nvme1n1' },
      shares: tagsGiven.map((t) => {
        const d = path.join(root, `share-${n}-${t}`);
        fs.mkdirSync(d, { recursive: true });
        return { tag: t, source: d, target: `/mnt/${t}` };
      }),
    });
    const c = nixosClosure(`disk${n}`, tagsMounted, '/dev/nvme1n1');
    const paths = runtimePaths(path.join(root, `s${n}`), path.join(root, `l${n}`), s.name);
    prepareRuntimeDirs(paths);
    const disks = planDisks(s, { storeImage: erofsStub('nix-store'), writable });
    const argv = vfkitArgv({ vfkit: VFKIT_SIM, spec: s, closure: c, mac: '02:04:00:0a:00:09', paths, disks });
    consoleOf.set(argv, paths);
    return { paths, argv };
  }

  it('names its disks by position, shows each disk and tag, formats the writable disk once and keeps it', async () => {
    const writable = path.join(root, `writable-${++seq}.img`);
    fs.writeFileSync(writable, '');
    fs.truncateSync(writable, 64 << 20);
    const v = diskVm(['a', 'b'], ['a', 'b'], writable);
    expect(v.argv.filter((a) => a.startsWith('nvme,'))).toEqual([
      expect.stringMatching(/^nvme,path=.*store-\d+\.img,readonly$/),
      `nvme,path=${writable}`,
    ]);
    const p = start(v.argv);
    await running(p, v.paths.restSocket);
    const mounted = 'mounting /dev/nvme1n1 (nix-store-write, ext4)';
    await consoleShows(p, v.paths.consoleLog, 'the writable store mounted', (t) => t.includes(mounted));
    const text = fs.readFileSync(v.paths.consoleLog, 'utf8');
    expect(text).toMatch(/nvme nvme0: \[nvme0n1\] 16 512-byte logical blocks .*\(ro\) LABEL=nix-store/);
    expect(text).toMatch(/nvme nvme1: \[nvme1n1\] 131072 512-byte logical blocks/);
    for (const t of ['a', 'b']) {
      expect(text).toContain(`virtiofs: found tag <${t}>`);
      expect(text).toContain(`mounting ${t} on /mnt/${t}...`);
    }
    expect(text).toContain(
      'systemd-repart: adding new partition 10-nix-store-writable (nix-store-write) to /dev/nvme1n1',
    );
    expect(text).toContain('mounting /dev/nvme0n1 (nix-store, erofs) on /nix/.ro-store...');
    expect(text).toContain('mounting /dev/nvme1n1 (nix-store-write, ext4) on /nix/.rw-store...');
    expect((await restCall(v.paths.restSocket, 'POST', '/vm/state', '{"state":"HardStop"}')).status).toBe(202);
    await exitOf(p);

    // The same writable disk again: repart finds its partition and leaves it be.
    const again = diskVm(['a', 'b'], ['a', 'b'], writable);
    const p2 = start(again.argv);
    await running(p2, again.paths.restSocket);
    await consoleShows(p2, again.paths.consoleLog, 'the writable store mounted', (t) => t.includes(mounted));
    const text2 = fs.readFileSync(again.paths.consoleLog, 'utf8');
    expect(text2).toContain('systemd-repart: /dev/nvme1n1 already has partition 10-nix-store-writable');
    expect(text2).not.toContain('adding new partition');
  });

  it('a tag the guest mounts that vfkit was not given: emergency mode, never running', async () => {
    const writable = path.join(root, `writable-${++seq}.img`);
    fs.writeFileSync(writable, Buffer.alloc(1 << 20));
    const v = diskVm(['a'], ['a', 'xchg'], writable);
    // The crash switch is the clock: it fires well after a normal boot would have been running.
    const p = start(v.argv, { NIXVM_SIM_BOOT_MS: '100', NIXVM_SIM_CRASH_AFTER_MS: '600' });
    await consoleShows(p, v.paths.consoleLog, 'emergency mode', (t) => t.includes('You are in emergency mode.'));
    expect(await simState(v.paths.restSocket)).toBe('VirtualMachineStateStarting');
    await exitOf(p);
    const text = fs.readFileSync(v.paths.consoleLog, 'utf8');
    expect(text).toContain('virtiofs: tag <xchg> not found');
    expect(text).toContain('[FAILED] Failed to mount /mnt/xchg.');
    expect(text).toContain('[DEPEND] Dependency failed for Local File Systems.');
    expect(text).not.toContain('Welcome to NixOS');
    expect(text).not.toContain('login:');
    expect(p.stderr()).not.toContain('virtual machine is running');
  });

  it('a store image without its label, or the writable disk on the wrong position: the guest waits for its device', async () => {
    const n = ++seq;
    const s = spec({ name: `nolabel${n}`, storeImage: true });
    const c = nixosClosure(`nolabel${n}`, [], null);
    const paths = runtimePaths(path.join(root, `s${n}`), path.join(root, `l${n}`), s.name);
    prepareRuntimeDirs(paths);
    const disks = planDisks(s, { storeImage: erofsStub(''), writable: '/unused' });
    const argv = vfkitArgv({ vfkit: VFKIT_SIM, spec: s, closure: c, mac: '02:04:00:0a:00:0a', paths, disks });
    consoleOf.set(argv, paths);
    const p = start(argv, { NIXVM_SIM_BOOT_MS: '100' });
    await consoleShows(p, paths.consoleLog, 'emergency mode', (t) => t.includes('You are in emergency mode.'));
    expect(fs.readFileSync(paths.consoleLog, 'utf8')).toContain(
      '[ TIME ] Timed out waiting for device /dev/disk/by-label/nix-store.',
    );
  });
});
