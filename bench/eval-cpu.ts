/**
 * What saving a file costs in CPU while the agent watches a flake whose evaluation takes seconds
 * (a synthetic, CPU-heavy nixosConfigurations: each VM's toplevel folds over a long list). The
 * agent's FlakeSet runs it as it does for a user: a 300 ms debounce, one evaluation in flight per
 * flake (an edit during one means exactly one more after), background re-evaluations under
 * `nice -n 10` and one nix at a time.
 *
 *   node bench/eval-cpu.ts [--vms 4] [--weight 1500000] [--json]
 *
 * Two ways of saving: a typing burst (20 saves, 100 ms apart: an editor's autosave) and steady
 * saves (8 saves, one every 0.8 s: slower than the debounce, faster than an evaluation). For each:
 * the evaluations that ran, the CPU time nix spent in total and per save, against one evaluation
 * per save (what a watcher without debounce and coalescing would spend). CPU is the children's
 * user+system time of this process (/proc/self/stat: Linux only), read after each nix exited.
 */
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { FlakeSet } from '../src/core/flake-set.ts';
import { Nix } from '../src/core/nix/nix.ts';
import { onRun, type RunRecord } from '../src/host/runner.ts';

const { values } = parseArgs({
  options: {
    vms: { type: 'string', default: '4' },
    weight: { type: 'string', default: '1500000' },
    json: { type: 'boolean', default: false },
  },
});
const VMS = Math.max(1, Number(values.vms));
const WEIGHT = Math.max(1, Number(values.weight));

if (process.platform !== 'linux') {
  console.error('bench/eval-cpu.ts reads children CPU time from /proc/self/stat: Linux only.');
  process.exit(1);
}
const TICK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds of this process's waited-for children (cutime + cstime). */
function childrenCpu(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the command: state is field 3; cutime and cstime are fields 16 and 17.
  return (Number(fields[13]) + Number(fields[14])) / TICK;
}

const flake = (salt: number) => `{
  # bench/eval-cpu.ts: evaluating each VM's toplevel folds over a list of ${WEIGHT} numbers.
  # edit ${salt}
  outputs = { self }:
    let
      work = n: builtins.foldl' (a: b: a + b * b) 0 (builtins.genList (x: x) n);
      vm = name: {
        config.virtualisation.cores = 1;
        config.system.build.toplevel = derivation {
          inherit name;
          system = "x86_64-linux";
          builder = "/bin/sh";
          weight = toString (work ${WEIGHT});
        };
      };
    in
    { nixosConfigurations = builtins.listToAttrs (builtins.genList (i: { name = "vm\${toString i}"; value = vm "vm\${toString i}"; }) ${VMS}); };
}
`;

const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'nixvm-bench-eval-cpu-')));
writeFileSync(path.join(dir, 'flake.nix'), flake(0));
const nix = Nix.locate();
const set = new FlakeSet({ log: () => {} });
const evals: RunRecord[] = [];
const off = onRun((r) => {
  if (r.argv.includes('eval')) evals.push(r);
});

/** Resolves when the flake is evaluated and no evaluation is running or due (debounce included). */
async function settled(): Promise<void> {
  for (;;) {
    await new Promise((r) => setTimeout(r, 700));
    const f = set.snapshots()[0];
    if (f && !f.evaluating && f.state !== 'evaluating') {
      // One more debounce period without a new evaluation starting.
      const n = evals.length;
      await new Promise((r) => setTimeout(r, 700));
      if (evals.length === n && !set.snapshots()[0]?.evaluating) return;
    }
  }
}

interface Scenario {
  name: string;
  saves: number;
  intervalMs: number;
}

let salt = 0;
async function scenario(s: Scenario) {
  await settled();
  const n0 = evals.length;
  const cpu0 = childrenCpu();
  const t0 = performance.now();
  for (let i = 0; i < s.saves; i++) {
    writeFileSync(path.join(dir, 'flake.nix'), flake(++salt));
    if (i < s.saves - 1) await new Promise((r) => setTimeout(r, s.intervalMs));
  }
  await settled();
  const ran = evals.slice(n0);
  const cpu = childrenCpu() - cpu0;
  return {
    ...s,
    evaluations: ran.length,
    niced: ran.filter((r) => path.basename(r.argv[0] ?? '') === 'nice').length,
    cpuSeconds: cpu,
    cpuPerSave: cpu / s.saves,
    wallSeconds: (performance.now() - t0) / 1000,
  };
}

try {
  await set.setNix(nix, null);
  set.sync([dir]);
  await set.ready();
  // One evaluation alone, as the baseline "one evaluation per save" is made of.
  const c0 = childrenCpu();
  const w0 = performance.now();
  await set.reevaluate();
  const perEval = childrenCpu() - c0;
  const perEvalWall = (performance.now() - w0) / 1000;

  const burst = await scenario({ name: 'typing burst', saves: 20, intervalMs: 100 });
  const steady = await scenario({ name: 'steady saves', saves: 8, intervalMs: 800 });
  const rows = [burst, steady].map((r) => ({
    ...r,
    naiveCpuSeconds: r.saves * perEval,
    ratio: (r.saves * perEval) / Math.max(r.cpuSeconds, 1e-9),
  }));
  if (values.json) {
    console.log(
      JSON.stringify({
        vms: VMS,
        weight: WEIGHT,
        evalCpuSeconds: perEval,
        evalWallSeconds: perEvalWall,
        scenarios: rows,
      }),
    );
  } else {
    const f = (x: number) => x.toFixed(2);
    console.log(
      `one evaluation of the ${VMS}-VM synthetic flake: ${f(perEval)} s CPU (${f(perEvalWall)} s wall), nix ${nix.bin}`,
    );
    for (const r of rows) {
      console.log(
        `  ${r.name}: ${r.saves} saves ${r.intervalMs} ms apart → ${r.evaluations} evaluation${r.evaluations === 1 ? '' : 's'} ` +
          `(${r.niced} under nice), ${f(r.cpuSeconds)} s CPU = ${f(r.cpuPerSave)} s per save; ` +
          `one evaluation per save would be ${f(r.naiveCpuSeconds)} s (${f(r.ratio)}× more)`,
      );
    }
  }
} finally {
  off();
  await set.close();
  rmSync(dir, { recursive: true, force: true });
}
