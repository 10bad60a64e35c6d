/**
 * The nix messages nixvm translates, made live by the nix this suite runs on (CI runs it on Nix
 * 2.8, 2.26 and 2.34): each case's flake, the argv nixvm runs, the sentence the user reads. The
 * remote-builder cases run a real sshd on a loopback address, which needs root: without it they
 * skip, saying so.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Nix } from '../../src/core/nix/nix.ts';
import { rootNeeded } from '../helpers/loopback-builder.ts';
import { CASES, CURRENT_SYSTEM, materialise, runCase, translate } from '../helpers/nix-messages.ts';

const nix = Nix.locate();
const version = /(\d+\.\d+(?:\.\d+)?)/.exec(execFileSync(nix.bin, ['--version'], { encoding: 'utf8' }))![1]!;
const root = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'nixvm-messages-')));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const noRoot = rootNeeded();
if (noRoot) console.log(`nix-messages.test.ts: the remote-builder cases skip: ${noRoot}; run the tests as root`);

describe('nix messages from this nix', () => {
  for (const c of CASES) {
    it(c.name, async (ctx) => {
      if (c.builder && noRoot) ctx.skip(noRoot);
      const dir = path.join(root, c.dirName ?? c.name);
      await materialise(c, dir);
      const r = await runCase(nix, c, dir);
      const want = c.expected(dir, CURRENT_SYSTEM, version);
      if (c.mayPass && r.exitCode === 0) {
        expect(r.stdout, 'nix accepted it: the evaluation must have produced the inventory').toMatch(/^\{/);
        return;
      }
      const got = translate(c, dir, r.stderr, r.exitCode === 0 ? 0 : 1);
      expect(got, `nix wrote:\n${r.stderr.slice(-3000)}`).toEqual(want);
    });
  }
});
