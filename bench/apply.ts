/**
 * From a saved config change to "applied" on a running VM, switching in place vs restarting:
 * the ssh-credential fixture's `cred` (sshd, nixvm's key for root as a systemd credential), on the
 * simulator with a real `sshd -i`. Each round writes the flake, then calls `apply` once the agent
 * sees the VM stale; a closure-only change switches, one that also changes memorySize restarts.
 * The fixture's switch-to-configuration does no work of its own, so the switch figure is
 * nixvm's (eval, build, ssh, switch) without a guest's activation time. Runs as root (sshd -i
 * logs in only its own user).
 *
 *   node bench/apply.ts [--runs N]
 */
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon } from './_daemon.ts';
import { median, numberArg } from './_args.ts';

const RUNS = numberArg('--runs', 5);

if (process.getuid?.() !== 0) {
  console.log('bench/apply.ts needs root: the simulated guest sshd (sshd -i) logs in only the user it runs as.');
  process.exit(0);
}
fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

async function main(): Promise<void> {
  let flakeDir = '';
  const bench = await startDaemon('ssh-credential', { edit: (dir) => (flakeDir = dir) });
  const times: Record<'switch' | 'restart', number[]> = { switch: [], restart: [] };
  try {
    const c = await bench.connect();
    await c.call('start', { vm: 'cred' });
    const vm = async () => (await c.call('snapshot', {})).vms.find((v) => v.name === 'cred')!;
    // The agent finds sshd on vsock first (what a switch goes over).
    while (!(await vm()).sshCommand?.includes('ProxyCommand')) await new Promise((r) => setTimeout(r, 100));
    let rev = 0;
    let memory = 1024;
    for (let i = 0; i < RUNS * 2; i++) {
      const how = i % 2 === 0 ? 'switch' : 'restart';
      if (how === 'restart') memory = memory === 1024 ? 2048 : 1024;
      const before = (await vm()).drvPath;
      const t0 = performance.now();
      fs.writeFileSync(
        path.join(flakeDir, 'extra-cred.nix'),
        `{ nixvmTest.rev = ${++rev}; virtualisation = { cores = 1; memorySize = ${memory}; }; }\n`,
      );
      for (;;) {
        const v = await vm();
        if (v.stale && v.drvPath !== before) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const after = await c.call('apply', { vm: 'cred' });
      if (after.applied?.how !== how) throw new Error(`expected a ${how}, got ${JSON.stringify(after.applied)}`);
      times[how].push(performance.now() - t0);
      if (how === 'restart')
        while (!(await vm()).sshCommand?.includes('ProxyCommand')) await new Promise((r) => setTimeout(r, 100));
    }
    await c.close();
  } finally {
    await bench.dispose();
  }
  const s = median(times.switch);
  const r = median(times.restart);
  console.log(`saved change → applied by a switch in place: ${s.toFixed(0)} ms median of ${RUNS}`);
  console.log(`saved change → applied by a restart: ${r.toFixed(0)} ms median of ${RUNS}`);
  console.log(
    `a switch takes ${(s / r).toFixed(2)}× a restart's time here (the simulator boots in 100 ms; a real guest takes seconds)`,
  );
}

await main();
