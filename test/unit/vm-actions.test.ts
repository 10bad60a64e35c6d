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
  primary: a.primary?.id ?? null,
  quick: a.quick.map((x) => x.id),
  more: a.more.map((x) => x.id),
});
const running = (over: Parameters<typeof vm>[0] = {}) =>
  vm({ state: 'running', ipv4: '192.168.64.7', ipv6: 'fe80::1%bridge100', sshCommand: 'ssh web', ...over });

describe('vmActions', () => {
  it('gives each state one primary action: Start, Cancel Build, Stopping…, Apply / Restart to Apply, Stop', () => {
    const primary = (over: Parameters<typeof vm>[0]) => {
      const p = vmActions(vm(over), ctx).primary;
      return p && { id: p.id, label: p.label, enabled: p.enabled };
    };
    expect(primary({})).toEqual({ id: 'start', label: 'Start', enabled: true });
    expect(primary({ state: 'crashed' })).toEqual({ id: 'start', label: 'Start', enabled: true });
    // The build comes first: no Start (nor Stop) while it runs, only the way to cancel it.
    expect(primary({ build: buildingBuild(10) })).toEqual({ id: 'cancelBuild', label: 'Cancel Build', enabled: true });
    expect(primary({ state: 'running', build: buildingBuild(10) })?.id).toBe('cancelBuild');
    expect(primary({ state: 'starting' })).toEqual({ id: 'stop', label: 'Stop', enabled: true });
    expect(primary({ state: 'running' })).toEqual({ id: 'stop', label: 'Stop', enabled: true });
    expect(primary({ state: 'stopping' })).toEqual({ id: 'stopping', label: 'Stopping…', enabled: false });
    expect(primary({ state: 'running', stale: true, applyPreview: { how: 'restart', reasons: ['x'] } })).toEqual({
      id: 'apply',
      label: 'Restart to Apply',
      enabled: true,
    });
    expect(primary({ state: 'running', stale: true, applyPreview: { how: 'switch', reasons: [] } })).toEqual({
      id: 'apply',
      label: 'Apply',
      enabled: true,
    });
    // Stopped and stale: the next Start boots the new closure, nothing to apply.
    expect(primary({ stale: true })?.id).toBe('start');
    expect(vmActions(vm({ spec: null, error: 'boom' }), ctx).primary).toBeNull();
  });

  it('keeps Stop below when Apply or Cancel Build is the primary, and Rebuild only when no build runs', () => {
    expect(ids(vmActions(running({ stale: true }), ctx)).more.slice(0, 3)).toEqual(['stop', 'restart', 'build']);
    expect(ids(vmActions(running(), ctx)).more.slice(0, 2)).toEqual(['restart', 'build']);
    const building = ids(vmActions(running({ build: buildingBuild(5) }), ctx));
    expect(building.more.slice(0, 2)).toEqual(['stop', 'restart']);
    expect(building.more).not.toContain('build');
    expect(ids(vmActions(vm(), ctx)).more).not.toContain('stop');
  });

  it('offers Terminal, copy ssh and copy IP always, each disabled with the reason when it cannot work', () => {
    const up = vmActions(running(), ctx).quick;
    expect(up.map((a) => [a.id, a.enabled])).toEqual([
      ['openSshInTerminal', true],
      ['copySshCommand', true],
      ['copyIp', true],
    ]);
    // The address people paste: IPv4 once leased, else the link-local IPv6.
    expect(up[2]).toMatchObject({
      reason: 'Copy 192.168.64.7',
      run: { kind: 'ui', verb: 'copyIp', params: { vm: 'web', family: 'ipv4' } },
    });
    expect(vmActions(running({ ipv4: null }), ctx).quick[2]).toMatchObject({
      enabled: true,
      run: { kind: 'ui', verb: 'copyIp', params: { vm: 'web', family: 'ipv6' } },
    });
    const noAddr = vmActions(running({ ipv4: null, ipv6: null, sshCommand: null }), ctx).quick;
    expect(noAddr.map((a) => [a.id, a.enabled, a.reason])).toEqual([
      ['openSshInTerminal', false, '"web" has no address yet'],
      ['copySshCommand', false, '"web" has no address yet'],
      ['copyIp', false, '"web" has no address yet'],
    ]);
    // A stopped VM's IPv6 is known from its MAC, but nothing answers there.
    const stopped = vmActions(vm({ ipv6: 'fe80::1%bridge100' }), ctx);
    expect(stopped.quick[2]).toMatchObject({ id: 'copyIp', enabled: false, reason: '"web" is not running', run: null });
    expect(ids(stopped).more).not.toContain('copyIpv6');
    expect(ids(vmActions(running(), ctx)).more).toEqual(expect.arrayContaining(['copyIpv4', 'copyIpv6']));
  });

  it('names the rest so a Mac user reads them: Serial Console (not Console.app), Show State Folder', () => {
    const more = vmActions(running({ build: { ...vm().build, logPath: '/s/build.log' } }), ctx).more;
    const label = (id: string) => more.find((a) => a.id === id)?.label;
    expect(label('openConsoleInTerminal')).toBe('Open Serial Console in Terminal');
    expect(label('viewConsoleLog')).toBe('Show Log');
    expect(label('viewBuildLog')).toBe('Show Build Log');
    expect(label('revealStateDir')).toBe('Show State Folder');
    expect(more.find((a) => a.id === 'viewBuildLog')?.enabled).toBe(true);
    expect(vmActions(vm(), ctx).more.find((a) => a.id === 'viewBuildLog')).toMatchObject({
      enabled: false,
      reason: '"web" has not been built yet',
    });
  });

  it('says whether Apply switches in place or why only a restart will do', () => {
    expect(vmActions(running({ stale: true, applyPreview: { how: 'switch', reasons: [] } }), ctx).primary?.reason).toBe(
      'Rebuild, then switch it to the new configuration in place (no reboot)',
    );
    expect(
      vmActions(
        running({ stale: true, applyPreview: { how: 'restart', reasons: ['memorySize 1024 → 2048 needs a restart'] } }),
        ctx,
      ).primary?.reason,
    ).toBe('Rebuild, then restart: memorySize 1024 → 2048 needs a restart');
    expect(vmActions(running({ stale: true, build: buildingBuild(5) }), ctx).primary?.id).toBe('cancelBuild');
  });

  it('disables Start with the reason when vfkit is missing, and Rebuild when nix is', () => {
    const problem = 'Could not find vfkit in your PATH; install it with `brew install vfkit`.';
    const noVfkit = { ...ctx, vfkit: null, problems: [problem] };
    const start = vmActions(vm(), noVfkit).primary!;
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

  it('disables Start with the reason for a VM this Mac cannot run, in the words the agent refuses it with', () => {
    const cannotRun = 'Virtualization.framework runs only aarch64-linux guests on Apple silicon';
    const start = vmActions(vm({ platform: { buildsOn: 'local', builders: [], problem: null, cannotRun } }), ctx)
      .primary!;
    expect(start).toMatchObject({
      id: 'start',
      enabled: false,
      reason: `VM "web" cannot run on this Mac: ${cannotRun}.`,
    });
    // Nothing builds it here: Start stays (a closure built earlier still boots; the build says why otherwise).
    const none = vmActions(
      vm({ platform: { buildsOn: 'none', builders: [], problem: 'no builder', cannotRun: null } }),
      ctx,
    ).primary!;
    expect(none).toMatchObject({ id: 'start', enabled: true });
  });

  it('says why ssh is not available', () => {
    const off = vmActions(
      vm({ state: 'running', spec: { ...vm().spec!, ssh: { enabled: false, port: 22, user: 'root' } } }),
      ctx,
    );
    expect(off.quick.find((a) => a.id === 'copySshCommand')).toMatchObject({
      enabled: false,
      reason: 'sshd is not enabled in this configuration',
    });
    const stopped = vmActions(vm(), ctx).quick.find((a) => a.id === 'openSshInTerminal')!;
    expect(stopped).toMatchObject({ enabled: false, reason: '"web" is not running' });
  });

  it('offers a VM that did not evaluate only its flake folder and state folder', () => {
    const a = vmActions(vm({ spec: null, error: 'boom' }), ctx);
    expect(ids(a)).toEqual({ primary: null, quick: [], more: ['openFlakeFolder', 'revealStateDir'] });
  });
});
