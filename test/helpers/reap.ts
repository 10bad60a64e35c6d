/**
 * Cleaning up simulated VMs after a test without killing a stranger. A pidfile outlives its
 * vfkit, and pids are reused (Linux hands them out again after 32768 by default, and the suite
 * and everyone else on the machine spawn thousands): signalling a pidfile's pid blindly can kill
 * another test's simulator, or another user's process. Only a process whose command line names
 * this very pidfile (as `--pidfile <path>`) is ours.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** The command line of `pid`, or null if there is no such process. */
function commandLine(pid: number): string | null {
  try {
    return execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** SIGKILLs `pid` if it is the vfkit (simulator) that was started with `--pidfile <pidfile>`. */
export function killVfkit(pid: number, pidfile: string): boolean {
  const args = commandLine(pid);
  if (!args || !` ${args} `.includes(` --pidfile ${pidfile} `)) return false;
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** Kills the vfkit named by each `<dir>/*\/vfkit.pid` under `vmsDir`, if it is still that vfkit. */
export function killVfkitsUnder(vmsDir: string): void {
  for (const d of fs.existsSync(vmsDir) ? fs.readdirSync(vmsDir) : []) {
    const pidfile = `${vmsDir}/${d}/vfkit.pid`;
    let pid: number;
    try {
      pid = Number(fs.readFileSync(pidfile, 'utf8'));
    } catch {
      continue;
    }
    if (pid > 0) killVfkit(pid, pidfile);
  }
}
