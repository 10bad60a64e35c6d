/**
 * Electron cannot run here, so this proves the next best thing about NixVM.app's main bundle:
 * built exactly as `npm start` builds it, it evaluates in Node (every import resolves, `menubar`'s
 * CommonJS require('electron') works through the bundle's createRequire banner) and reaches its
 * first Electron call. 'electron' is replaced by a recorder for both import and require; the
 * recorder declines the single-instance lock, so the bundle must take its "already running" path
 * and quit without opening anything.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { build } from 'esbuild';
import { mainBuildOptions } from '../../scripts/build.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-bundle-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Every name src/main imports from electron, so the recorder exports each one. */
function electronNames(): string[] {
  const names = new Set<string>();
  for (const f of fs.readdirSync(path.join(REPO, 'src/main'))) {
    const text = fs.readFileSync(path.join(REPO, 'src/main', f), 'utf8');
    for (const m of text.matchAll(/import \{([^}]+)\} from 'electron'/g)) {
      for (const part of m[1]!.split(',')) {
        const name = part.trim();
        if (name && !name.startsWith('type ')) names.add(name);
      }
    }
  }
  return [...names].sort();
}

it('the main bundle evaluates and quits at once when another instance holds the lock', async () => {
  const out = path.join(dir, 'main.js');
  // Exactly how scripts/build.ts (npm start) bundles the main process.
  await build({ ...mainBuildOptions(out), sourcemap: false, logLevel: 'silent' });
  const names = electronNames();
  expect(names).toContain('app');
  const stub = path.join(dir, 'electron-stub.cjs');
  fs.writeFileSync(
    stub,
    [
      'const calls = [];',
      "process.on('exit', () => process.stdout.write(JSON.stringify(calls)));",
      'const thing = (name) => new Proxy(function () {}, {',
      "  get: (_t, k) => (k === 'then' ? undefined : thing(`${name}.${String(k)}`)),",
      '  apply: () => { calls.push(name); return thing(`${name}()`); },',
      '  construct: () => { calls.push(`new ${name}`); return thing(`${name}#`); },',
      '});',
      "const app = thing('app');",
      "exports.app = new Proxy(app, { get: (t, k) => k === 'requestSingleInstanceLock' ? () => { calls.push('app.requestSingleInstanceLock'); return false; } : k === 'quit' ? () => calls.push('app.quit') : t[k] });",
      ...names.filter((n) => n !== 'app').map((n) => `exports.${n} = thing(${JSON.stringify(n)});`),
    ].join('\n'),
  );
  const hooks = path.join(dir, 'hooks.mjs');
  fs.writeFileSync(
    hooks,
    `import { registerHooks } from 'node:module';
registerHooks({
  resolve(specifier, context, next) {
    if (specifier === 'electron') return { url: ${JSON.stringify(pathToFileURL(stub).href)}, format: 'commonjs', shortCircuit: true };
    return next(specifier, context);
  },
});
`,
  );
  const r = spawnSync(process.execPath, ['--import', pathToFileURL(hooks).href, out], {
    encoding: 'utf8',
    timeout: 20_000,
    cwd: REPO,
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(JSON.parse(r.stdout)).toEqual(['app.requestSingleInstanceLock', 'app.quit']);
});
