/**
 * `npm start`. On a Mac: build, then launch NixVM.app's code with Electron. Elsewhere the menubar
 * app cannot run (no macOS, no Electron binary), so it says so and runs what can: the headless
 * agent against examples/flake with the vfkit simulator, in a private dev state dir.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { devStateDir } from '../src/host/paths.ts';
import { ensurePrivateDir } from '../src/host/socket-path.ts';
import { REPO, buildApp } from './build.ts';

function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [cmd, ...args] = argv;
  const child = spawn(cmd!, args, { stdio: 'inherit', env, cwd: REPO });
  // Ctrl-C reaches the child through the terminal's process group; just wait for it.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

/**
 * The dev agent: state in `devStateDir()` (`<tmpdir>/nixvm-dev-<uid>`, private), where `nixvm`
 * looks when nothing answers on the default socket, so `npx nixvm ls` finds it with no setup.
 */
export function devDaemonCommand(env: NodeJS.ProcessEnv = process.env): { argv: string[]; env: NodeJS.ProcessEnv } {
  const stateDir = env.NIXVM_STATE_DIR ?? devStateDir();
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
    const stateDir = dev.env.NIXVM_STATE_DIR!;
    // Another user's (or a planted) directory in /tmp must not become our state: refuse it.
    if (!process.env.NIXVM_STATE_DIR) ensurePrivateDir(stateDir);
    const talk = process.env.NIXVM_STATE_DIR ? `NIXVM_STATE_DIR=${stateDir} npx nixvm` : 'npx nixvm';
    console.log(
      `NixVM.app is a macOS menubar app and needs a Mac to run; on ${process.platform} this starts the headless ` +
        `agent instead, against examples/flake with the vfkit simulator (state in ${stateDir}).\n` +
        `Talk to it from another terminal: ${talk} ls ` +
        '(then start minimal-vm, ip minimal-vm, ssh-command minimal-vm, logs -f minimal-vm). Ctrl-C stops it.\n',
    );
    process.exitCode = await run(dev.argv, dev.env);
  }
}
