/**
 * What the FlakeSet says about each flake, with real nix: evaluating (since when), nix missing
 * (its own sentence, names kept as written), a folder that is not there (the fix depends on where
 * the path came from), a failure of a known kind, and the configurations it hides.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { FlakeSnapshot } from '../../src/api/types.ts';
import { FlakeSet } from '../../src/core/flake-set.ts';
import { Nix } from '../../src/core/nix/nix.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { settles } from '../helpers/wait.ts';

const nix = Nix.locate();
const sets: FlakeSet[] = [];
const copies: FlakeCopy[] = [];
afterAll(async () => {
  await Promise.all(sets.map((s) => s.close()));
  for (const c of copies) c.remove();
});

function flakeSet(): FlakeSet {
  const s = new FlakeSet({ debounceMs: 50, log: () => {} });
  sets.push(s);
  return s;
}

async function fixture(name: string): Promise<FlakeCopy> {
  const c = await copyFixture(name);
  copies.push(c);
  return c;
}

const one = (s: FlakeSet, dir: string): FlakeSnapshot => s.snapshots().find((f) => f.dir === dir)!;

describe('FlakeSet states', () => {
  it('is evaluating from the moment it is added until nix answers, then ok with its hidden configurations', async () => {
    const f = await fixture('mixed');
    const s = flakeSet();
    await s.setNix(nix, null);
    const before = Date.now();
    s.sync([f.dir]);
    const first = one(s, f.dir);
    expect(first).toMatchObject({ state: 'evaluating', error: null, source: 'settings' });
    expect(first.evaluatingSince).toBeGreaterThanOrEqual(before);
    await settles(s.ready(), { what: 'the first evaluation' });
    expect(one(s, f.dir)).toMatchObject({
      state: 'ok',
      evaluating: false,
      evaluatingSince: null,
      hidden: ['laptop', 'server'],
    });
    expect([...s.defined().keys()].sort()).toEqual(['dev', 'disk-vm', 'grub-vm']);
  });

  it('re-evaluates when the include/exclude filter of a flake changes', async () => {
    const f = await fixture('mixed');
    const s = flakeSet();
    await s.setNix(nix, null);
    s.sync([f.dir]);
    await settles(s.ready(), { what: 'the first evaluation' });
    const changed = new Promise<void>((resolve) =>
      s.on('changed', () => {
        if (one(s, f.dir).hidden.includes('dev')) resolve();
      }),
    );
    s.sync([{ dir: f.dir, filter: { exclude: ['dev'] } }]);
    await settles(changed, { what: 'dev to be hidden' });
    expect([...s.defined().keys()].sort()).toEqual(['disk-vm', 'grub-vm']);
  });

  it('says nix is missing in its own words, keeping the name of an environment variable as written', async () => {
    const s = flakeSet();
    await s.setNix(null, 'NIXVM_NIX, /nonexistent, is not an executable file; fix or clear it.');
    s.sync(['/some/flake']);
    expect(one(s, '/some/flake')).toMatchObject({
      state: 'nix-missing',
      error: '/some/flake cannot be evaluated: NIXVM_NIX, /nonexistent, is not an executable file; fix or clear it.',
    });
    await s.setNix(null, 'Could not find nix in your PATH or the Nix profiles; install Nix.');
    expect(one(s, '/some/flake').error).toBe(
      '/some/flake cannot be evaluated: could not find nix in your PATH or the Nix profiles; install Nix.',
    );
  });

  it('gives a missing folder the fix for where its path came from', async () => {
    const s = flakeSet();
    await s.setNix(nix, null);
    s.sync([
      { dir: '/no/such/from-settings', source: 'settings' },
      { dir: '/no/such/from-cli', source: 'command-line' },
    ]);
    expect(one(s, '/no/such/from-cli')).toMatchObject({
      state: 'no-such-dir',
      source: 'command-line',
      error: 'The flake folder /no/such/from-cli does not exist; check the path given to `nixvm daemon --flake`.',
    });
    expect(one(s, '/no/such/from-settings').error).toBe(
      'The flake folder /no/such/from-settings does not exist; fix the path in Settings, or remove it with `nixvm flake remove /no/such/from-settings`.',
    );
  });

  it('says what kind of failure nix had', async () => {
    const f = await fixture('syntax');
    const s = flakeSet();
    await s.setNix(nix, null);
    s.sync([path.resolve(f.dir)]);
    await settles(s.ready(), { what: 'the evaluation' });
    expect(one(s, f.dir)).toMatchObject({ state: 'failed', errorKind: 'syntax' });
  });
});
