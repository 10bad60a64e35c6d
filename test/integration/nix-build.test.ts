/** Builds against real nix: progress, logs, failures, cancel, coalescing. */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildProgress } from '../../src/api/types.ts';
import { BuildError, BuildManager, type BuildResult } from '../../src/core/nix/build.ts';
import { Nix } from '../../src/core/nix/nix.ts';
import { onRun, type RunRecord } from '../../src/host/runner.ts';
import { copyFixture, REPO_DIR, type FlakeCopy } from '../helpers/fixtures.ts';

const nix = Nix.locate();
let flake: FlakeCopy;
let logsDir: string;
const extra: FlakeCopy[] = [];

beforeAll(async () => {
  flake = await copyFixture('build', { salt: true });
  logsDir = mkdtempSync(path.join(os.tmpdir(), 'nixvm-logs-'));
});
afterAll(() => {
  flake.remove();
  for (const c of extra) c.remove();
  rmSync(logsDir, { recursive: true, force: true });
});

function manager(): BuildManager {
  return new BuildManager({ nix, logsDir, progressIntervalMs: 20 });
}

async function rejection(p: Promise<unknown>): Promise<BuildError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BuildError);
  return err as BuildError;
}

function expectBootable(outPath: string): void {
  for (const f of ['kernel', 'initrd', 'init']) expect(statSync(path.join(outPath, f)).isFile(), f).toBe(true);
}

