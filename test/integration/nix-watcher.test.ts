/** The flake watcher with real chokidar, real files and real nix. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FlakeError, inventory, type InventoryResult } from '../../src/core/nix/inventory.ts';
import { Nix } from '../../src/core/nix/nix.ts';
import { FlakeWatcher, type InventoryUpdate } from '../../src/core/nix/watcher.ts';
import { run } from '../../src/host/runner.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { settles, waitFor } from '../helpers/wait.ts';

const nix = Nix.locate();
const DEBOUNCE = 150;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Harness {
  flake: FlakeCopy;
  watcher: FlakeWatcher;
  updates: InventoryUpdate[];
  failures: unknown[];
  warnings: string[][];
  evals: () => number;
  /** Resolves with the next 'inventory' or 'failed' event. */
  next: () => Promise<InventoryUpdate | { failed: unknown }>;
  /** How often the debounce has fired ('settled' events). */
  fires: () => number;
  /** Waits until the debounce has fired `n` times in all. */
  debounced: (n: number) => Promise<boolean>;
  /**
   * Saves a file nothing else touches and resolves with the evaluation it leads to: every change
   * made before it has been seen by then (the watch reports changes in order), so what happened
   * up to here is complete.
   */
  sentinel: () => Promise<InventoryUpdate>;
}

async function watched(
  fixture: string,
  opts: {
    git?: boolean;
    evaluate?: (f: FlakeCopy, signal: AbortSignal) => Promise<InventoryResult>;
    before?: (f: FlakeCopy) => void;
  } = {},
): Promise<Harness> {
  const flake = await copyFixture(fixture, { git: opts.git });
  cleanups.push(() => flake.remove());
  opts.before?.(flake);
  const evaluate = opts.evaluate ?? ((f, signal) => inventory(nix, f.dir, { signal }));
  const watcher = new FlakeWatcher({
    flakeDir: flake.dir,
    debounceMs: DEBOUNCE,
    evaluate: (signal) => evaluate(flake, signal),
  });
  cleanups.push(() => watcher.close());
  let fires = 0;
  watcher.on('settled', () => fires++);
  let sentinels = 0;
  const h: Harness = {
    flake,
    watcher,
    updates: [],
    failures: [],
    warnings: [],
    evals: () => watcher.evaluationCount,
    next: () =>
      settles(
        new Promise((resolve) => {
          watcher.once('inventory', (u) => resolve(u));
          watcher.once('failed', (e) => resolve({ failed: e }));
        }),
        { what: 'the next evaluation' },
      ),
    fires: () => fires,
    debounced: (n) =>
      waitFor(() => fires >= n, { what: `the debounce to fire ${n} times`, detail: () => `It fired ${fires}.` }),
    sentinel: async () => {
      const name = `SENTINEL-${++sentinels}`;
      flake.write(name, 'x');
      return waitFor(() => h.updates.find((u) => u.paths.includes(name)), {
        what: `the evaluation after ${name}`,
        detail: () => `Updates: ${JSON.stringify(h.updates.map((u) => u.paths))}`,
      });
    },
  };
  watcher.on('inventory', (u) => h.updates.push(u));
  watcher.on('failed', (e) => h.failures.push(e));
  watcher.on('warning', (w) => h.warnings.push(w));
  await watcher.start();
  return h;
}

function edit(f: FlakeCopy, rel: string, fn: (s: string) => string): void {
  f.write(rel, fn(readFileSync(f.file(rel), 'utf8')));
}

