/**
 * Process identity: is a pid alive, gone (or a zombie nobody reaps), and what command line does
 * it run. The lock and the VM supervisor both ask; `ps` goes through the runner.
 */
import { run, type RunOptions } from './runner.ts';

const PS: RunOptions = { allowFailure: true, searchPath: ['/bin', '/usr/bin'], timeoutMs: 5000 };

/** kill(pid, 0): alive, including someone else's process (EPERM). Zombies count as alive. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Gone, or a zombie nobody has reaped yet (its parent, an old agent, died). */
export async function pidGone(pid: number): Promise<boolean> {
  if (!pidAlive(pid)) return true;
  const r = await run(['ps', '-o', 'stat=', '-p', String(pid)], PS).catch(() => null);
  if (!r) return false;
  const stat = r.stdout.trim();
  return stat === '' || stat.startsWith('Z');
}

/**
 * What `ps` says of a live pid: its state letters and its command line (argv joined by spaces), or
 * `gone`; null when ps itself could not run (the caller decides how much to trust the pid then).
 */
export async function processCommand(
  pid: number,
): Promise<{ kind: 'live'; stat: string; args: string } | { kind: 'gone' } | null> {
  if (!pidAlive(pid)) return { kind: 'gone' };
  // -ww: BSD ps cuts lines at 79 columns when stdout is not a terminal.
  const r = await run(['ps', '-ww', '-o', 'stat=,args=', '-p', String(pid)], PS).catch(() => null);
  if (!r) return null;
  const line = r.stdout.trim();
  if (!line) return { kind: 'gone' };
  const m = /^(\S+)\s*(.*)$/.exec(line);
  return { kind: 'live', stat: m?.[1] ?? '', args: m?.[2] ?? '' };
}
