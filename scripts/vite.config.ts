/**
 * Vite config for the renderer (dropdown, log window, settings): three HTML entries, relative
 * asset URLs (the app loads them from file://), output in dist/renderer. The UI tests build with
 * the same config into a temp dir (`rendererConfig(outDir)`).
 */
import path from 'node:path';
import { defineConfig, type InlineConfig } from 'vite';

const root = path.resolve(import.meta.dirname, '..', 'src', 'renderer');
export const RENDERER_PAGES = ['index', 'log', 'settings'] as const;

export function rendererConfig(outDir = path.resolve(import.meta.dirname, '..', 'dist', 'renderer')): InlineConfig {
  return {
    configFile: false,
    root,
    base: './',
    logLevel: 'warn',
    build: {
      outDir,
      emptyOutDir: true,
      // Electron 45 ships Chromium 140; the tests use Debian's, which is newer.
      target: 'chrome130',
      sourcemap: true,
      // The preload polyfill would need an inline script, which the CSP forbids.
      modulePreload: { polyfill: false },
      rolldownOptions: {
        input: Object.fromEntries(RENDERER_PAGES.map((p) => [p, path.join(root, `${p}.html`)])),
      },
    },
  };
}

export default defineConfig(rendererConfig());
