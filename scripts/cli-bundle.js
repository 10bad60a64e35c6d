/**
 * The `nixvm` CLI (and its daemon) as one JavaScript bundle, built with esbuild from src/. A
 * long-lived agent run from TypeScript sources keeps Node's type stripper (~23 MiB) and every
 * module's source in memory; the bundle needs neither. bin/nixvm.js rebuilds it when a source is
 * newer, so a checkout always runs what its src/ says. Plain JavaScript: it runs before anything
 * could strip types.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../', import.meta.url));
const BUILDS = path.join(REPO, 'dist', 'cli');
/** `current` is a symlink to the newest build's directory, swapped atomically after each build. */
export const CLI_BUNDLE = path.join(BUILDS, 'current', 'nixvm.mjs');
const SRC = path.join(REPO, 'src');
const AJV_STUB = fileURLToPath(new URL('./ajv-absent.js', import.meta.url));

/** Newest modification time under `dir` (the sources the bundle is made of). */
function newest(dir) {
  let t = 0;
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, d.name);
    t = Math.max(t, d.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

/** True when the bundle is missing or older than src/, package.json or this script. */
export function cliBundleStale(bundle = CLI_BUNDLE) {
  let built;
  try {
    built = fs.statSync(bundle).mtimeMs;
  } catch {
    return true;
  }
  const inputs = [path.join(REPO, 'package.json'), fileURLToPath(import.meta.url)].map((f) => fs.statSync(f).mtimeMs);
  return Math.max(newest(SRC), ...inputs) > built;
}

/**
 * esbuild options for the bundle (the app's packaging reuses them). Split at the CLI's dynamic
 * imports, so `nixvm ls` loads the client and never the agent the daemon needs.
 */
export function cliBundleOptions(outdir) {
  return {
    entryPoints: { nixvm: path.join(SRC, 'cli', 'main.ts') },
    outdir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    splitting: true,
    minify: true,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    logLevel: 'warning',
    absWorkingDir: REPO,
    // Commander and a few others are CommonJS and call require(): give the ESM bundle one.
    banner: {
      js: "import { createRequire as __nixvmCreateRequire } from 'node:module'; const require = __nixvmCreateRequire(import.meta.url);",
    },
    // conf imports ajv at load but builds a validator only when given a schema, which nixvm never
    // gives it (src/core/settings.ts checks settings itself): leave the 240 KB out.
    alias: { 'ajv/dist/2020.js': AJV_STUB, 'ajv-formats': AJV_STUB },
  };
}

/**
 * Build the bundle into a fresh directory, then point `current` at it (a symlink renamed into
 * place: a concurrent run loads the old build or the new one, never half of one). Earlier builds
 * stay a day, so an agent started from one can still load its lazy chunks.
 */
export async function buildCliBundle() {
  const { build } = await import('esbuild');
  const id = `b${Date.now()}-${process.pid}`;
  const dir = path.join(BUILDS, id);
  fs.mkdirSync(BUILDS, { recursive: true });
  try {
    await build(cliBundleOptions(dir));
    const link = path.join(BUILDS, `current.${process.pid}.tmp`);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(id, link);
    fs.renameSync(link, path.join(BUILDS, 'current'));
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const dayAgo = Date.now() - 24 * 3600 * 1000;
  for (const d of fs.readdirSync(BUILDS)) {
    if (!d.startsWith('b') || d === id) continue;
    const p = path.join(BUILDS, d);
    if (fs.statSync(p).mtimeMs < dayAgo) fs.rmSync(p, { recursive: true, force: true });
  }
  return CLI_BUNDLE;
}
