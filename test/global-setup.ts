/**
 * Once per test run, before any test file: the vfkit simulator's bundle is built in a directory
 * of this run's own (NIXVM_SIM_BUNDLE_DIR, which every process the tests start inherits). Without
 * it, on a cold cache every simulator started at once bundled itself, dozens of esbuild runs on
 * two cores; and a directory per run keeps concurrent runs (other checkouts, other sources) apart.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SIMULATOR = fileURLToPath(new URL('./vfkit-sim/vfkit', import.meta.url));

export default function setup(): () => void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nixvm-sim-bundle-'));
  process.env.NIXVM_SIM_BUNDLE_DIR = dir;
  // The simulator builds its bundle when it finds none; asking its version is the cheapest way.
  const r = spawnSync(process.execPath, [SIMULATOR, '--version'], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 || r.stderr || !readdirSync(dir).some((f) => f.endsWith('.mjs'))) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `Could not build the vfkit simulator's bundle in ${dir}: ${r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`)}`,
    );
  }
  return () => rmSync(dir, { recursive: true, force: true });
}
