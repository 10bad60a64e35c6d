/**
 * "Set up a Linux builder" on the simulator: time from `builderSetup` (with consent) to "builder
 * answers" (nix reaches its store over ssh), with nixpkgs' darwin.linux-builder-vz stood in by the
 * seed-exact fixture's and published to a local `file://` binary cache (so the download is the
 * few KiB of a stand-in: the download itself is not what is measured). The first setup also
 * locks nixvm's flake and makes the store image; later ones (after `builder off`, the VM stopped
 * and the flake removed from the settings) find both. Runs as root (the guest's sshd -i).
 *
 *   node bench/builder-setup.ts [--runs N]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median, numberArg } from './_args.ts';

const RUNS = numberArg('--runs', 5);

if (process.getuid?.() !== 0) {
  console.log(
    'bench/builder-setup.ts needs root: the simulated guest sshd (sshd -i) logs in only the user it runs as.',
  );
  process.exit(0);
}
fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

const cache = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-bench-setup-cache-')));
// Set before the daemon helper reads it: the cache is the only substituter.
process.env.NIX_CONFIG = `experimental-features = nix-command flakes\nbuild-users-group =\nsubstituters = file://${cache}\nrequire-sigs = false\n`;
const { startDaemon } = await import('./_daemon.ts');
const { linuxBuilderStandIn, publishToCache } = await import('../test/helpers/builder-fixture.ts');

async function main(): Promise<void> {
  const standIn = await linuxBuilderStandIn(`bench-${process.pid}-${Date.now()}`);
  publishToCache(standIn, cache);
  const r = () => Math.floor(Math.random() * 250) + 1;
  const bench = await startDaemon('seed-exact', {
    env: { NIXVM_SIM_IP: `127.${r()}.${r()}.${r()}` },
    edit: (dir) => {
      const certs = path.join(dir, 'ca.crt');
      fs.writeFileSync(certs, '-----BEGIN CERTIFICATE-----\nbench\n-----END CERTIFICATE-----\n');
      process.env.NIX_SSL_CERT_FILE = certs;
    },
  });
  try {
    const c = await bench.connect();
    const flakes = (await c.call('getSettings', {})).flakes;
    const untilReady = async () => {
      for (;;) {
        const b = (await c.call('snapshot', {})).agent.builders!;
        if (b.status === 'ready') return;
        if (b.status === 'failed') throw new Error(`the builder failed: ${b.note}`);
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    let t0 = performance.now();
    const plan = await c.call('builderSetup', { nixpkgs: standIn.dir });
    const planMs = performance.now() - t0;
    t0 = performance.now();
    await c.call('builderSetup', { nixpkgs: standIn.dir, consent: true });
    await untilReady();
    const firstMs = performance.now() - t0;
    const again: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      await c.call('builderOff', {});
      await c.call('stop', { vm: 'linux-builder' });
      await c.call('setSettings', { flakes });
      t0 = performance.now();
      await c.call('builderSetup', { nixpkgs: standIn.dir, consent: true });
      await untilReady();
      again.push(performance.now() - t0);
    }
    await c.call('builderOff', {});
    await c.call('stop', { vm: 'linux-builder' });
    await c.close();
    console.log(
      `builder setup, the plan (lock nixvm's flake, evaluate, ask the cache): ${Math.round(planMs)} ms (${plan.sentence})`,
    );
    console.log(
      `builder setup → builder answers: first ${Math.round(firstMs)} ms (substitute, store image, boot, ssh, nix store ping); again ${Math.round(median(again))} ms median of ${RUNS} (the flake joins, evaluates, boots, answers)`,
    );
  } finally {
    await bench.dispose();
    standIn.remove();
    fs.rmSync(cache, { recursive: true, force: true });
  }
}

await main();
