/**
 * Builds NixVM.app's code into dist/: the main process as one ESM bundle (electron stays
 * external), the sandboxed preload as CommonJS (a sandboxed preload cannot load ES modules or
 * anything but `electron`), and the renderer with Vite.
 *
 *   node scripts/build.ts [outDir]      (default: dist/)
 */
import { build as esbuild, type BuildOptions } from 'esbuild';
import { build as viteBuild } from 'vite';
import path from 'node:path';
import { rendererConfig } from './vite.config.ts';

export const REPO = path.resolve(import.meta.dirname, '..');

export interface BuiltApp {
  main: string;
  preload: string;
  rendererDir: string;
}

const common: BuildOptions = {
  bundle: true,
  sourcemap: true,
  external: ['electron'],
  logLevel: 'warning',
  absWorkingDir: REPO,
};

/** The main process bundle: one ES module, electron external. */
export function mainBuildOptions(outfile: string): BuildOptions {
  return {
    ...common,
    entryPoints: [path.join(REPO, 'src/main/main.ts')],
    outfile,
    platform: 'node',
    format: 'esm',
    // Electron 45 runs Node 22.
    target: 'node22',
    // `menubar` (and a few others) are CommonJS and call require(): give the ESM bundle one.
    banner: {
      js: "import { createRequire as __nixvmCreateRequire } from 'node:module'; const require = __nixvmCreateRequire(import.meta.url);",
    },
  };
}

export async function buildApp(outDir = path.join(REPO, 'dist')): Promise<BuiltApp> {
  const main = path.join(outDir, 'main', 'main.js');
  const preload = path.join(outDir, 'preload', 'preload.cjs');
  const rendererDir = path.join(outDir, 'renderer');
  await Promise.all([
    esbuild(mainBuildOptions(main)),
    esbuild({
      ...common,
      entryPoints: [path.join(REPO, 'src/preload/preload.ts')],
      outfile: preload,
      platform: 'browser',
      format: 'cjs',
      target: 'chrome130',
    }),
    viteBuild(rendererConfig(rendererDir)),
  ]);
  return { main, preload, rendererDir };
}

if (import.meta.main) {
  const out = path.resolve(process.argv[2] ?? path.join(REPO, 'dist'));
  const built = await buildApp(out);
  for (const f of [built.main, built.preload, built.rendererDir])
    console.log(`built ${path.relative(process.cwd(), f)}`);
}
