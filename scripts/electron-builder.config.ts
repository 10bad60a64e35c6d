/**
 * electron-builder's configuration for NixVM.app: an arm64 dmg and zip, tray-only (LSUIElement
 * and the other Info.plist keys come from plist/Info.plist, parsed here so that file stays the
 * one place they are written), the code from dist/ (scripts/build.ts) and the tray icons.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'plist';
import type { Configuration } from 'electron-builder';

const REPO = path.resolve(import.meta.dirname, '..');

/** The Info.plist additions from plist/Info.plist, as the object electron-builder merges in. */
export function infoPlistAdditions(file = path.join(REPO, 'plist', 'Info.plist')): Record<string, unknown> {
  const parsed = parse(readFileSync(file, 'utf8'));
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(`${file} must hold a <dict> of Info.plist keys.`);
  }
  return parsed as Record<string, unknown>;
}

export function builderConfig(): Configuration {
  const info = infoPlistAdditions();
  return {
    appId: String(info.CFBundleIdentifier ?? 'dev.nixvm.agent'),
    productName: 'NixVM',
    copyright: typeof info.NSHumanReadableCopyright === 'string' ? info.NSHumanReadableCopyright : undefined,
    directories: {
      output: 'release',
      // Not icons/: electron-builder keeps the build-resources dir out of the app, and the tray
      // images must be inside it.
      buildResources: 'plist',
    },
    files: ['dist/**/*', '!dist/**/*.map', 'icons/*Template.png', 'icons/*Template@2x.png', 'package.json'],
    asar: true,
    // The example flake the first-run checklist copies out: plain files, outside the asar.
    extraResources: [{ from: 'examples/flake', to: 'examples/flake' }],
    // Electron's fuses, flipped in the binary at packaging time: the app cannot be run as a plain
    // Node (ELECTRON_RUN_AS_NODE) or given NODE_OPTIONS / --inspect to run other code with the
    // app's privileges (its Rosetta, network and file access); it loads only its own app.asar,
    // whose integrity is checked against the hash in Info.plist; cookies are encrypted at rest.
    electronFuses: {
      runAsNode: false,
      enableCookieEncryption: true,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      enableEmbeddedAsarIntegrityValidation: true,
      onlyLoadAppFromAsar: true,
    },
    // Everything is bundled by esbuild; no native modules to rebuild.
    npmRebuild: false,
    mac: {
      target: [
        { target: 'dmg', arch: ['arm64'] },
        { target: 'zip', arch: ['arm64'] },
      ],
      icon: 'icons/app.png',
      category: String(info.LSApplicationCategoryType ?? 'public.app-category.developer-tools'),
      minimumSystemVersion: String(info.LSMinimumSystemVersion ?? '13.0'),
      hardenedRuntime: true,
      extendInfo: info,
    },
    dmg: {
      title: 'NixVM',
      contents: [
        { x: 140, y: 180 },
        { x: 400, y: 180, type: 'link', path: '/Applications' },
      ],
    },
  };
}
