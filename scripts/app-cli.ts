/**
 * The `nixvm` NixVM.app carries: the CLI bundle (scripts/cli-bundle.js's esbuild options, the same
 * code bin/nixvm.js runs) and its launcher (scripts/app-cli/nixvm), laid out as the app's
 * Contents/Resources/cli. electron-builder copies the directory there (extraResources); the
 * packaged-CLI test lays out the same directory in a temp app and runs it.
 */
import { chmodSync, copyFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { cliBundleOptions, REPO } from './cli-bundle.js';

/** Where `npm run package` builds it before electron-builder copies it into the app. */
export const APP_CLI_OUT = path.join(REPO, 'dist', 'app-cli');
export const APP_CLI_LAUNCHER_SOURCE = path.join(REPO, 'scripts', 'app-cli', 'nixvm');

/** Build the CLI bundle and put the launcher beside it, in a fresh `outDir`. Returns outDir. */
export async function buildAppCli(outDir = APP_CLI_OUT): Promise<string> {
  rmSync(outDir, { recursive: true, force: true });
  await build(cliBundleOptions(outDir));
  const launcher = path.join(outDir, 'nixvm');
  copyFileSync(APP_CLI_LAUNCHER_SOURCE, launcher);
  chmodSync(launcher, 0o755);
  return outDir;
}

if (import.meta.main) console.log(`built ${await buildAppCli(path.resolve(process.argv[2] ?? APP_CLI_OUT))}`);
