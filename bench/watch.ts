/**
 * From a file write to the stale flag: on the 25-VM fixture, the time from saving one VM's host
 * file until the watcher reports that VM's drvPath changed, and that latency minus the
 * evaluation itself (what the watching adds: change detection, the debounce, the git check).
 *
 *   node bench/watch.ts [--edits 10] [--debounce 300] [--json]
 *
 * Each edit changes a different VM's configuration and waits for the inventory that marks it;
 * figures are medians (min–max) over the edits.
 */
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { inventory } from '../src/core/nix/inventory.ts';
import { Nix } from '../src/core/nix/nix.ts';
import { FlakeWatcher, type InventoryUpdate } from '../src/core/nix/watcher.ts';
import { copyFixtureFiles } from '../test/helpers/fixtures.ts';

const { values } = parseArgs({
  options: {
    edits: { type: 'string', default: '10' },
    debounce: { type: 'string', default: '300' },
    json: { type: 'boolean', default: false },
  },
});
const EDITS = Math.max(1, Number(values.edits));
const DEBOUNCE = Number(values.debounce);

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  const median = s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
  return { median: Math.round(median), min: Math.round(s[0] as number), max: Math.round(s.at(-1) as number) };
};

const nix = Nix.locate();
const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'nixvm-bench-watch-')));
copyFixtureFiles('many', dir);
const watcher = new FlakeWatcher({
  flakeDir: dir,
  debounceMs: DEBOUNCE,
  evaluate: (signal) => inventory(nix, dir, { signal }),
});
try {
  await watcher.start();
  const total: number[] = [];
  const evalMs: number[] = [];
  const added: number[] = [];
  for (let i = 0; i < EDITS; i++) {
    const vm = `vm${String((i % 25) + 1).padStart(2, '0')}`;
    const file = path.join(dir, 'hosts', `${vm}.nix`);
    const marked = new Promise<InventoryUpdate>((resolve) => {
      const on = (u: InventoryUpdate) => {
        if (!u.changed.includes(vm)) return;
        watcher.off('inventory', on);
        resolve(u);
      };
      watcher.on('inventory', on);
    });
    const text = readFileSync(file, 'utf8').replace(/hello from [^"]*/, `hello from ${vm}, edit ${i}`);
    const t0 = performance.now();
    writeFileSync(file, text);
    const u = await marked;
    const dt = performance.now() - t0;
    total.push(dt);
    evalMs.push(u.evalMs);
    added.push(dt - u.evalMs);
  }
  const out = {
    edits: EDITS,
    debounceMs: DEBOUNCE,
    writeToStaleMs: stats(total),
    evalMs: stats(evalMs),
    writeToStaleMinusEvalMs: stats(added),
  };
  if (values.json) {
    console.log(JSON.stringify(out));
  } else {
    const fmt = (s: { median: number; min: number; max: number }) => `${s.median} ms (${s.min}–${s.max})`;
    console.log(`write → stale flag on the 25-VM fixture, ${EDITS} edits, debounce ${DEBOUNCE} ms`);
    console.log(`  write → stale:          ${fmt(out.writeToStaleMs)}`);
    console.log(`  of which evaluation:    ${fmt(out.evalMs)}`);
    console.log(`  minus evaluation:       ${fmt(out.writeToStaleMinusEvalMs)}  (debounce ${DEBOUNCE} ms included)`);
  }
} finally {
  await watcher.close();
  rmSync(dir, { recursive: true, force: true });
}
