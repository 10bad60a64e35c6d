/**
 * The architecture, enforced: every import in src/ must be an edge docs/architecture.json allows
 * (the engine never imports a face; nix and vm meet only in the core; electron stays in
 * src/main and src/preload, except type-only). The map is the documentation; this makes it true.
 */
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface Part {
  paths: string[];
  uses: string[];
  types?: string[];
  packages: string[];
  node: boolean;
}

/** Every module specifier a TypeScript file names: static imports and re-exports, `import()`. */
function importsOf(source: string): { spec: string; typeOnly: boolean }[] {
  // Comments could hold example imports; drop them (strings are kept: specifiers live there).
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const out: { spec: string; typeOnly: boolean }[] = [];
  const stmt = /^\s*(import|export)\s+(type\s+)?([^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm;
  for (const m of code.matchAll(stmt)) {
    if (m[1] === 'export' && !m[3]) continue; // `export const x = '…'` is no import
    out.push({ spec: m[4]!, typeOnly: Boolean(m[2]) });
  }
  for (const m of code.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push({ spec: m[1]!, typeOnly: false });
  return out;
}

function loadMap(): Record<string, Part> {
  return (
    JSON.parse(fs.readFileSync(path.join(REPO, 'docs', 'architecture.json'), 'utf8')) as { parts: Record<string, Part> }
  ).parts;
}

function partOf(parts: Record<string, Part>, rel: string): string | null {
  // The longest matching prefix wins (src/core/nix/ before src/core/).
  let best: { name: string; len: number } | null = null;
  for (const [name, p] of Object.entries(parts)) {
    for (const prefix of p.paths) {
      if (rel.startsWith(prefix) && (!best || prefix.length > best.len)) best = { name, len: prefix.length };
    }
  }
  return best?.name ?? null;
}

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) return walk(p);
    return /\.ts$/.test(d.name) && !/\.test\.ts$/.test(d.name) ? [p] : [];
  });
}

const BUILTINS = new Set(builtinModules);

/** Every edge of `srcDir` the map does not allow, as readable lines. */
function violations(srcDir: string, parts: Record<string, Part>): string[] {
  const bad: string[] = [];
  for (const file of walk(srcDir)) {
    const rel = path.relative(path.dirname(srcDir), file).split(path.sep).join('/');
    const from = partOf(parts, rel);
    if (!from) {
      bad.push(`${rel} belongs to no part of docs/architecture.json`);
      continue;
    }
    const p = parts[from]!;
    for (const { spec, typeOnly } of importsOf(fs.readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) {
        const target = path
          .relative(path.dirname(srcDir), path.resolve(path.dirname(file), spec))
          .split(path.sep)
          .join('/');
        if (!target.startsWith('src/')) continue; // package.json and the like
        const to = partOf(parts, target);
        const ok = to !== null && (p.uses.includes(to) || (typeOnly && (p.types ?? []).includes(to)));
        if (!ok) bad.push(`${rel} (${from}) imports ${target} (${to ?? 'no part'})${typeOnly ? ' [type]' : ''}`);
        continue;
      }
      const bare = spec.replace(/^node:/, '');
      if (spec.startsWith('node:') || BUILTINS.has(bare)) {
        if (!p.node) bad.push(`${rel} (${from}) loads Node's ${spec}, but ${from} must run in a browser too`);
        continue;
      }
      const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      if (p.packages.includes(pkg)) continue;
      if (typeOnly && (p.types ?? []).includes(pkg)) continue;
      bad.push(`${rel} (${from}) imports the package ${pkg}${typeOnly ? ' [type]' : ''}, which ${from} may not`);
    }
  }
  return bad;
}

describe('architecture', () => {
  it('every import in src/ is an edge docs/architecture.json allows', () => {
    expect(violations(path.join(REPO, 'src'), loadMap())).toEqual([]);
  });

  it('reads the import forms the code uses', () => {
    const src = [
      "import a from './a.ts';",
      "import type { B } from '../b.ts';",
      "import { c, type D } from 'pkg';",
      "export { e } from './e.ts';",
      "export type { F } from './f.ts';",
      "const g = await import('../g.ts');",
      "// import h from './h.ts';",
      "export const s = 'from x';",
    ].join('\n');
    expect(importsOf(src)).toEqual([
      { spec: './a.ts', typeOnly: false },
      { spec: '../b.ts', typeOnly: true },
      { spec: 'pkg', typeOnly: false },
      { spec: './e.ts', typeOnly: false },
      { spec: './f.ts', typeOnly: true },
      { spec: '../g.ts', typeOnly: false },
    ]);
  });

  it('catches the edges the map forbids: the engine importing a face, nix importing vm', () => {
    const dir = fs.mkdtempSync(path.join(REPO, 'node_modules', '.arch-'));
    try {
      const src = path.join(dir, 'src');
      fs.mkdirSync(path.join(src, 'core', 'nix'), { recursive: true });
      fs.mkdirSync(path.join(src, 'core', 'vm'), { recursive: true });
      fs.mkdirSync(path.join(src, 'control'), { recursive: true });
      fs.writeFileSync(path.join(src, 'control', 'server.ts'), 'export const x = 1;\n');
      fs.writeFileSync(path.join(src, 'core', 'vm', 'runtime-paths.ts'), 'export const y = 1;\n');
      fs.writeFileSync(path.join(src, 'core', 'agent.ts'), "import { x } from '../control/server.ts';\n");
      fs.writeFileSync(path.join(src, 'core', 'nix', 'build.ts'), "import { y } from '../vm/runtime-paths.ts';\n");
      expect(violations(src, loadMap())).toEqual([
        'src/core/agent.ts (core) imports src/control/server.ts (control)',
        'src/core/nix/build.ts (core/nix) imports src/core/vm/runtime-paths.ts (core/vm)',
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