describe('BuildManager', () => {
  it('builds a VM with live progress, a log on disk, and a bootable toplevel', async () => {
    const bm = manager();
    const progress: BuildProgress[] = [];
    const lines: string[] = [];
    const done: unknown[] = [];
    bm.on('progress', (vm, p) => vm === 'app' && progress.push(p));
    bm.on('log', (vm, l) => vm === 'app' && lines.push(l));
    bm.on('done', (_vm, r) => done.push(r));

    const building = bm.build({ vm: 'app', flake: flake.dir });
    expect(bm.state('app').status).toBe('building');
    const r = await building;

    expect(r.outPath).toMatch(/^\/nix\/store\/[0-9a-z]{32}-nixos-system-app$/);
    expect(r.drvPath).toMatch(/-nixos-system-app\.drv$/);
    expectBootable(r.outPath);

    // Three derivations (compile, link, toplevel): the stream said so while building.
    expect(progress.some((p) => p.buildsExpected === 3 && p.buildsDone < 3)).toBe(true);
    expect(progress.some((p) => p.currentDrv?.endsWith('-compile-step.drv') && p.buildsRunning === 1)).toBe(true);
    expect(progress.some((p) => p.lastLine === 'compiling one' || p.lastLine === 'compiling two')).toBe(true);
    const percents = progress.map((p) => p.percent);
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(progress.at(-1)).toMatchObject({ buildsDone: 3, buildsExpected: 3, percent: 100 });

    expect(lines).toContain('compile-step> compiling one');
    expect(lines.some((l) => l.startsWith('link-step> linking against /nix/store/'))).toBe(true);
    const log = readFileSync(r.logPath, 'utf8');
    expect(log).toContain('compile-step> compiling two');
    expect(log).toContain(`# built ${r.outPath}`);
    expect(r.logPath).toBe(path.join(logsDir, 'app', 'build.log'));

    expect(bm.state('app')).toMatchObject({ status: 'succeeded', error: null, logPath: r.logPath, again: false });
    expect(done).toEqual([r]);
  });

  it('names the failing derivation with the tail of its log, and keeps the previous build', async () => {
    const bm = manager();
    const good = await bm.build({ vm: 'app', flake: flake.dir });
    flake.write('break-app', '');
    try {
      const err = await rejection(bm.build({ vm: 'app', flake: flake.dir, previous: good }));
      expect(err.kind).toBe('build-failed');
      expect(err.message).toBe(
        'Building VM "app" failed in derivation broken-package (exit code 2); fix it and build again (the previous build stays in use).',
      );
      expect(err.drvPath).toMatch(/-broken-package\.drv$/);
      expect(err.logTail).toEqual([
        'configuring broken-package',
        'checking for foo.h... no',
        'error: foo.h: No such file or directory',
      ]);
      expect(err.detail).toContain('error: foo.h: No such file or directory');
      const st = bm.state('app');
      expect(st).toMatchObject({ status: 'failed', error: err.message });
      expect(st.detail).toContain(err.drvPath!);
      expect(existsSync(good.outPath)).toBe(true);
      // The full log of the failed build is on disk; the previous one was rotated, not lost.
      expect(readFileSync(st.logPath!, 'utf8')).toContain('broken-package> checking for foo.h... no');
      expect(readdirSync(path.join(logsDir, 'app'))).toEqual(expect.arrayContaining(['build.log', 'build.1.log']));
    } finally {
      rmSync(flake.file('break-app'));
    }
  });

  it("explains that a Linux builder is needed when nix cannot build for the VM's system", async () => {
    const err = await rejection(manager().build({ vm: 'foreign', flake: flake.dir }));
    expect(err.kind).toBe('required-system');
    expect(err.message).toMatch(
      /^Building VM "foreign" needs a builder for riscv64-linux, but this machine is \S+; set up a Linux builder/,
    );
    expect(err.message).toContain('nix.linux-builder.enable = true;');
    expect(err.drvPath).toMatch(/-nixos-system-foreign\.drv$/);
  });

  it('cancels a running build', async () => {
    const bm = manager();
    const started = new Promise<void>((res) =>
      bm.on('log', (vm, l) => vm === 'slow' && l.includes('starting a slow build') && res()),
    );
    const t0 = Date.now();
    const p = bm.build({ vm: 'slow', flake: flake.dir });
    await started;
    expect(bm.cancel('slow')).toBe(true);
    const err = await rejection(p);
    expect(err.kind).toBe('cancelled');
    expect(Date.now() - t0).toBeLessThan(20_000); // the builder sleeps 30 s
    expect(bm.state('slow').status).toBe('cancelled');
    expect(bm.cancel('slow')).toBe(false);
  });

  it('coalesces requests: three quick builds of one VM run nix twice', async () => {
    const bm = manager();
    const runs: RunRecord[] = [];
    const off = onRun((r) => r.argv.includes('build') && runs.push(r));
    const states: boolean[] = [];
    bm.on('state', (vm, s) => vm === 'app' && states.push(s.again));
    try {
      const p1 = bm.build({ vm: 'app', flake: flake.dir });
      const p2 = bm.build({ vm: 'app', flake: flake.dir });
      const p3 = bm.build({ vm: 'app', flake: flake.dir });
      expect(p3).toBe(p2);
      expect(bm.state('app').again).toBe(true);
      const results: BuildResult[] = await Promise.all([p1, p2, p3]);
      expect(runs).toHaveLength(2);
      expect(new Set(results.map((r) => r.outPath)).size).toBe(1);
      expect(states).toContain(true);
      expect(bm.state('app')).toMatchObject({ status: 'succeeded', again: false });
    } finally {
      off();
    }
  });

  it('does not run nix when the asked-for drvPath is the one already built', async () => {
    const bm = manager();
    const first = await bm.build({ vm: 'app', flake: flake.dir });
    const runs: RunRecord[] = [];
    const off = onRun((r) => runs.push(r));
    try {
      expect(await bm.build({ vm: 'app', flake: flake.dir, drvPath: first.drvPath, previous: first })).toEqual(first);
      expect(runs).toHaveLength(0);
    } finally {
      off();
    }
  });

  it('cancel also drops the follow-up build', async () => {
    const bm = manager();
    const started = new Promise<void>((res) =>
      bm.on('log', (vm, l) => vm === 'slow' && l.includes('starting a slow build') && res()),
    );
    const p1 = bm.build({ vm: 'slow', flake: flake.dir });
    const p2 = bm.build({ vm: 'slow', flake: flake.dir });
    await started;
    bm.cancel('slow');
    expect((await rejection(p1)).kind).toBe('cancelled');
    expect((await rejection(p2)).kind).toBe('cancelled');
    expect(bm.isBuilding('slow')).toBe(false);
  });

  // Issue 16 (Low): an emoji name was mangled on its way into the installable (UTF-16 halves
  // encoded one by one) and a name with `"` or `\\` could never build; the inventory now refuses
  // the `"` one (no attribute path can hold it) and the others build.
  it('builds VMs with an emoji, a backslash or URL specials in their names, and the inventory refuses a double quote', async () => {
    const odd = await copyFixture('odd-names');
    extra.push(odd);
    const { inventory } = await import('../../src/core/nix/inventory.ts');
    const inv = await inventory(nix, odd.dir);
    expect(inv.vms.map((v) => v.name).sort()).toEqual(['a b#c%d?e', 'a\\b', 'web.dev', '🙂'].sort());
    expect(inv.failures).toEqual([
      {
        name: 'say "hi"',
        error: `The VM named "say \\"hi\\"" cannot be built or run by nixvm: it contains a double quote, which a nix attribute path cannot hold; rename it in nixosConfigurations of the flake at ${odd.dir}.`,
        detail: '',
      },
    ]);
    const m = new BuildManager({ nix, logsDir, progressIntervalMs: 20 });
    for (const vm of ['🙂', 'a\\b', 'a b#c%d?e']) {
      const r = await m.build({ vm, flake: odd.dir });
      expectBootable(r.outPath);
    }
  });

  it('builds bootable toplevels from the seed fixture and the example flake', async () => {
    const bm = manager();
    for (const src of ['seed', path.join(REPO_DIR, 'examples', 'flake')]) {
      const f = await copyFixture(src);
      extra.push(f);
      const r = await bm.build({ vm: 'minimal-vm', flake: f.dir });
      expectBootable(r.outPath);
    }
  });
});
