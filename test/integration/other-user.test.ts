/**
 * What another local user must not be able to do to your nixvm (issue 16, High): answer your CLI
 * from a socket in a directory they made (and so run commands as you through `nixvm ssh`), or
 * keep your agent from starting by planting `/tmp/nixvm-<uid>` before it. A second local user
 * (useradd + setpriv) plays the attacker; the planted `/tmp/nixvm-<uid>` lives in a private mount
 * namespace (unshare), so other suites on this machine never see it. Needs root: skipped, with
 * the reason printed, otherwise.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { SIMULATOR } from '../helpers/agent.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { killVfkitsUnder } from '../helpers/reap.ts';
import { rootReason, testUser, type TestUser } from '../helpers/users.ts';
import { settles, waitFor, watchChild, type Watched } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));
const EVIL = fileURLToPath(new URL('../helpers/evil-agent.ts', import.meta.url));
const reason = rootReason('acting as another local user');
if (reason) console.log(`other-user.test.ts: ${reason}`);

let other: TestUser;
let work: string;
const children: ChildProcess[] = [];

beforeAll(() => {
  if (reason) return;
  other = testUser();
});

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      await settles(watchChild(c, 'a helper').exited, { what: 'a helper to stop' });
    }
  }
  if (work) {
    killVfkitsUnder(path.join(work, longPart(), 'state', 'vms'));
    fs.rmSync(work, { recursive: true, force: true });
  }
});

/** A state root long enough that its sockets cannot stay in it (macOS: 103 bytes). */
function longPart(): string {
  return 'a-very-long-user-name-for-this-test'.repeat(2);
}

function fresh(): string {
  work = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-other-')));
  return work;
}

/** A directory the other user makes, world-writable: theirs, and anyone's to put things in. */
async function theirDir(p: string): Promise<void> {
  // A parent the other user may create in, like /tmp.
  fs.chmodSync(path.dirname(p), 0o1777);
  const r = await execa(other.as(['mkdir', '-m', '0777', p])[0]!, other.as(['mkdir', '-m', '0777', p]).slice(1), {
    reject: false,
  });
  expect(r.exitCode, r.stderr).toBe(0);
  fs.chmodSync(p, 0o777);
}

/** The other user serves the fake agent on `socket`. */
async function evilAgent(socket: string, pwned: string): Promise<void> {
  const argv = other.as([process.execPath, EVIL, socket, pwned]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const w = watchChild(child, 'the other user’s fake agent', { stdout: true });
  await waitFor(() => w.output().includes('listening'), { what: 'the fake agent to listen', process: w });
}

/**
 * Run `argv` (a nixvm command line) in a private mount namespace whose `/tmp/nixvm-<uid>` is
 * `planted` (the other user's directory), as it would be had they made it before us.
 */
function inPlantedNamespace(planted: string, argv: string[]): string[] {
  const short = `/tmp/nixvm-${process.getuid!()}`;
  const script = 'mkdir -p -m 0700 "$1" && mount --bind "$2" "$1" && shift 2 && exec "$@"';
  return ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', short, planted, ...argv];
}

describe.skipIf(reason !== null)('another local user', () => {
  it('cannot answer your CLI from a directory they made: `nixvm ssh` refuses to talk to it, nothing runs', async () => {
    const root = fresh();
    const dir = path.join(root, 'shared');
    await theirDir(dir);
    const socket = path.join(dir, 'control.sock');
    const pwned = path.join(root, 'pwned');
    await evilAgent(socket, pwned);
    const r = await execa(process.execPath, [BIN, '--socket', socket, 'ssh', 'vm'], {
      reject: false,
      timeout: 30_000,
      env: { ...process.env, NIXVM_STATE_DIR: path.join(root, 'mine') },
    });
    expect(fs.existsSync(pwned), `the other user's command ran as us: ${r.stderr}`).toBe(false);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`will not talk to the socket ${socket}: ${dir} belongs to another user \\(uid ${other.uid}`),
    );
  });

  it('cannot take the short /tmp/nixvm-<uid> your CLI falls back to under a long state dir', async () => {
    const root = fresh();
    const state = path.join(root, longPart());
    const planted = path.join(root, 'planted');
    await theirDir(planted);
    // Where a CLI looks for the control socket of this state dir: a name anyone can compute.
    const hash = crypto
      .createHash('sha256')
      .update(path.join(state, 'state', 'control.sock'))
      .digest('hex');
    const pwned = path.join(root, 'pwned');
    await evilAgent(path.join(planted, `${hash.slice(0, 12)}-control.sock`), pwned);
    const argv = inPlantedNamespace(planted, [process.execPath, BIN, 'ssh', 'vm']);
    const r = await execa(argv[0]!, argv.slice(1), {
      reject: false,
      timeout: 30_000,
      env: { ...process.env, NIXVM_STATE_DIR: state, TMPDIR: '/tmp' },
    });
    expect(fs.existsSync(pwned), `the other user's command ran as us: ${r.stderr}`).toBe(false);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/belongs to another user/);
  });
});

