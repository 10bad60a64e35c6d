/**
 * The builder VM: time from `builder use` to "builder answers" (nix reaches its store over ssh)
 * on the simulator, with the VM built and stopped beforehand (the download and the build are
 * not counted), and the cost of a remote build against a local one for the same trivial
 * derivation through that builder on loopback (a real `sshd -i`, a real nix on the guest's own
 * store). Runs as root (the simulated guest's sshd logs root in).
 *
 *   node bench/builder.ts [--runs N]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon } from './_daemon.ts';
import { median, numberArg } from './_args.ts';

const RUNS = numberArg('--runs', 5);
const FOREIGN = 'riscv64-linux';

if (process.getuid?.() !== 0) {
  console.log('bench/builder.ts needs root: the simulated guest sshd (sshd -i) logs in only the user it runs as.');
  process.exit(0);
}
fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

async function main(): Promise<void> {
  const r = () => Math.floor(Math.random() * 250) + 1;
  const ip = `127.${r()}.${r()}.${r()}`;
  const bench = await startDaemon('seed-exact', {
    env: { NIXVM_SIM_IP: ip },
    edit: (dir) => {
      const f = path.join(dir, 'hosts', 'builder-vm.nix');
      fs.writeFileSync(
        f,
        fs
          .readFileSync(f, 'utf8')
          .replace(
            'trusted-users = [ "builder" ];',
            `trusted-users = [ "builder" ];\n    extra-platforms = [ "${FOREIGN}" ];`,
          ),
      );
      const certs = path.join(dir, 'ca.crt');
      fs.writeFileSync(certs, '-----BEGIN CERTIFICATE-----\nbench\n-----END CERTIFICATE-----\n');
      process.env.NIX_SSL_CERT_FILE = certs;
    },
  });
  try {
    const c = await bench.connect();
    const builders = async () => (await c.call('snapshot', {})).agent.builders!;
    // Built once, stopped: what is measured is start → sshd → nix reaches the store.
    await c.call('start', { vm: 'builder-vm' });
    await c.call('stop', { vm: 'builder-vm' });
    const ready: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      await c.call('builderUse', { vm: 'builder-vm' });
      for (;;) {
        const b = await builders();
        if (b.status === 'ready') break;
        if (b.status === 'failed') throw new Error(`the builder failed: ${b.note}`);
        await new Promise((res) => setTimeout(res, 20));
      }
      ready.push(performance.now() - t0);
      if (i < RUNS - 1) {
        await c.call('builderOff', {});
        await c.call('stop', { vm: 'builder-vm' });
      }
    }
    const line = fs
      .readFileSync(path.join(bench.root, 'nixvm', 'state', 'builders', 'machines'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('ssh-ng://'))!;
    // The same trivial derivation here and there: the remote one is copied there and back.
    const build = (system: string, n: number, builders: string) => {
      const expr = `derivation { name = "bench-${process.pid}-${n}"; system = "${system}"; builder = "/bin/sh"; args = [ "-c" "echo ${n} > $out" ]; }`;
      const t0 = performance.now();
      execFileSync('nix-build', ['--no-out-link', '--option', 'builders', builders, '-E', expr], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      return performance.now() - t0;
    };
    const local: number[] = [];
    const remote: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      local.push(build('x86_64-linux', i, ''));
      remote.push(build(FOREIGN, i, line));
    }
    await c.close();
    const rl = median(remote);
    const ll = median(local);
    console.log(`builder use → builder answers (VM built, stopped): ${Math.round(median(ready))} ms median of ${RUNS}`);
    console.log(
      `trivial derivation, remote through the loopback builder vs local: ${Math.round(rl)} ms vs ${Math.round(ll)} ms median of ${RUNS} (${(rl / ll).toFixed(1)}×, +${Math.round(rl - ll)} ms per build)`,
    );
  } finally {
    await bench.dispose();
  }
}

await main();
