/**
 * What the FlakeSet says about each flake, with real nix: evaluating (since when), nix missing
 * (its own sentence, names kept as written), a folder that is not there (the fix depends on where
 * the path came from), a failure of a known kind, and the configurations it hides.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { FlakeSnapshot } from '../../src/api/types.ts';
import { FlakeSet } from '../../src/core/flake-set.ts';
import type { InventoryUpdate } from '../../src/core/nix/watcher.ts';
import { BACKGROUND_NICE } from '../../src/core/nix/inventory.ts';
import { Nix } from '../../src/core/nix/nix.ts';
import { recentRuns, run } from '../../src/host/runner.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { settles, waitFor } from '../helpers/wait.ts';

const nix = Nix.locate();
const sets: FlakeSet[] = [];
const copies: FlakeCopy[] = [];
afterAll(async () => {
  await Promise.all(sets.map((s) => s.close()));
  for (const c of copies) c.remove();
});

function flakeSet(log: (line: string) => void = () => {}): FlakeSet {
  const s = new FlakeSet({ debounceMs: 50, log });
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

describe('background re-evaluations', () => {
  it('run under nice, one nix at a time per flake, edits during one going into a single next one', async () => {
    // The broken fixture plus a VM that aborts: the batched call fails, so each evaluation is
    // several nix calls (the VM names, then every VM alone), which could run side by side.
    const f = await fixture('broken');
    f.write('extra.nix', '{ mkVm }: { aborts = mkVm "aborts" ./hosts/aborts.nix; }\n');
    f.write('hosts/aborts.nix', '{ virtualisation.cores = 1; services.web.listen = abort "gave up"; }\n');
    // nix behind a wrapper that notes each call's start (with its niceness) and end, and holds
    // every call while the gate file is missing.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-nice-'));
    const log = path.join(dir, 'calls');
    const gate = path.join(dir, 'gate');
    const wrapper = path.join(dir, 'nix');
    fs.writeFileSync(gate, '');
    fs.writeFileSync(
      wrapper,
      [
        '#!/bin/sh',
        `echo "start $$ $(nice)" >> '${log}'`,
        `while [ ! -e '${gate}' ]; do sleep 0.02; done`,
        `'${nix.bin}' "$@"; rc=$?`,
        `echo "end $$" >> '${log}'`,
        'exit $rc',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const calls = () =>
      (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '')
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' '));
    const said: string[] = [];
    const s = flakeSet((line) => said.push(line));
    const updates: InventoryUpdate[] = [];
    s.on('inventory', (u) => updates.push(u));
    const base = Number((await run(['nice'])).stdout.trim());
    try {
      await s.setNix(new Nix(wrapper), null);
      s.sync([f.dir]);
      await settles(s.ready(), { what: 'the first evaluation' });
      // The first evaluation is for someone waiting: at the agent's own priority.
      const first = calls();
      expect(first.filter((c) => c[0] === 'start').map((c) => Number(c[2]))).toEqual(
        first.filter((c) => c[0] === 'start').map(() => base),
      );

      // Two quick edits: the first one's evaluation is held in its first nix call while the
      // second lands and its debounce runs out.
      fs.rmSync(gate);
      const since = calls().length;
      const startedAt = Date.now();
      f.write('hosts/good.nix', `${fs.readFileSync(f.file('hosts/good.nix'), 'utf8')}# one\n`);
      await waitFor(
        () =>
          calls()
            .slice(since)
            .some((c) => c[0] === 'start'),
        {
          what: 'the evaluation after the first edit to call nix',
        },
      );
      f.write('hosts/also-good.nix', `${fs.readFileSync(f.file('hosts/also-good.nix'), 'utf8')}# two\n`);
      await waitFor(() => said.some((l) => l.includes('changed while it evaluates')), {
        what: 'the second edit to be seen while the first evaluation runs',
        detail: () => `The FlakeSet said: ${JSON.stringify(said)}`,
      });
      expect(calls().slice(since), 'nix calls while the first one is held').toHaveLength(1);
      fs.writeFileSync(gate, '');
      await waitFor(() => updates.find((u) => u.paths.includes('hosts/also-good.nix')), {
        what: 'the evaluation that includes the second edit',
        detail: () => `Updates: ${JSON.stringify(updates.map((u) => u.paths))}`,
      });

      // Two evaluations for the two edits, each of the names call and every VM alone …
      expect(updates.map((u) => u.paths)).toEqual([['hosts/good.nix'], ['hosts/also-good.nix']]);
      const background = calls().slice(since);
      const starts = background.filter((c) => c[0] === 'start');
      expect(starts.length, 'nix calls of the two evaluations').toBeGreaterThanOrEqual(2 * 6);
      // … every one of them nicer than the agent, …
      const nicer = Math.min(19, base + BACKGROUND_NICE);
      expect(
        starts.map((c) => Number(c[2])),
        'the niceness of each background nix',
      ).toEqual(starts.map(() => nicer));
      // … never two at once: each ends before the next starts.
      let inFlight = 0;
      for (const [what, pid] of background) {
        inFlight += what === 'start' ? 1 : -1;
        expect(inFlight, `nix calls in flight at ${what} of pid ${pid}`).toBeLessThanOrEqual(1);
      }
      expect(inFlight).toBe(0);
      // The runner ran them as `nice -n 10 <nix> …` (its argv, as recorded).
      const argvs = recentRuns()
        .filter((r) => r.startedAt >= startedAt && r.argv.includes(wrapper))
        .map((r) => r.argv.slice(0, 4));
      expect(argvs.length).toBe(starts.length);
      for (const a of argvs)
        expect([path.basename(a[0]!), ...a.slice(1)]).toEqual(['nice', '-n', String(BACKGROUND_NICE), wrapper]);
    } finally {
      fs.writeFileSync(gate, '');
      await s.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