describe.skipIf(reason !== null)('a /tmp/nixvm-<uid> planted before the agent starts', () => {
  let flake: FlakeCopy;
  beforeAll(async () => {
    flake = await copyFixture('seed');
  });
  afterAll(() => flake?.remove());

  async function daemon(
    env: NodeJS.ProcessEnv,
    planted: string,
    extra: string[] = [],
  ): Promise<{ child: ChildProcess; w: Watched }> {
    const argv = inPlantedNamespace(planted, [process.execPath, BIN, ...extra, 'daemon', '--flake', flake.dir]);
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const w = watchChild(child, 'the daemon', { stdout: true });
    await waitFor(() => w.output().includes('listening on'), { what: 'the daemon to listen', process: w });
    return { child, w };
  }

  function envFor(state: string, tmpdir: string): NodeJS.ProcessEnv {
    fs.writeFileSync(path.join(state, 'settings.json'), JSON.stringify({ vfkitPath: SIMULATOR }));
    return {
      ...process.env,
      NIXVM_STATE_DIR: state,
      NIXVM_LEASES_FILE: path.join(state, 'leases'),
      TMPDIR: tmpdir,
      NIXVM_SIM_BOOT_MS: '200',
    };
  }

  it('keeps the agent up: its sockets go to a private place of its own, and it says why', async () => {
    const root = fresh();
    const state = path.join(root, longPart());
    fs.mkdirSync(state, { recursive: true });
    const planted = path.join(root, 'planted');
    await theirDir(planted);
    // macOS's $TMPDIR is per user; here a private one stands in for it.
    const tmpdir = path.join(root, 'T');
    fs.mkdirSync(tmpdir, { mode: 0o700 });
    const env = envFor(state, tmpdir);
    const { w } = await daemon(env, planted);
    expect(w.output()).toContain(`listening on ${path.join(tmpdir, `nixvm-${process.getuid!()}`)}`);
    // The daemon says why as a problem line of its own, which may come after the banner.
    const why = new RegExp(
      `/tmp/nixvm-${process.getuid!()} belongs to another user \\(uid ${other.uid}.*, so nixvm put`,
    );
    await waitFor(() => why.test(w.output()), { what: 'the daemon to say why its socket moved', process: w });
    // The CLI (outside the namespace, where /tmp/nixvm-<uid> is the real one) finds it there.
    const nixvm = (...args: string[]) =>
      execa(process.execPath, [BIN, ...args], { env, reject: false, timeout: 60_000 });
    const started = await nixvm('start', 'minimal-vm');
    expect(started.exitCode, `${started.stdout}${started.stderr}${w.output()}`).toBe(0);
    const ls = (JSON.parse((await nixvm('ls', '--json')).stdout) as { vms: Array<{ name: string; state: string }> })
      .vms;
    expect(ls.find((v) => v.name === 'minimal-vm')?.state).toBe('running');
    // Nothing of ours went into the planted directory.
    expect(fs.readdirSync(planted)).toEqual([]);
    expect((await nixvm('stop', 'minimal-vm')).exitCode).toBe(0);
  });

  it('with nowhere else to go, keeps the agent up and marks each VM with one sentence', async () => {
    const root = fresh();
    const state = path.join(root, longPart());
    fs.mkdirSync(state, { recursive: true });
    const planted = path.join(root, 'planted');
    await theirDir(planted);
    const env = envFor(state, '/tmp');
    const socket = path.join(root, 'c.sock');
    const { w } = await daemon(env, planted, ['--socket', socket]);
    const nixvm = (...args: string[]) =>
      execa(process.execPath, [BIN, '--socket', socket, ...args], { env, reject: false, timeout: 60_000 });
    const snap = (
      JSON.parse((await nixvm('ls', '--json')).stdout) as { vms: Array<{ name: string; error: string | null }> }
    ).vms;
    const vm = snap.find((v) => v.name === 'minimal-vm');
    expect(vm?.error).toMatch(
      new RegExp(
        `^VM "minimal-vm" cannot start: nixvm found no private place for rest.sock \\(/tmp/nixvm-${process.getuid!()} belongs to another user`,
      ),
    );
    const start = await nixvm('start', 'minimal-vm');
    expect(start.exitCode).toBe(1);
    expect(start.stderr).toContain('cannot start: nixvm found no private place for rest.sock');
    // Still serving.
    expect((await nixvm('ls')).exitCode, w.output()).toBe(0);
  });
});
