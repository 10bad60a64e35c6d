/**
 * The README's set-up, run as a new user runs it off a Mac: `npm start` in one terminal, then in
 * another, with no environment of nixvm's own, `npx nixvm ls`, `npx nixvm start minimal-vm`,
 * `npx nixvm ssh-command minimal-vm`. The only difference from a user's shell: HOME and TMPDIR
 * point into a sandbox, so no agent of the machine's user (or of another test run) is found.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_DIR } from '../helpers/fixtures.ts';
import { killVfkitsUnder } from '../helpers/reap.ts';
import { settles, waitFor, watchChild, type Watched } from '../helpers/wait.ts';

const sandbox = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-readme-')));
/** A user's environment: nothing of nixvm's, the system's PATH (npm puts the project's Node first itself). */
const env: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^NIXVM_(STATE_DIR|VFKIT|LEASES_FILE|NIX|LAUNCH_AGENTS_DIR)$/.test(k)),
);
env.HOME = path.join(sandbox, 'home');
env.TMPDIR = path.join(sandbox, 'tmp');
env.PATH = (process.env.PATH ?? '')
  .split(':')
  .filter((d) => !d.startsWith(path.join(REPO_DIR, 'node_modules')))
  .join(':');
// The simulated guest boots in 0.2 s instead of its default (a simulator knob, not nixvm's).
env.NIXVM_SIM_BOOT_MS = '200';

let start: ChildProcess;
let startW: Watched;

/** A command exactly as the README prints it, from the checkout, in "another terminal". */
function npx(...args: string[]) {
  return execa('npx', args, { cwd: REPO_DIR, env, extendEnv: false, reject: false, timeout: 120_000 });
}

beforeAll(async () => {
  fs.mkdirSync(env.HOME!, { recursive: true });
  fs.mkdirSync(env.TMPDIR!, { recursive: true });
  // Its own process group, so the whole `npm start` tree can be stopped by its id.
  start = spawn('npm', ['start'], { cwd: REPO_DIR, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  startW = watchChild(start, '`npm start`', { stdout: true });
  await waitFor(() => startW.output().includes('listening on'), {
    what: '`npm start` to say its agent listens',
    process: startW,
  });
});

afterAll(async () => {
  await npx('nixvm', 'stop', 'minimal-vm');
  if (start.pid !== undefined && start.exitCode === null) {
    process.kill(-start.pid, 'SIGINT');
    await settles(startW.exited, { what: '`npm start` to stop on Ctrl-C' }).catch(() =>
      process.kill(-start.pid!, 'SIGKILL'),
    );
  }
  killVfkitsUnder(path.join(env.TMPDIR!, `nixvm-dev-${process.getuid?.() ?? 0}`, 'state', 'vms'));
  fs.rmSync(sandbox, { recursive: true, force: true });
});

describe("the README's commands", () => {
  it('`npm start` says how to talk to it with the plain command', () => {
    expect(startW.output()).toContain('Talk to it from another terminal: npx nixvm ls');
  });

  it('`npx nixvm ls` finds the agent `npm start` started', async () => {
    const r = await npx('nixvm', 'ls');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^minimal-vm\s+stopped\s+never built\s+\d+\/\d+ GiB\s+-$/m);
    expect(r.stdout).toMatch(/^builder-vm\s+stopped/m);
  });

  it('`npx nixvm start minimal-vm` builds and starts it', async () => {
    const r = await npx('nixvm', 'start', 'minimal-vm');
    expect(r.exitCode, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/^minimal-vm: started \(running/m);
  });

  it('`npx nixvm ssh-command minimal-vm` prints the ssh command', async () => {
    const r = await npx('nixvm', 'ssh-command', 'minimal-vm');
    expect(r.exitCode, r.stderr).toBe(0);
    // Over vsock once the guest's sshd answers there (ProxyCommand, the VM's alias), else an address.
    expect(r.stdout).toMatch(/^ssh .* -l alice (nixvm-minimal-vm|192\.168\.64\.\d+|fe80::\S+)$/m);
  });
});
