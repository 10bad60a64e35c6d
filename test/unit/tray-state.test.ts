import { describe, expect, it } from 'vitest';
import { trayView } from '../../src/app/tray-state.ts';
import { buildingBuild, flake as flakeSnap, snapshot, vm } from './snapshot-factory.ts';

describe('tray icon and title', () => {
  it('idle with nothing running: idle icon, no title', () => {
    expect(trayView(snapshot([vm()]))).toMatchObject({ icon: 'idle', title: '' });
  });

  it('running VMs: running icon, their count as the title, names in the tooltip', () => {
    const v = trayView(snapshot([vm({ state: 'running' }), vm({ name: 'db', state: 'starting' }), vm({ name: 'x' })]));
    expect(v).toMatchObject({ icon: 'running', title: '2' });
    expect(v.tooltip).toContain('2 running: web, db');
  });

  it("building: building icon and the slowest build's percentage, even with VMs running", () => {
    const v = trayView(
      snapshot([vm({ state: 'running', build: buildingBuild(80.6) }), vm({ name: 'db', build: buildingBuild(33.9) })]),
    );
    expect(v).toMatchObject({ icon: 'building', title: '33%' });
    expect(v.tooltip).toContain('Building web, db');
  });

  it('a crashed VM, failed build, flake error or agent problem shows the error icon', () => {
    const crashed = snapshot([
      vm({ state: 'crashed', exit: { code: 1, signal: null, lastLines: [], at: 1 } }),
      vm({ name: 'db', state: 'running' }),
    ]);
    expect(trayView(crashed)).toMatchObject({ icon: 'error', title: '1' });
    expect(trayView(crashed).tooltip).toContain('Crashed: web');
    const failed = snapshot([vm({ build: { ...vm().build, status: 'failed', error: 'x' } })]);
    expect(trayView(failed).icon).toBe('error');
    const flake = snapshot([], {
      flakes: [flakeSnap({ dir: '/f', evaluating: false, error: 'syntax error', warnings: [], lastEvalAt: 1 })],
    });
    expect(trayView(flake).icon).toBe('error');
    const problem = snapshot([]);
    problem.agent.problems.push('Could not find nix.');
    expect(trayView(problem)).toMatchObject({ icon: 'error' });
    expect(trayView(problem).tooltip).toContain('Could not find nix.');
  });

  it('without system notifications, the newest unseen notice is the title (error icon for errors) until seen', () => {
    const running = snapshot([vm({ state: 'running' })]);
    const crashed = {
      level: 'error' as const,
      title: 'db crashed with exit code 1 after 3 s',
      body: 'kernel panic',
      vm: 'db',
    };
    const built = { level: 'info' as const, title: 'web built', body: '/nix/store/x', vm: 'web' };
    const v = trayView(running, [crashed, built]);
    expect(v.icon).toBe('error');
    expect(v.title).toBe('db crashed with exit code 1…');
    expect(v.tooltip).toContain('db crashed with exit code 1 after 3 s: kernel panic');
    expect(trayView(running, [built])).toMatchObject({ icon: 'running', title: 'web built' });
    // Seen: back to the running count.
    expect(trayView(running, [])).toMatchObject({ icon: 'running', title: '1' });
    // A build in flight keeps its percentage.
    expect(trayView(snapshot([vm({ build: buildingBuild(40) })]), [built]).title).toBe('40%');
  });
});
