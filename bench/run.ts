/**
 * Runs every benchmark in bench/ one after another and prints their figures
 * (`npm run bench`). Each is also runnable alone: `node bench/<name>.ts`.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const benches = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('_'))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort();
let failed = 0;
for (const f of benches) {
  console.log(`\n=== ${f}`);
  const r = spawnSync(process.execPath, [path.join(dir, f)], {
    stdio: 'inherit',
    env: { ...process.env, NIXVM_NO_LOGIN_SHELL: '1' },
  });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
