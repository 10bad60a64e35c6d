/**
 * The whole agent (watchers, settings, supervisor, leases, control socket) at rest: a
 * `nixvm daemon` on the 25-VM fixture with 10 simulated VMs running, measured from outside for
 * 60 s once the start-up burst is over (CPU time from /proc, or `ps` where there is no /proc; RSS likewise).
 *
 *   node bench/agent-idle.ts [--seconds N]
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { startDaemon } from './_daemon.ts';
const secArg = process.argv.indexOf('--seconds');
const SECONDS = secArg > 0 ? Number(process.argv[secArg + 1]) : 60;
const VMS = 10;

/** CPU seconds (user + system) and RSS bytes of a process. */
function usage(pid: number): { cpu: number; rss: number } {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const tick = 100; // USER_HZ on Linux
    const pages = Number(fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return { cpu: (Number(f[11]) + Number(f[12])) / tick, rss: pages * 4096 };
  } catch {
    const r = spawnSync('ps', ['-o', 'time=,rss=', '-p', String(pid)], { encoding: 'utf8' });
    const [time = '0:0', rss = '0'] = r.stdout.trim().split(/\s+/);
    const parts = time.split(':').map(Number);
    const cpu = parts.reduce((a, b) => a * 60 + b, 0);
    return { cpu, rss: Number(rss) * 1024 };
  }
}

const bench = await startDaemon('many');
const daemon = bench.daemon;
const client = await bench.connect();
try {
  const names = (await client.call('snapshot', {})).vms.slice(0, VMS).map((v) => v.name);
  const t0 = performance.now();
  await Promise.all(names.map((vm) => client.call('start', { vm })));
  const startMs = performance.now() - t0;
  // Wait until every VM has its lease, so the agent has nothing left to look for.
  for (;;) {
    const s = await client.call('snapshot', {});
    if (s.vms.filter((v) => names.includes(v.name)).every((v) => v.ipv4)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await client.close();
  // At rest means after the burst: the daemon returns a burst's heap slack 15 s after the last
  // event (src/host/idle-trim.ts); measure from then on.
  await new Promise((r) => setTimeout(r, 20_000));
  const a = usage(daemon.pid!);
  const t = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const b = usage(daemon.pid!);
  const wall = (performance.now() - t) / 1000;
  const cpuPct = ((b.cpu - a.cpu) / wall) * 100;
  console.log(`nixvm daemon at rest: 25-VM flake watched, ${VMS} simulated VMs running, ${SECONDS} s`);
  console.log(`  start ${VMS} VMs (build + boot):  ${startMs.toFixed(0)} ms`);
  console.log(
    `  agent CPU:  ${(b.cpu - a.cpu).toFixed(2)} s over ${wall.toFixed(0)} s = ${cpuPct.toFixed(3)} % of one core`,
  );
  console.log(`  agent RSS:  ${(b.rss / 2 ** 20).toFixed(1)} MiB`);
} finally {
  await bench.dispose();
}
