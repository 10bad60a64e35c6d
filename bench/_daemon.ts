/**
 * A `nixvm daemon` for benchmarks: a fixture flake copied to a temp root, the vfkit simulator,
 * a private state dir; resolves once it listens. (Files starting with `_` are not benches.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectControl, type ControlClient } from '../src/control/client.ts';
import { controlSocketPath } from '../src/host/socket-path.ts';
import { copyFixtureFiles } from '../test/helpers/fixtures.ts';

export const REPO = fileURLToPath(new URL('../', import.meta.url));
export const BIN = path.join(REPO, 'bin/nixvm.js');
const SIM = path.join(REPO, 'test/vfkit-sim/vfkit');

process.env.NIX_CONFIG ??= 'experimental-features = nix-command flakes\nbuild-users-group =\nsubstituters =';

export interface BenchDaemon {
  root: string;
  env: NodeJS.ProcessEnv;
  daemon: ChildProcess;
  connect(): Promise<ControlClient>;
  /** Stop every running VM, the daemon, and remove the temp root. */
  dispose(): Promise<void>;
}

export interface DaemonOptions {
  /** More environment for the daemon and its simulators (fault switches). */
  env?: NodeJS.ProcessEnv;
  /** Change the copied flake before the daemon reads it. */
  edit?(flakeDir: string): void;
}

export async function startDaemon(fixture: string, opts: DaemonOptions = {}): Promise<BenchDaemon> {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `nixvm-bench-${fixture}-`)));
  const flake = path.join(root, 'flake');
  copyFixtureFiles(fixture, flake);
  opts.edit?.(flake);
  const env = {
    ...process.env,
    ...opts.env,
    NIXVM_STATE_DIR: path.join(root, 'nixvm'),
    NIXVM_VFKIT: SIM,
    NIXVM_LEASES_FILE: path.join(root, 'leases'),
    NIXVM_SIM_BOOT_MS: '100',
    NIXVM_NO_LOGIN_SHELL: '1',
  };
  const daemon = spawn(process.execPath, [BIN, 'daemon', '--flake', flake], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    daemon.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) resolve();
    });
    daemon.once('exit', (code) => reject(new Error(`nixvm daemon exited with ${code}: ${out}`)));
  });
  const socket = controlSocketPath(path.join(root, 'nixvm', 'state'));
  const connect = () => connectControl(socket);
  return {
    root,
    env,
    daemon,
    connect,
    async dispose() {
      const c = await connect();
      const s = await c.call('snapshot', {});
      await Promise.allSettled(
        s.vms.filter((v) => v.state !== 'stopped' && v.state !== 'crashed').map((v) => c.call('stop', { vm: v.name })),
      );
      await c.close();
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
