/**
 * From "VM running" to a usable shell: `nixvm ssh builder-vm -- true` (the seed's builder, real
 * ssh into a real `sshd -i` behind the simulator) timed from the moment `start` reports the VM
 * running, over the two routes nixvm has:
 *  - vsock: the guest's sshd on vsock port 22 (systemd ≥ 256), no address needed;
 *  - IP: the same guest on systemd 255 (nothing on vsock), reached on its leased IPv4 once the
 *    lease is in the file and the agent has read it (a loopback address stands in for the bridge).
 * Each run stops and starts the VM again; the figure is the median over the runs.
 *
 *   node bench/ssh-ready.ts [--runs N]
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { seedWithOlderSystemd } from '../test/helpers/fixtures.ts';
import { BIN, startDaemon, type BenchDaemon } from './_daemon.ts';
import { median, numberArg } from './_args.ts';

const RUNS = numberArg('--runs', 5);
const VM = 'builder-vm';

if (process.getuid?.() === 0) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

async function measure(route: 'vsock' | 'ip'): Promise<{ ms: number[]; said: string }> {
  const env = route === 'ip' ? { NIXVM_SIM_IP: '127.0.0.2' } : {};
  const bench: BenchDaemon = await startDaemon('seed-exact', {
    env,
    edit: (flake) => {
      if (route !== 'ip') return;
      // systemd 255: no systemd-ssh-generator, so sshd listens only on its address (port 2222 here).
      seedWithOlderSystemd(flake);
      const host = path.join(flake, 'hosts', 'builder-vm.nix');
      fs.writeFileSync(
        host,
        fs.readFileSync(host, 'utf8').replace('    enable = true;', '    enable = true;\n    ports = [ 2222 ];'),
      );
    },
  });
  const ms: number[] = [];
  let said = '';
  try {
    const c = await bench.connect();
    await c.call('setSettings', { sshUser: { [VM]: os.userInfo().username } });
    for (let i = 0; i < RUNS; i++) {
      await c.call('start', { vm: VM });
      const t0 = performance.now();
      const r = spawnSync(process.execPath, [BIN, 'ssh', '-v', VM, '--timeout', '60', '--', 'true'], {
        env: bench.env,
        encoding: 'utf8',
      });
      if (r.status !== 0) throw new Error(`nixvm ssh failed (${r.status}): ${r.stderr}`);
      ms.push(performance.now() - t0);
      said = /over (\S+)/.exec(r.stderr)?.[1] ?? '?';
      await c.call('stop', { vm: VM });
    }
    await c.close();
  } finally {
    await bench.dispose();
  }
  return { ms, said };
}

async function main(): Promise<void> {
  const vsock = await measure('vsock');
  const ip = await measure('ip');
  const v = median(vsock.ms);
  const p = median(ip.ms);
  console.log(`running → shell over ${vsock.said}: ${v.toFixed(0)} ms median of ${RUNS}`);
  console.log(`running → shell over ${ip.said}: ${p.toFixed(0)} ms median of ${RUNS}`);
  console.log(`vsock takes ${(v / p).toFixed(2)}× the time of the IP path (it waits for no lease)`);
}

await main();
