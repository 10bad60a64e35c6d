/**
 * `npm start`. On a Mac: build, then launch NixVM.app's code with Electron. Elsewhere the menubar
 * app cannot run (no macOS, no Electron binary), so it says so and runs what can: the headless
 * agent against examples/flake with the vfkit simulator, in a private dev state dir.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { REPO, buildApp } from './build.ts';

function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [cmd, ...args] = argv;
  const child = spawn(cmd!, args, { stdio: 'inherit', env, cwd: REPO });
  // Ctrl-C reaches the child through the terminal's process group; just wait for it.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

export function devDaemonCommand(env: NodeJS.ProcessEnv = process.env): { argv: string[]; env: NodeJS.ProcessEnv } {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const stateDir = env.NIXVM_STATE_DIR ?? path.join(os.tmpdir(), `nixvm-dev-${uid}`);
  return {
    argv: [
      process.execPath,
      path.join(REPO, 'bin', 'nixvm.js'),
      'daemon',
      '--flake',
      path.join(REPO, 'examples', 'flake'),
    ],
    env: {
      ...env,
      NIXVM_VFKIT: path.join(REPO, 'test', 'vfkit-sim', 'vfkit'),
      NIXVM_STATE_DIR: stateDir,
      // The simulator records DHCP leases like macOS's bootpd, here instead of /var/db.
      NIXVM_LEASES_FILE: env.NIXVM_LEASES_FILE ?? path.join(stateDir, 'dhcpd_leases'),
    },
  };
}

if (import.meta.main) {
  if (process.platform === 'darwin') {
    await buildApp();
    const electron = path.join(REPO, 'node_modules', '.bin', 'electron');
    process.exitCode = await run([electron, REPO]);
  } else {
    const dev = devDaemonCommand();
    console.log(
      `NixVM.app is a macOS menubar app and needs a Mac to run; on ${process.platform} this starts the headless ` +
        `agent instead, against examples/flake with the vfkit simulator (state in ${dev.env.NIXVM_STATE_DIR}).\n` +
        `Talk to it from another terminal: NIXVM_STATE_DIR=${dev.env.NIXVM_STATE_DIR} npx nixvm ls ` +
        '(then start minimal-vm, ip minimal-vm, ssh-command minimal-vm, logs -f minimal-vm). Ctrl-C stops it.\n',
    );
    process.exitCode = await run(dev.argv, dev.env);
  }
}
