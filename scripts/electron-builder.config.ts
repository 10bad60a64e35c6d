/**
 * electron-builder's configuration for NixVM.app: an arm64 dmg and zip, tray-only (LSUIElement
 * and the other Info.plist keys come from plist/Info.plist, parsed here so that file stays the
 * one place they are written), the code from dist/ (scripts/build.ts), the tray icons, and the
 * `nixvm` CLI in Contents/Resources/cli (scripts/app-cli.ts).
 *
 * Unsigned unless a maintainer's environment says otherwise: CSC_LINK (the Developer ID
 * Application certificate, a .p12 path or base64) and CSC_KEY_PASSWORD, or CSC_NAME for one in
 * the keychain, sign it with the hardened runtime; APPLE_ID, APPLE_APP_SPECIFIC_PASSWORD and
 * APPLE_TEAM_ID (or APPLE_API_KEY, APPLE_API_KEY_ID, APPLE_API_ISSUER) notarise it too.
 */
import { chmodSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'plist';
import type { Configuration } from 'electron-builder';

const REPO = path.resolve(import.meta.dirname, '..');

export interface Signing {
  /** A Developer ID certificate was given: sign (else `identity: null`, no signing at all). */
  signed: boolean;
  /** The keychain identity (CSC_NAME), when the certificate is not given by CSC_LINK. */
  identity: string | undefined;
  /** Apple credentials were given as well: notarise after signing. */
  notarize: boolean;
}

export function signingFromEnv(env: NodeJS.ProcessEnv = process.env): Signing {
  const signed = Boolean(env.CSC_LINK || env.CSC_NAME);
  const apple =
    Boolean(env.APPLE_ID && env.APPLE_APP_SPECIFIC_PASSWORD && env.APPLE_TEAM_ID) ||
    Boolean(env.APPLE_API_KEY && env.APPLE_API_KEY_ID && env.APPLE_API_ISSUER);
  return { signed, identity: env.CSC_NAME || undefined, notarize: signed && apple };
}

/** The Info.plist additions from plist/Info.plist, as the object electron-builder merges in. */
export function infoPlistAdditions(file = path.join(REPO, 'plist', 'Info.plist')): Record<string, unknown> {
  const parsed = parse(readFileSync(file, 'utf8'));
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(`${file} must hold a <dict> of Info.plist keys.`);
  }
  return parsed as Record<string, unknown>;
}

export function builderConfig(env: NodeJS.ProcessEnv = process.env): Configuration {
  const info = infoPlistAdditions();
  const signing = signingFromEnv(env);
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
    files: [
      'dist/**/*',
      '!dist/**/*.map',
      '!dist/app-cli/**',
      '!dist/cli/**',
      'icons/*Template.png',
      'icons/*Template@2x.png',
      'package.json',
    ],
    asar: true,
    // Read by the app (src/main/app-info.ts): whether this build was signed, for the settings' note.
    extraMetadata: { nixvm: { signed: signing.signed } },
    extraResources: [
      // The example flake the first-run checklist copies out: plain files, outside the asar.
      { from: 'examples/flake', to: 'examples/flake' },
      // The CLI and its launcher (built by scripts/app-cli.ts into dist/app-cli): Resources/cli.
      { from: 'dist/app-cli', to: 'cli' },
    ],
    // The launcher must stay executable whatever the copy did: it is what /usr/local/bin/nixvm links to.
    afterPack: async (ctx) => {
      chmodSync(path.join(ctx.appOutDir, 'NixVM.app', 'Contents', 'Resources', 'cli', 'nixvm'), 0o755);
    },
    // Electron's fuses, flipped in the binary at packaging time: the app cannot be given
    // NODE_OPTIONS / --inspect to run other code with the app's privileges (its Rosetta, network
    // and file access); it loads only its own app.asar, whose integrity is checked against the
    // hash in Info.plist; cookies are encrypted at rest. It can run as Node
    // (ELECTRON_RUN_AS_NODE): that is how the bundled `nixvm` runs without a Node of its own, and
    // it grants nothing a user could not do with any Node they install.
    electronFuses: {
      runAsNode: true,
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
      // null: no signing at all (not an ad-hoc signature, not a certificate found in the keychain).
      identity: signing.signed ? signing.identity : null,
      hardenedRuntime: true,
      notarize: signing.notarize,
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
