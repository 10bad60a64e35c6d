/**
 * The app's build products, checked without Electron: the sandboxed preload is CommonJS that
 * needs nothing but `electron` and exposes only the contract; main is one ESM bundle; the pages
 * carry a strict CSP and no inline script; packaging merges plist/Info.plist; icons are
 * reproducible template images.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { inflateSync } from 'node:zlib';
import { buildApp, type BuiltApp } from '../../scripts/build.ts';
import { builderConfig } from '../../scripts/electron-builder.config.ts';
import { writeIcons } from '../../scripts/make-icons.ts';
import { devDaemonCommand } from '../../scripts/start.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
let out: string;
let built: BuiltApp;

beforeAll(async () => {
  out = mkdtempSync(path.join(os.tmpdir(), 'nixvm-dist-'));
  built = await buildApp(out);
});
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('preload bundle', () => {
  it('is CommonJS that requires only electron and exposes only window.nixvm { call, ui, app, onEvent, console* }', async () => {
    const required: string[] = [];
    const exposed: Record<string, Record<string, unknown>> = {};
    const invokes: [string, unknown][] = [];
    let push: ((e: unknown, ev: unknown) => void) | null = null;
    const electron = {
      contextBridge: { exposeInMainWorld: (k: string, api: Record<string, unknown>) => (exposed[k] = api) },
      ipcRenderer: {
        invoke: async (ch: string, arg: unknown) => {
          invokes.push([ch, arg]);
          return { ok: true, value: 'answer' };
        },
        on: (ch: string, fn: (e: unknown, ev: unknown) => void) => {
          if (ch === 'nixvm:event') push = fn;
        },
      },
    };
    const code = readFileSync(built.preload, 'utf8');
    expect(code).not.toMatch(/^\s*(import|export)\s/m);
    const module = { exports: {} };
    vm.runInNewContext(code, {
      require: (m: string) => {
        required.push(m);
        if (m !== 'electron') throw new Error(`a sandboxed preload cannot require ${m}`);
        return electron;
      },
      module,
      exports: module.exports,
      console,
    });
    expect(required).toEqual(['electron']);
    expect(Object.keys(exposed)).toEqual(['nixvm']);
    const api = exposed.nixvm as Record<'call' | 'ui' | 'app' | 'onEvent', (...args: unknown[]) => unknown>;
    expect(Object.keys(api).sort()).toEqual([
      'app',
      'call',
      'consoleAttach',
      'consoleDetach',
      'consoleInput',
      'onEvent',
      'ui',
    ]);

    expect(await api.call('start', { vm: 'web' })).toEqual({ ok: true, value: 'answer' });
    await api.ui('copySshCommand', { vm: 'web' });
    await api.app('appInfo', {});
    const seen: unknown[] = [];
    api.onEvent((ev: unknown) => seen.push(ev), { logs: [{ vm: 'web', kind: 'console' }] });
    expect(invokes).toEqual([
      ['nixvm:call', { method: 'start', params: { vm: 'web' } }],
      ['nixvm:ui', { verb: 'copySshCommand', params: { vm: 'web' } }],
      ['nixvm:app', { verb: 'appInfo', params: {} }],
      ['nixvm:subscribe', { logs: [{ vm: 'web', kind: 'console' }] }],
    ]);
    // Log events reach only listeners that asked for that log.
    push!({}, { type: 'log', vm: 'db', kind: 'console', lines: ['x'] });
    push!({}, { type: 'log', vm: 'web', kind: 'console', lines: ['y'] });
    expect(seen).toEqual([{ type: 'log', vm: 'web', kind: 'console', lines: ['y'] }]);
  });
});

describe('main bundle', () => {
  it('is one ES module importing only electron and node built-ins', () => {
    const r = spawnSync(process.execPath, ['--check', built.main], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const code = readFileSync(built.main, 'utf8');
    const imports = [...code.matchAll(/^import\s.*?from\s+"([^"]+)"/gm)].map((m) => m[1]);
    expect(imports.filter((m) => m !== 'electron' && !m!.startsWith('node:'))).toEqual([]);
    expect(code).not.toMatch(/require\("menubar"\)/);
  });
});

describe('renderer pages', () => {
  it('each page has a strict CSP and loads scripts only from files', () => {
    const pages = readdirSync(built.rendererDir)
      .filter((f) => f.endsWith('.html'))
      .sort();
    expect(pages).toEqual(['index.html', 'log.html', 'settings.html']);
    for (const p of pages) {
      const html = readFileSync(path.join(built.rendererDir, p), 'utf8');
      const csp = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html)?.[1] ?? '';
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe');
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(html).not.toMatch(/\son[a-z]+="/);
    }
  });
});

describe('packaging config', () => {
  it('builds an arm64 dmg and zip with plist/Info.plist merged (tray only: LSUIElement)', () => {
    const c = builderConfig();
    const mac = c.mac!;
    expect(mac.extendInfo.LSUIElement).toBe(true);
    expect(c.appId).toBe('dev.nixvm.agent');
    expect(mac.target).toEqual([
      { target: 'dmg', arch: ['arm64'] },
      { target: 'zip', arch: ['arm64'] },
    ]);
    expect(c.files).toEqual(expect.arrayContaining(['dist/**/*', 'icons/*Template.png', 'icons/*Template@2x.png']));
    // The first-run checklist's "Use the Example" copies this out of the app; the CLI the app
    // carries (scripts/app-cli.ts builds dist/app-cli) goes to Contents/Resources/cli.
    expect(c.extraResources).toEqual([
      { from: 'examples/flake', to: 'examples/flake' },
      { from: 'dist/app-cli', to: 'cli' },
    ]);
    // Not twice: the CLI builds stay out of the asar.
    expect(c.files).toEqual(expect.arrayContaining(['!dist/app-cli/**', '!dist/cli/**']));
    expect(c.directories?.buildResources).not.toBe('icons');
  });

  // Issue 16 (Electron): without fuses the packaged app takes NODE_OPTIONS/--inspect and loads an
  // unchecked app folder. Issue 14: it runs as Node (ELECTRON_RUN_AS_NODE) for its bundled nixvm.
  it("flips Electron's fuses: run-as-node for the bundled CLI, no NODE_OPTIONS or --inspect, only the checked app.asar, encrypted cookies", () => {
    expect(builderConfig().electronFuses).toEqual({
      runAsNode: true,
      enableCookieEncryption: true,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      enableEmbeddedAsarIntegrityValidation: true,
      onlyLoadAppFromAsar: true,
    });
    expect(builderConfig().asar).toBe(true);
  });

  it('is unsigned unless a certificate is given; notarises only when Apple credentials come with it', () => {
    const mac = (env: NodeJS.ProcessEnv) => builderConfig(env).mac!;
    const meta = (env: NodeJS.ProcessEnv) => builderConfig(env).extraMetadata as { nixvm: { signed: boolean } };
    // null, not undefined: electron-builder would otherwise sign with any identity in the keychain.
    expect(mac({})).toMatchObject({ identity: null, notarize: false, hardenedRuntime: true });
    expect(meta({}).nixvm.signed).toBe(false);
    const cert = { CSC_LINK: '/secrets/developer-id.p12', CSC_KEY_PASSWORD: 'pw' };
    expect(mac(cert)).toMatchObject({ identity: undefined, notarize: false, hardenedRuntime: true });
    expect(meta(cert).nixvm.signed).toBe(true);
    const apple = { APPLE_ID: 'me@example.com', APPLE_APP_SPECIFIC_PASSWORD: 'abcd-efgh', APPLE_TEAM_ID: 'TEAM123456' };
    expect(mac({ ...cert, ...apple }).notarize).toBe(true);
    expect(mac({ CSC_NAME: 'Developer ID Application: Me (TEAM123456)', ...apple })).toMatchObject({
      identity: 'Developer ID Application: Me (TEAM123456)',
      notarize: true,
    });
    // Credentials without a certificate notarise nothing (there would be no signature to staple to).
    expect(mac(apple).notarize).toBe(false);
    expect(mac({ ...cert, APPLE_ID: 'me@example.com' }).notarize).toBe(false);
  });
});

/** Width, height, colour type and RGBA pixels of a non-interlaced 8-bit RGBA PNG. */
function decodePng(buf: Buffer): { w: number; h: number; type: number; px: Buffer } {
  expect(buf.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  let off = 8;
  let w = 0,
    h = 0,
    type = 0;
  const idat: Buffer[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const kind = buf.toString('ascii', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (kind === 'IHDR') {
      w = data.readUInt32BE(0);
      h = data.readUInt32BE(4);
      type = data[9]!;
    } else if (kind === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const px = Buffer.alloc(w * h * 4);
  for (let y = 0; y < h; y++) raw.copy(px, y * w * 4, y * (w * 4 + 1) + 1, (y + 1) * (w * 4 + 1));
  return { w, h, type, px };
}

describe('tray icons', () => {
  it('are black-on-transparent 22 px and 44 px template images for each state, as the script draws them', () => {
    const fresh = mkdtempSync(path.join(os.tmpdir(), 'nixvm-icons-'));
    try {
      writeIcons(fresh, { app: false });
      for (const state of ['idle', 'running', 'building', 'error']) {
        for (const [suffix, size] of [
          ['', 22],
          ['@2x', 44],
        ] as const) {
          const name = `${state}Template${suffix}.png`;
          const committed = readFileSync(path.join(REPO, 'icons', name));
          expect(
            committed.equals(readFileSync(path.join(fresh, name))),
            `${name} is up to date (run scripts/make-icons.ts)`,
          ).toBe(true);
          const { w, h, type, px } = decodePng(committed);
          expect([w, h, type]).toEqual([size, size, 6]);
          let opaque = 0;
          for (let i = 0; i < px.length; i += 4) {
            expect(px[i]! | px[i + 1]! | px[i + 2]!).toBe(0);
            if (px[i + 3]! > 128) opaque++;
          }
          // Something drawn, mostly transparent.
          expect(opaque).toBeGreaterThan(size * size * 0.1);
          expect(opaque).toBeLessThan(size * size * 0.7);
        }
      }
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });
});

describe('npm start off a Mac', () => {
  it('runs the headless agent on examples/flake with the vfkit simulator in a dev state dir', () => {
    const { argv, env } = devDaemonCommand({ PATH: '/bin' });
    expect(argv.slice(1)).toEqual([
      path.join(REPO, 'bin/nixvm.js'),
      'daemon',
      '--flake',
      path.join(REPO, 'examples/flake'),
    ]);
    expect(env.NIXVM_VFKIT).toBe(path.join(REPO, 'test/vfkit-sim/vfkit'));
    expect(env.NIXVM_STATE_DIR).toMatch(/nixvm-dev-\d+$/);
    expect(devDaemonCommand({ NIXVM_STATE_DIR: '/x' }).env.NIXVM_STATE_DIR).toBe('/x');
  });
});
