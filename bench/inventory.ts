/**
 * One batched inventory against the slow path: on the 25-VM fixture, the time of ONE
 * `nix eval --json` that reads every VM (what nixvm does) against 25 `nix eval` calls that each
 * read one VM (what the seed's helper scripts do, one attribute per call), and the ratio.
 *
 *   node bench/inventory.ts [--rounds 5] [--json]
 *
 * Both sides read the same facts with the same Nix expression and flags; a warm-up round first
 * copies the flake into the store and instantiates the derivations, so the rounds compare
 * evaluation, not first-time store writes. Figures are medians over the rounds.
 */
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { inventory } from '../src/core/nix/inventory.ts';
import { singleExpr } from '../src/core/nix/inventory-expr.ts';
import { EVAL_ARGS, flakeInstallable, Nix } from '../src/core/nix/nix.ts';
import { run } from '../src/host/runner.ts';
import { copyFixtureFiles } from '../test/helpers/fixtures.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});
const ROUNDS = Math.max(1, Number(values.rounds));

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

const nix = Nix.locate();
const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'nixvm-bench-inv-')));
try {
  copyFixtureFiles('many', dir);

  const warm = await inventory(nix, dir);
  const names = warm.vms.map((v) => v.name);
  if (names.length !== 25 || warm.failures.length)
    throw new Error(`expected 25 VMs, got ${names.length} (${warm.failures.length} failing)`);

  const perVm = (name: string) =>
    run(
      nix.argv(
        'eval',
        '--json',
        ...EVAL_ARGS,
        flakeInstallable(dir, ['nixosConfigurations']),
        '--apply',
        singleExpr(name),
      ),
    );
  for (const n of names) await perVm(n); // warm the other path the same way

  const batched: number[] = [];
  const separate: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let t = performance.now();
    await inventory(nix, dir);
    batched.push(performance.now() - t);
    t = performance.now();
    for (const n of names) await perVm(n);
    separate.push(performance.now() - t);
  }

  const b = median(batched);
  const s = median(separate);
  const out = {
    vms: names.length,
    rounds: ROUNDS,
    batchedMs: Math.round(b),
    separateMs: Math.round(s),
    perVmEvalMs: Math.round(s / names.length),
    ratio: Number((s / b).toFixed(1)),
  };
  if (values.json) {
    console.log(JSON.stringify(out));
  } else {
    console.log(`inventory of ${out.vms} VMs, median of ${out.rounds} rounds (${nix.bin})`);
    console.log(`  one batched nix eval:   ${out.batchedMs} ms`);
    console.log(`  ${out.vms} per-VM nix evals:    ${out.separateMs} ms  (${out.perVmEvalMs} ms each)`);
    console.log(`  ratio:                  ${out.ratio}x faster batched`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
