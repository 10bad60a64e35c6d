/** How a failed start is told (issue 16, Low: "exited while starting" gave no reason at all). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startFailure } from '../../src/core/vm/ending.ts';
import { runtimePaths } from '../../src/core/vm/runtime-paths.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function paths() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-ending-'));
  dirs.push(root);
  const p = runtimePaths(path.join(root, 'state'), path.join(root, 'logs'), 'web');
  fs.mkdirSync(p.dir, { recursive: true });
  fs.writeFileSync(path.join(p.dir, 'vfkit.log'), '');
  return p;
}

describe('startFailure', () => {
  it('gives a reason when vfkit died silently before its REST API answered', () => {
    const p = paths();
    const killed = startFailure('web', p, { code: null, signal: 'SIGKILL' }, false, ['[    0.1] booting', '']);
    expect(killed).toBe(
      `vfkit for VM "web" exited while starting (killed by SIGKILL: something outside nixvm killed it, or macOS ended it for lack of memory) before printing a reason; the console's last line was "[    0.1] booting"; see ${path.join(p.dir, 'vfkit.log')}.`,
    );
    const crashed = startFailure('web', p, { code: null, signal: 'SIGSEGV' }, false);
    expect(crashed).toContain('(killed by SIGSEGV: vfkit itself crashed) before printing a reason; see');
    expect(startFailure('web', p, { code: 3, signal: null }, false)).toContain(
      '(exit code 3) before printing a reason',
    );
  });

  it('still quotes vfkit when it did say why', () => {
    const p = paths();
    fs.writeFileSync(path.join(p.dir, 'vfkit.log'), 'Error: rosetta is not installed\n');
    expect(startFailure('web', p, { code: 1, signal: null }, false)).toMatch(
      /^vfkit refused to start VM "web": rosetta is not installed; install Rosetta/,
    );
  });
});
