/**
 * The control-socket attacks of issue 16 that have a memory bound (the agent stays under 200 MiB),
 * shared by `control-abuse.ts` and `fuzz-control.ts`: the 28,000-filter subscribe and clients that
 * pipeline requests and never read; and the agent's resident memory, from /proc.
 */
import fs from 'node:fs';
import net from 'node:net';

/** The bound issue 16 sets for the agent under these attacks. */
export const ABUSE_BOUND_MIB = 200;

/** Current and peak (VmHWM) resident memory of a process, in MiB. */
export function rss(pid: number): { now: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { now: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** Start a new peak: VmHWM drops to the current RSS (Linux's clear_refs "5"), so each phase has its own. */
export function resetPeak(pid: number): void {
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

export function open(sock: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(sock, () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * The subscribe: one line with `count` log filters for VMs that do not exist (short names,
 * so the line stays under the 1 MiB request cap), on one connection. Resolves `waitMs` later with
 * the agent's answer and the connection, left open.
 */
export async function bigSubscribe(
  sock: string,
  count = 28_000,
  waitMs = 500,
): Promise<{ refused: boolean; answer: string; socket: net.Socket }> {
  const socket = await open(sock);
  const filters = Array.from({ length: count }, (_, i) => ({ vm: String(i), kind: 'console' }));
  let answer = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (answer += d));
  socket.write(`${JSON.stringify({ id: 1, method: 'subscribe', params: { logs: filters } })}\n`);
  await new Promise((r) => setTimeout(r, waitMs));
  return { refused: /"error"/.test(answer), answer, socket };
}

/**
 * `clients` connections that pipeline requests for the largest answer (a snapshot) every 50 ms for
 * `seconds` and never read. Resolves when the time is up, with how many requests were written and
 * a close() that hangs up the ones the agent has not dropped (and says how many it dropped).
 */
export async function pipeliners(
  sock: string,
  clients: number,
  seconds: number,
): Promise<{ sent: number; close(): number }> {
  const request = `${JSON.stringify({ id: 1, method: 'snapshot', params: {} })}\n`.repeat(2000);
  let dropped = 0;
  let ours = false;
  const greedy: net.Socket[] = [];
  for (let g = 0; g < clients; g++) {
    const s = await open(sock);
    s.pause();
    s.on('error', () => {});
    s.once('close', () => {
      if (!ours) dropped++;
    });
    greedy.push(s);
  }
  const until = Date.now() + seconds * 1000;
  let sent = 0;
  while (Date.now() < until) {
    for (const s of greedy) {
      if (s.destroyed) continue;
      if (s.write(request)) sent += 2000;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    sent,
    close() {
      ours = true;
      for (const s of greedy) s.destroy();
      return dropped;
    },
  };
}
