/**
 * vmActions decides, once, which actions apply to a VM; the native menu and the dropdown both
 * render from it (tests/ui covers the dropdown, menu-template.test.ts the menu).
 */
import { describe, expect, it } from 'vitest';
import { vmActions, type VmActions } from '../../src/api/actions.ts';
import { menuTemplate } from '../../src/app/menu-template.ts';
import { buildingBuild, snapshot, vm } from './snapshot-factory.ts';

const ctx = snapshot([]).agent;
const ids = (a: VmActions) => ({
  primary: a.primary.map((x) => x.id),
  apply: a.apply?.id ?? null,
  more: a.more.map((x) => x.id),
});

describe('vmActions', () => {
  it('gives a stopped VM Start, and no Start while its build runs (the build comes first)', () => {
    expect(ids(vmActions(vm(), ctx)).primary).toEqual(['start']);
    const building = vmActions(vm({ build: buildingBuild(10) }), ctx);
    expect(ids(building).primary).toEqual(['cancelBuild']);
    expect(ids(building).more).not.toContain('build');
  });

  it('offers Apply only for a stale running VM with no build in flight, saying whether it switches or restarts', () => {
    expect(vmActions(vm({ state: 'running', stale: true }), ctx).apply?.label).toBe('Apply');
    expect(
      vmActions(vm({ state: 'running', stale: true, applyPreview: { how: 'switch', reasons: [] } }), ctx).apply?.reason,
    ).toBe('Rebuild, then switch it to the new configuration in place (no reboot)');
    expect(
      vmActions(
        vm({
          state: 'running',
          stale: true,
          applyPreview: { how: 'restart', reasons: ['memorySize 1024 → 2048 needs a restart'] },
        }),
        ctx,
      ).apply?.reason,
    ).toBe('Rebuild, then restart: memorySize 1024 → 2048 needs a restart');
    expect(vmActions(vm({ state: 'running', stale: true, build: buildingBuild(5) }), ctx).apply).toBeNull();
    expect(vmActions(vm({ state: 'stopped', stale: true }), ctx).apply).toBeNull();
  });

  it('disables Start with the reason when vfkit is missing, and Rebuild when nix is', () => {
    const problem = 'Could not find vfkit in your PATH; install it with `brew install vfkit`.';
    const noVfkit = { ...ctx, vfkit: null, problems: [problem] };
    const start = vmActions(vm(), noVfkit).primary[0]!;
    expect(start).toMatchObject({ id: 'start', enabled: false, reason: problem });
    const nixGone = 'Could not find nix; install Nix (https://nixos.org/download).';
    const rebuild = vmActions(vm(), { ...ctx, nix: null, problems: [nixGone] }).more.find((a) => a.id === 'build')!;
    expect(rebuild).toMatchObject({ enabled: false, reason: nixGone });
    // The native menu shows the same: disabled, the reason as its tooltip.
    const items = menuTemplate(
      snapshot([vm()], { agent: noVfkit }),
      { platform: 'darwin', launchAtLogin: false, unseenNotices: [] },
      () => {},
    );
    const sub = items.find((i) => i.id === 'vm:web')!.submenu as {
      label?: string;
      enabled?: boolean;
      toolTip?: string;
    }[];
    expect(sub.find((i) => i.label === 'Start')).toMatchObject({ enabled: false, toolTip: problem });
  });

  it('says why ssh is not available', () => {
    const off = vmActions(
      vm({ state: 'running', spec: { ...vm().spec!, ssh: { enabled: false, port: 22, user: 'root' } } }),
      ctx,
    );
    expect(off.more.find((a) => a.id === 'copySshCommand')).toMatchObject({
      enabled: false,
      reason: 'sshd is not enabled in this configuration',
    });
    const stopped = vmActions(vm(), ctx).more.find((a) => a.id === 'openSshInTerminal')!;
    expect(stopped).toMatchObject({ enabled: false, reason: '"web" is not running' });
  });

  it('offers a VM that did not evaluate only its flake folder and state folder', () => {
    const a = vmActions(vm({ spec: null, error: 'boom' }), ctx);
    expect(ids(a)).toEqual({ primary: [], apply: null, more: ['openFlakeFolder', 'revealStateDir'] });
  });
});
