/**
 * The agent's memory under the control-socket attacks of issue 16: the 28,000-filter subscribe
 * (on one connection, then spread over every connection the agent takes), and clients that
 * pipeline requests for the largest answer (a 25-VM snapshot) and never read. A `nixvm daemon` on
 * the 25-VM fixture; its peak RSS (VmHWM) is read from /proc. The bound: under 200 MiB.
 *
 *   node bench/control-abuse.ts [--greedy N] [--seconds S]
 */
import type net from 'node:net';
import { ABUSE_BOUND_MIB as BOUND_MIB, bigSubscribe, open, pipeliners, rss } from './_abuse.ts';
import { startDaemon } from './_daemon.ts';
import { numberArg } from './_args.ts';

const GREEDY = numberArg('--greedy', 8);
const SECONDS = numberArg('--seconds', 40);

const bench = await startDaemon('many');
const pid = bench.daemon.pid!;
const client = await bench.connect();
const sock = client.socketPath;
const sockets: net.Socket[] = [];
try {
  const vms = (await client.call('snapshot', {})).vms.map((v) => v.name);
  const before = rss(pid);

  // 1. The subscribe: 28,000 log filters for VMs that do not exist, on one connection.
  const big = await bigSubscribe(sock);
  sockets.push(big.socket);
  const { refused, answer } = big;
  const filters = Array.from({ length: 28_000 }, (_, i) => ({ vm: String(i), kind: 'console' }));

  // 2. The same 28,000 filters spread over every connection the agent takes, 64 on each (each
  // filter a follower with its watcher and buffer): first naming VMs that do not exist, then
  // real ones until the per-agent cap refuses more.
  let accepted = 0;
  let ghostsAccepted = 0;
  const subscribe = async (logs: { vm: string; kind: string }[]): Promise<boolean> => {
    const s = await open(sock);
    sockets.push(s);
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.write(`${JSON.stringify({ id: 1, method: 'subscribe', params: { logs } })}\n`);
    for (let i = 0; i < 100 && !got.includes('\n'); i++) await new Promise((r) => setTimeout(r, 10));
    return /"subscribed":true/.test(got);
  };
  for (let c = 0; c < 56; c++) {
    if (await subscribe(filters.slice(c * 64, c * 64 + 64))) ghostsAccepted++;
  }
  for (let c = 0; c < 56; c++) {
    const logs = Array.from({ length: 64 }, (_, i) => ({
      vm: vms[(c * 64 + i) % vms.length]!,
      kind: i % 2 ? 'build' : 'console',
    }));
    if (await subscribe(logs)) accepted++;
  }
  await new Promise((r) => setTimeout(r, 500));
  const afterSubscribe = rss(pid);

  // 3. Meanwhile (the subscribers stay), clients that pipeline requests for a 25-VM snapshot and never read.
  const greedy = await pipeliners(sock, GREEDY, SECONDS);
  const { sent } = greedy;
  const afterGreedy = rss(pid);
  const dropped = greedy.close();

  // Still serving.
  const alive = (await (await bench.connect()).call('snapshot', {})).vms.length === vms.length;

  const f = (n: number) => `${n.toFixed(1)} MiB`;
  console.log('nixvm daemon (25-VM flake) under control-socket abuse');
  console.log(`  RSS before:                         ${f(before.now)} (peak so far ${f(before.peak)})`);
  console.log(
    `  28,000-filter subscribe:            ${refused ? 'refused' : 'ACCEPTED'} (${answer.trim().slice(0, 90)}…)`,
  );
  console.log(`  56 connections × 64 unknown VMs:     ${ghostsAccepted} subscriptions accepted`);
  console.log(`  56 connections × 64 real logs:      ${accepted} subscriptions accepted (per-agent cap 1024 filters)`);
  console.log(`  RSS after the subscribes:           ${f(afterSubscribe.now)}`);
  console.log(
    `  ${GREEDY} non-reading pipeliners, ${SECONDS} s:   ${sent.toLocaleString('en')} requests written, ${dropped} dropped by the agent`,
  );
  console.log(`  RSS after the pipeliners:           ${f(afterGreedy.now)}`);
  console.log(`  peak RSS (VmHWM) over the run:      ${f(afterGreedy.peak)} (bound ${BOUND_MIB} MiB)`);
  console.log(`  agent still answering:              ${alive ? 'yes' : 'NO'}`);
  if (afterGreedy.peak >= BOUND_MIB || !refused || !alive) process.exitCode = 1;
} finally {
  for (const s of sockets) s.destroy();
  await client.close();
  await bench.dispose();
}