describe('FlakeWatcher', () => {
  it('evaluates once at start and reports every VM as changed', async () => {
    const h = await watched('seed');
    expect(h.updates).toHaveLength(1);
    expect(h.updates[0]).toMatchObject({ first: true, changed: ['builder-vm', 'minimal-vm'], paths: [] });
    expect(h.watcher.current?.vms).toHaveLength(2);
  });

  it('turns a burst of saves into exactly one re-evaluation', async () => {
    const h = await watched('seed');
    const next = h.next();
    for (let i = 0; i < 6; i++) edit(h.flake, 'hosts/minimal-vm.nix', (s) => `${s}# save ${i}\n`);
    await next;
    await h.sentinel();
    expect(h.updates.map((u) => u.paths)).toEqual([[], ['hosts/minimal-vm.nix'], ['SENTINEL-1']]);
    expect(h.evals()).toBe(3);
  });

  it('marks nothing after a comment-only edit', async () => {
    const h = await watched('seed');
    const next = h.next();
    edit(h.flake, 'hosts/builder-vm.nix', (s) => s.replace('# Like the seed', '# Still like the seed'));
    const u = (await next) as InventoryUpdate;
    expect(u.changed).toEqual([]);
    expect(u.respecced).toEqual([]);
  });

  it('marks exactly the VM whose configuration changed', async () => {
    const h = await watched('seed');
    const before = h.watcher.current!.vms.find((v) => v.name === 'minimal-vm')!.drvPath;
    const next = h.next();
    edit(h.flake, 'hosts/minimal-vm.nix', (s) =>
      s.replace('services.getty.autologinUser = "root";', 'services.getty.autologinUser = "alice";'),
    );
    const u = (await next) as InventoryUpdate;
    expect(u.changed).toEqual(['minimal-vm']);
    expect(u.result.vms.find((v) => v.name === 'minimal-vm')!.drvPath).not.toBe(before);

    // Run settings change the vfkit command, not the closure: reported separately.
    const next2 = h.next();
    edit(h.flake, 'hosts/builder-vm.nix', (s) => s.replace('cores = 8;', 'cores = 6;'));
    const u2 = (await next2) as InventoryUpdate;
    expect(u2.changed).toEqual([]);
    expect(u2.respecced).toEqual(['builder-vm']);
  });

  it('runs exactly one more evaluation when files change during one', async () => {
    let calls = 0;
    let release: (() => void) | null = null;
    const h = await watched('seed', {
      evaluate: async (f, signal) => {
        calls++;
        // Hold the second evaluation until the test has changed files under it.
        if (calls === 2) await new Promise<void>((r) => (release = r));
        return inventory(nix, f.dir, { signal });
      },
    });
    const evaluating = new Promise<void>((r) => h.watcher.once('evaluating', () => r()));
    edit(h.flake, 'hosts/minimal-vm.nix', (s) => `${s}# one\n`);
    await evaluating;
    expect(h.watcher.evaluating).toBe(true);
    const fired = h.fires();
    edit(h.flake, 'hosts/minimal-vm.nix', (s) => `${s}# two\n`);
    await h.debounced(fired + 1);
    edit(h.flake, 'hosts/builder-vm.nix', (s) => `${s}# three\n`);
    await h.debounced(fired + 2);
    expect(calls).toBe(2); // still held: nothing runs alongside it
    const after = h.next().then(() => h.next());
    (release as unknown as () => void)();
    await after;
    expect(calls).toBe(3);
    expect(h.updates.at(-1)?.paths).toEqual(['hosts/builder-vm.nix', 'hosts/minimal-vm.nix']);
    // And nothing more came of it: the next evaluation is the sentinel's.
    await h.sentinel();
    expect(calls).toBe(4);
    expect(h.updates.slice(-2).map((u) => u.paths)).toEqual([
      ['hosts/builder-vm.nix', 'hosts/minimal-vm.nix'],
      ['SENTINEL-1'],
    ]);
  });

  it('reports a broken flake and recovers when it is fixed', async () => {
    const h = await watched('seed');
    const broken = h.next();
    edit(h.flake, 'flake.nix', (s) =>
      s.replace('minimal-vm = mkVm ./hosts/minimal-vm.nix;', 'minimal-vm = mkVm ./hosts/minimal-vm.nix'),
    );
    const r = (await broken) as { failed: unknown };
    expect(r.failed).toBeInstanceOf(FlakeError);
    expect((r.failed as FlakeError).kind).toBe('syntax');
    expect(h.watcher.current?.vms).toHaveLength(2); // the last good inventory stays
    const fixed = h.next();
    edit(h.flake, 'flake.nix', (s) =>
      s.replace('minimal-vm = mkVm ./hosts/minimal-vm.nix', 'minimal-vm = mkVm ./hosts/minimal-vm.nix;'),
    );
    const u = (await fixed) as InventoryUpdate;
    expect(u.changed).toEqual([]);
    expect(h.watcher.error).toBeNull();
  });

  it('names a new .nix file git does not track, before and after nix trips over it', async () => {
    const h = await watched('seed', { git: true });
    const next = h.next();
    h.flake.write('hosts/extra-vm.nix', '{ networking.hostName = "extra-vm"; }\n');
    edit(h.flake, 'flake.nix', (s) =>
      s.replace(
        'builder-vm = mkVm ./hosts/builder-vm.nix;',
        'builder-vm = mkVm ./hosts/builder-vm.nix;\n        extra-vm = mkVm ./hosts/extra-vm.nix;',
      ),
    );
    const u = (await next) as InventoryUpdate;
    const advice = `hosts/extra-vm.nix is not tracked by git, so nix cannot see it; run \`git add -N hosts/extra-vm.nix\` in ${h.flake.dir}.`;
    expect(h.warnings.at(-1)).toEqual([advice]);
    // Said once, by the 'warning' event: not repeated in the inventory's own warnings.
    expect(u.result.warnings).not.toContain(advice);
    expect(u.result.failures).toEqual([expect.objectContaining({ name: 'extra-vm', error: advice })]);
    expect(u.result.vms.map((v) => v.name)).toEqual(['builder-vm', 'minimal-vm']);

    // Once the user follows the advice (which touches nothing but .git/index), the watcher
    // re-evaluates by itself: the warning goes away and the VM loads.
    const fixed = h.next();
    await run(['git', 'add', '-N', 'hosts/extra-vm.nix'], { cwd: h.flake.dir });
    const u2 = (await fixed) as InventoryUpdate;
    expect(u2.paths, 'the re-evaluation was triggered by the git index').toEqual(['.git/index']);
    expect(h.warnings.at(-1)).toEqual([]);
    expect(u2.result.failures).toEqual([]);
    expect(u2.result.vms.map((v) => v.name)).toEqual(['builder-vm', 'extra-vm', 'minimal-vm']);
  });

  it('sends no git warnings for a flake outside git', async () => {
    const h = await watched('seed');
    h.flake.write('hosts/extra-vm.nix', '{ }\n');
    await h.watcher.refresh();
    expect(h.warnings).toEqual([]);
  });

  it('ignores .git, result links and share directories without walking them, and stops on close', async () => {
    const h = await watched('seed', {
      git: true,
      before: (f) => {
        f.write('node_modules/some-package/lib/deep/index.js', '');
        f.write('result/kernel', '');
      },
    });
    const dirs = h.watcher.watchedDirs();
    expect(dirs).toContain(path.join(h.flake.dir, 'hosts'));
    // .git itself is watched for its index, none of its subdirectories.
    expect(dirs.filter((d) => /\/(\.git\/|node_modules|result)/.test(d))).toEqual([]);
    h.flake.write('.git/info/nixvm-test', 'x');
    h.flake.write('.git/HEAD', 'ref: refs/heads/other\n');
    h.flake.write('result-dev', 'not a real link');
    h.flake.write('persistent/written-by-the-guest', 'x');
    // The next evaluation is the sentinel's, and none of the ignored paths are in it.
    expect((await h.sentinel()).paths).toEqual(['SENTINEL-1']);
    expect(h.evals()).toBe(2);
    const fired = h.fires();
    const current = h.watcher.current!;
    await h.watcher.close();
    // A watcher still open on the flake (slower to fire than the closed one would be) sees the
    // edit; the closed one must not.
    const witness = new FlakeWatcher({
      flakeDir: h.flake.dir,
      debounceMs: DEBOUNCE * 2,
      evaluate: async () => current,
    });
    cleanups.push(() => witness.close());
    await witness.start();
    const seen = new Promise<InventoryUpdate>((r) => witness.once('inventory', r));
    edit(h.flake, 'hosts/minimal-vm.nix', (s) => `${s}# after close\n`);
    expect((await settles(seen, { what: 'the open watcher to see the edit' })).paths).toEqual(['hosts/minimal-vm.nix']);
    expect(h.evals()).toBe(2);
    expect(h.fires()).toBe(fired);
  });
});
