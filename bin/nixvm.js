#!/usr/bin/env node
// nixvm's entry point. It runs the CLI bundle (scripts/cli-bundle.js), rebuilt first when a source
// in this checkout is newer; without esbuild (no dev dependencies) it runs the TypeScript sources
// through Node's own type stripping (Node ≥ 22.18). An older `node` on PATH re-executes this under
// the Node the project installs (node@24).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
// Cache compiled modules between runs: a CLI call then costs about a third.
const { enableCompileCache } = await import('node:module');
enableCompileCache?.();
const entry = await cliEntry();
await import(entry);

async function cliEntry() {
  const builder = new URL('../scripts/cli-bundle.js', import.meta.url);
  const sources = new URL('../src/cli/main.ts', import.meta.url);
  if (!existsSync(fileURLToPath(builder))) return new URL('../dist/cli/current/nixvm.mjs', import.meta.url).href;
  const { CLI_BUNDLE, buildCliBundle, cliBundleStale } = await import(builder.href);
  if (!cliBundleStale()) return pathToFileURL(CLI_BUNDLE).href;
  try {
    return pathToFileURL(await buildCliBundle()).href;
  } catch (err) {
    // No esbuild (a production install), or a build error: run the sources as they are.
    if (process.env.NIXVM_DEBUG) console.error(`nixvm: running the sources (${err.message})`);
    return sources.href;
  }
}
