#!/usr/bin/env node
// nixvm's entry point. The sources are TypeScript run by Node's own type stripping (Node ≥ 22.18);
// an older `node` on PATH re-executes this under the Node the project installs (node@24).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  const local = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(local)) {
    console.error(
      `nixvm needs Node 22.18 or newer (found ${process.versions.node}); run \`npm install\` in the checkout first.`,
    );
    process.exit(1);
  }
  const r = spawnSync(local, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
// Cache compiled (and type-stripped) modules between runs: a CLI call then costs about a third.
const { enableCompileCache } = await import('node:module');
enableCompileCache?.();
await import('../src/cli/main.ts');
