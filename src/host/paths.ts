/**
 * Where nixvm keeps things. macOS locations by default; NIXVM_STATE_DIR puts everything
 * (state, settings, logs, sockets) under one root, which is what tests and dev runs use.
 */
import os from 'node:os';
import path from 'node:path';

export const BUNDLE_ID = 'dev.nixvm.agent';

export interface Paths {
  /** Per-VM state, the lock, the control socket. */
  stateDir: string;
  /** settings.json (conf). */
  configDir: string;
  /** Agent log, build logs, console logs. */
  logsDir: string;
  /** ~/Library/LaunchAgents or the override. */
  launchAgentsDir: string;
  /** The DHCP leases file vmnet's bootpd writes. */
  leasesFile: string;
}

export function resolvePaths(env: NodeJS.ProcessEnv = process.env): Paths {
  const home = os.homedir();
  const root = env.NIXVM_STATE_DIR;
  return {
    stateDir: root ? path.join(root, 'state') : path.join(home, 'Library', 'Application Support', 'NixVM'),
    configDir: root ? root : path.join(home, 'Library', 'Application Support', 'NixVM'),
    logsDir: root ? path.join(root, 'logs') : path.join(home, 'Library', 'Logs', 'NixVM'),
    launchAgentsDir: env.NIXVM_LAUNCH_AGENTS_DIR ?? path.join(home, 'Library', 'LaunchAgents'),
    leasesFile: env.NIXVM_LEASES_FILE ?? '/var/db/dhcpd_leases',
  };
}

/**
 * The state root of the dev agent `npm start` runs where NixVM.app cannot (not a Mac):
 * `<tmpdir>/nixvm-dev-<uid>`, private to this user. The CLI looks there when no agent answers on
 * the default socket, so the README's `npx nixvm ls` finds the agent `npm start` just started.
 */
export function devStateDir(uid: number = typeof process.getuid === 'function' ? process.getuid() : 0): string {
  return path.join(os.tmpdir(), `nixvm-dev-${uid}`);
}
