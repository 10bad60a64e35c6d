/**
 * The CLI bundle bin/nixvm.js runs (scripts/cli-bundle.js): split so `nixvm ls` never loads the
 * agent, without ajv (conf gets no schema), and runnable by Node alone.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { cliBundleOptions } from '../../scripts/cli-bundle.js';
import pkg from '../../package.json' with { type: 'json' };

const out = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-bundle-'));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

describe('the CLI bundle', () => {
  it('runs, keeps the agent out of the entry chunk, and leaves ajv out', async () => {
    const r = await build({ ...cliBundleOptions(out), metafile: true, logLevel: 'silent' });
    const entry = path.join(out, 'nixvm.mjs');
    expect(execFileSync(process.execPath, [entry, '--version'], { encoding: 'utf8' }).trim()).toBe(pkg.version);
    const inputs = (file: string) => Object.keys(r.metafile!.outputs[path.relative(process.cwd(), file)]?.inputs ?? {});
    const entryInputs = inputs(entry);
    expect(entryInputs.some((i) => i.endsWith('src/cli/app.ts'))).toBe(true);
    expect(entryInputs.filter((i) => /src\/core\/|node_modules\/(conf|chokidar)\//.test(i))).toEqual([]);
    const all = Object.values(r.metafile!.outputs).flatMap((o) => Object.keys(o.inputs));
    expect(all.some((i) => i.endsWith('src/core/agent.ts'))).toBe(true);
    expect(all.filter((i) => i.includes('node_modules/ajv'))).toEqual([]);
  });
});
