import type { BuildOptions } from 'esbuild';

export const REPO: string;
/** The entry of the current build (dist/cli/current/nixvm.mjs). */
export const CLI_BUNDLE: string;
export function cliBundleStale(bundle?: string): boolean;
export function cliBundleOptions(outdir: string): BuildOptions;
export function buildCliBundle(): Promise<string>;
