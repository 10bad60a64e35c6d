/**
 * The agent's own overheads, against a running daemon with the seed-like fixture and the vfkit
 * simulator:
 *  - `nixvm ls` round trip: the whole CLI process, and one request on an open control connection;
 *  - "start an up-to-date VM": from the command to vfkit's pidfile existing, against spawning the
 *    very same argv directly (the agent's overhead as a ratio).
 *
 *   node bench/agent.ts [--runs N]
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, startDaemon } from './_daemon.ts';
import { median } from './_args.ts';

const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 15;

const ms = (x: number) => `${x.toFixed(1)} ms`;

/** Let the previous run's process finish exiting, so both measurements start on a quiet machine. */
const settle = () => new Promise((r) => setTimeout(r, 400));

async function waitFile(file: string, since: number): Promise<number> {
  for (;;) {
    try {
      if (fs.statSync(file).size > 0) return performance.now() - since;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function main(): Promise<void> {
  const bench = await startDaemon('seed');
  const { root, env } = bench;
  const client = await bench.connect();
  try {
    // 1. ls round trips.
    const cli: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      const r = spawnSync(process.execPath, [BIN, 'ls', '--json'], { env });
      if (r.status !== 0) throw new Error(String(r.stderr));
      cli.push(performance.now() - t);
    }
    const rpc: number[] = [];
    for (let i = 0; i < RUNS * 10; i++) {
      const t = performance.now();
      await client.call('snapshot', {});
      rpc.push(performance.now() - t);
    }
    const node: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      spawnSync(process.execPath, ['-e', '0']);
      node.push(performance.now() - t);
    }

    // 2. Start an up-to-date VM: build once, then start/stop repeatedly.
    await client.call('build', { vm: 'minimal-vm' });
    const viaAgent: number[] = [];
    const direct: number[] = [];
    const state = path.join(root, 'nixvm', 'state', 'vms', 'minimal-vm');
    // Interleaved, so both see the same machine load: through the agent, then the same argv directly.
    for (let i = 0; i < Math.min(RUNS, 10); i++) {
      fs.rmSync(path.join(state, 'vfkit.pid'), { force: true });
      await settle();
      const t = performance.now();
      const started = client.call('start', { vm: 'minimal-vm' });
      viaAgent.push(await waitFile(path.join(state, 'vfkit.pid'), t));
      await started;
      const argv = (await client.call('inspect', { vm: 'minimal-vm' })).argv;
      await client.call('stop', { vm: 'minimal-vm' });
      await settle();

      const pidfile = argv[argv.indexOf('--pidfile') + 1]!;
      const socket = argv[argv.indexOf('--restful-uri') + 1]!.replace('unix://', '');
      fs.rmSync(pidfile, { force: true });
      fs.rmSync(socket, { force: true });
      const t2 = performance.now();
      const child = spawn(argv[0]!, argv.slice(1), { env, stdio: 'ignore', detached: true });
      direct.push(await waitFile(pidfile, t2));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      fs.rmSync(socket, { force: true });
      await settle();
    }

    console.log('nixvm agent overheads (seed fixture, vfkit simulator)');
    console.log(
      `  nixvm ls --json, whole CLI process   median ${ms(median(cli))}  (bare \`node -e 0\`: ${ms(median(node))})`,
    );
    console.log(`  snapshot request on an open socket   median ${ms(median(rpc))}`);
    console.log(`  start up-to-date VM → vfkit spawned  median ${ms(median(viaAgent))}`);
    console.log(`  same argv spawned directly           median ${ms(median(direct))}`);
    console.log(`  agent overhead ratio                 ${(median(viaAgent) / median(direct)).toFixed(2)}×`);
  } finally {
    await client.close();
    await bench.dispose();
  }
}

await main();
