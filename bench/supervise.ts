/**
 * What supervising VMs costs the agent: CPU and memory of the supervising process while 10
 * simulated VMs run, and the time to adopt 10 running VMs after an agent restart.
 *
 *   node bench/supervise.ts [--vms 10] [--seconds 60] [--json]
 *
 * Phases: start N VMs (our children: their exit comes from the child handle), stay idle for the
 * window and measure; then a fresh Supervisor adopts them all (pidfile + `ps` identity + REST) and
 * stays idle for the window again (adopted VMs are watched through an idle REST connection and a
 * kill(pid, 0) every 5 s); then stop them all. CPU is process.cpuUsage() of this process over the
 * window (user+system as a % of one core); the simulators' own CPU is not counted, it is the VMs'.
 */
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { VmSpec } from '../src/api/types.ts';
import { runtimePaths } from '../src/core/vm/runtime-paths.ts';
import { Supervisor, type SupervisedVm } from '../src/core/vm/supervisor.ts';
import { deviceFacts, vfkitArgv } from '../src/core/vm/vfkit-args.ts';
import { makeClosure, testSpec } from '../test/vfkit-sim/harness.ts';

const { values } = parseArgs({
  options: {
    vms: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '60' },
    json: { type: 'boolean', default: false },
  },
});
const N = Number(values.vms);
const SECONDS = Number(values.seconds);
const SIM = fileURLToPath(new URL('../test/vfkit-sim/vfkit', import.meta.url));

const root = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'nixvm-bench-sup-')));
const stateDir = path.join(root, 'state');
const logsDir = path.join(root, 'logs');
const closure = makeClosure(path.join(root, 'store'), 'bench');
const env = { NIXVM_LEASES_FILE: path.join(root, 'leases'), NIXVM_SIM_BOOT_MS: '200' };

function vm(i: number): SupervisedVm {
  const name = `vm${i}`;
  const spec: VmSpec = testSpec({
    name,
    flake: root,
    drvPath: `/nix/store/${'a'.repeat(32)}-nixos-system-${name}.drv`,
  });
  const paths = runtimePaths(stateDir, logsDir, name);
  const mac = `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`;
  return {
    name,
    argv: vfkitArgv({ vfkit: SIM, spec, closure, mac, paths }),
    paths,
    drvPath: spec.drvPath,
    outPath: closure,
    facts: deviceFacts(spec, mac),
  };
}

interface Window {
  seconds: number;
  cpuPercent: number;
  cpuMsPerVmPerMinute: number;
  rssMiB: number;
  heapMiB: number;
}

async function idle(seconds: number): Promise<Window> {
  globalThis.gc?.();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let peakRss = 0;
  // Sample RSS once a second; the sampling itself is part of what is measured (a few µs).
  const timer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 1000);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  clearInterval(timer);
  const c = process.cpuUsage(c0);
  const wallMs = performance.now() - t0;
  const cpuMs = (c.user + c.system) / 1000;
  return {
    seconds,
    cpuPercent: +((cpuMs / wallMs) * 100).toFixed(3),
    cpuMsPerVmPerMinute: +((cpuMs / N) * (60_000 / wallMs)).toFixed(2),
    rssMiB: +(Math.max(peakRss, process.memoryUsage.rss()) / 1024 / 1024).toFixed(1),
    heapMiB: +(process.memoryUsage().heapUsed / 1024 / 1024).toFixed(1),
  };
}

const vms = Array.from({ length: N }, (_, i) => vm(i));
const baselineRssMiB = +(process.memoryUsage.rss() / 1024 / 1024).toFixed(1);

const first = new Supervisor({ stateDir, logsDir, env, stopTimeoutMs: 10_000 });
let t = performance.now();
await Promise.all(vms.map((v) => first.start(v)));
const startAllMs = Math.round(performance.now() - t);
const own = await idle(SECONDS);
first.close();

// Adoption asks ps through the runner, whose first use loads execa (once per process). The agent
// has loaded it for nix long before it adopts; timed apart, so the adoption figure is adoption's.
t = performance.now();
await import('execa');
const execaLoadMs = Math.round(performance.now() - t);
const second = new Supervisor({ stateDir, logsDir, env, stopTimeoutMs: 10_000 });
t = performance.now();
const adopted = await second.adoptAll();
const adoptAllMs = Math.round(performance.now() - t);
if (adopted.length !== N) throw new Error(`adopted ${adopted.length} of ${N} VMs`);
const adoptedIdle = await idle(SECONDS);

t = performance.now();
await Promise.all(vms.map((v) => second.stop(v.name)));
const stopAllMs = Math.round(performance.now() - t);
const stoppedCleanly = second.list().filter((s) => s.state === 'stopped').length;
second.close();
rmSync(root, { recursive: true, force: true });

const report = {
  vms: N,
  baselineRssMiB,
  startAllMs,
  ownChildren: own,
  execaLoadMs,
  adoptAllMs,
  adoptMsPerVm: +(adoptAllMs / N).toFixed(1),
  adopted: adoptedIdle,
  stopAllMs,
  stoppedCleanly,
};
if (values.json) {
  console.log(JSON.stringify(report, null, 2));
} else {
  console.log(`supervising ${N} simulated VMs, ${SECONDS} s idle windows`);
  console.log(`  start ${N} (to running):                ${startAllMs} ms`);
  console.log(
    `  idle, our children:   CPU ${own.cpuPercent}% of a core (${own.cpuMsPerVmPerMinute} ms CPU per VM per minute), RSS ${own.rssMiB} MiB (baseline ${baselineRssMiB} MiB)`,
  );
  console.log(
    `  adopt ${N} after restart:               ${adoptAllMs} ms (${report.adoptMsPerVm} ms per VM, in parallel; execa loaded before it: ${execaLoadMs} ms, once per process)`,
  );
  console.log(
    `  idle, adopted VMs:    CPU ${adoptedIdle.cpuPercent}% of a core (${adoptedIdle.cpuMsPerVmPerMinute} ms CPU per VM per minute), RSS ${adoptedIdle.rssMiB} MiB`,
  );
  console.log(`  stop ${N} (REST Stop, guest shutdown):  ${stopAllMs} ms, ${stoppedCleanly}/${N} stopped cleanly`);
}
