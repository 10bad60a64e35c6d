import { describe, expect, it } from 'vitest';
import { trayView } from '../../src/main/tray-state.ts';
import { buildingBuild, snapshot, vm } from './snapshot-factory.ts';

describe('tray icon and title', () => {
  it('idle with nothing running: idle icon, no title', () => {
    expect(trayView(snapshot([vm()]))).toMatchObject({ icon: 'idle', title: '' });
  });

  it('running VMs: running icon, their count as the title, names in the tooltip', () => {
    const v = trayView(snapshot([vm({ state: 'running' }), vm({ name: 'db', state: 'starting' }), vm({ name: 'x' })]));
    expect(v).toMatchObject({ icon: 'running', title: '2' });
    expect(v.tooltip).toContain('2 running: web, db');
  });

  it('building: building icon and the slowest build\'s percentage, even with VMs running', () => {
    const v = trayView(snapshot([vm({ state: 'running', build: buildingBuild(80.6) }), vm({ name: 'db', build: buildingBuild(33.9) })]));
    expect(v).toMatchObject({ icon: 'building', title: '33%' });
    expect(v.tooltip).toContain('Building web, db');
  });

  it('a crashed VM, failed build, flake error or agent problem shows the error icon', () => {
    const crashed = snapshot([vm({ state: 'crashed', exit: { code: 1, signal: null, lastLines: [], at: 1 } }), vm({ name: 'db', state: 'running' })]);
    expect(trayView(crashed)).toMatchObject({ icon: 'error', title: '1' });
    expect(trayView(crashed).tooltip).toContain('Crashed: web');
    const failed = snapshot([vm({ build: { ...vm().build, status: 'failed', error: 'x' } })]);
    expect(trayView(failed).icon).toBe('error');
    const flake = snapshot([], { flakes: [{ dir: '/f', evaluating: false, error: 'syntax error', warnings: [], lastEvalAt: 1 }] });
    expect(trayView(flake).icon).toBe('error');
    const problem = snapshot([]);
    problem.agent.problems.push('Could not find nix.');
    expect(trayView(problem)).toMatchObject({ icon: 'error' });
    expect(trayView(problem).tooltip).toContain('Could not find nix.');
  });
});
