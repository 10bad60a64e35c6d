import { describe, expect, it } from 'vitest';
import type { MenuItemConstructorOptions } from 'electron';
import { menuTemplate, type MenuFacts } from '../../src/app/menu-template.ts';
import type { Action } from '../../src/api/ipc.ts';
import type { VmRunState, VmSnapshot } from '../../src/api/types.ts';
import { buildingBuild, flake as flakeSnap, settings, snapshot, vm } from './snapshot-factory.ts';

type Item = MenuItemConstructorOptions;

const facts: MenuFacts = { platform: 'darwin', launchAtLogin: false, unseenNotices: [] };

function render(snap = snapshot([vm()]), f: Partial<MenuFacts> = {}) {
  const dispatched: Action[] = [];
  const items = menuTemplate(snap, { ...facts, ...f }, (a) => dispatched.push(a));
  return { items, dispatched };
}

function find(items: Item[], label: string | RegExp): Item | undefined {
  return items.find((i) => (typeof label === 'string' ? i.label === label : label.test(i.label ?? '')));
}

function click(item: Item | undefined): void {
  expect(item, 'menu item exists').toBeDefined();
  (item!.click as unknown as () => void)();
}

function submenuOf(items: Item[], vmName: string): Item[] {
  const it = items.find((i) => i.id === `vm:${vmName}`);
  expect(it, `menu entry for ${vmName}`).toBeDefined();
  return it!.submenu as Item[];
}

const STATES: VmRunState[] = ['stopped', 'starting', 'running', 'stopping', 'crashed'];
const IPS = [
  { ipv6: null, ipv4: null },
  { ipv6: 'fe80::5894:efff:fee4:cee%bridge100', ipv4: null },
  { ipv6: 'fe80::5894:efff:fee4:cee%bridge100', ipv4: '192.168.64.7' },
];

describe('per-VM menu, every state combination', () => {
  for (const state of STATES)
    for (const stale of [false, true])
      for (const building of [false, true])
        for (const ips of IPS)
          for (const sshOn of [true, false]) {
            const name = `${state}${stale ? ' stale' : ''}${building ? ' building' : ''} ipv6=${Boolean(ips.ipv6)} ipv4=${Boolean(ips.ipv4)} ssh=${sshOn}`;
            it(name, () => {
              const base = vm();
              const v: VmSnapshot = vm({
                state,
                stale,
                ...ips,
                build: building ? buildingBuild(42) : base.build,
                sshCommand: sshOn && (ips.ipv4 || ips.ipv6) ? 'ssh -p 22 alice@192.168.64.7' : null,
                spec: { ...base.spec!, ssh: { enabled: sshOn, port: 22, user: 'alice' } },
                exit: state === 'crashed' ? { code: 1, signal: null, lastLines: ['kernel panic'], at: 5 } : null,
              });
              const { items, dispatched } = render(snapshot([v]));
              const top = items.find((i) => i.id === 'vm:web')!;
              const sub = top.submenu as Item[];
              const up = state === 'starting' || state === 'running';

              // The entry's label says what the VM is doing.
              const stateWord = {
                stopped: 'Stopped',
                starting: 'Starting',
                running: 'Running',
                stopping: 'Stopping',
                crashed: 'Crashed (exit code 1)',
              }[state];
              if (!(building && state === 'stopped')) expect(top.label).toContain(stateWord);
              if (building) expect(top.label!.toLowerCase()).toContain('building 42%');
              if (stale) expect(top.label).toMatch(up ? /needs restart/ : /out of date/);

              // Start / Stop / Restart follow the run state; a build in flight is cancelled, not started.
              expect(Boolean(find(sub, 'Start'))).toBe((state === 'stopped' || state === 'crashed') && !building);
              // One primary per state: Apply (or Cancel Build) takes Stop's place there, and Stop moves below it.
              expect(Boolean(find(sub, 'Stop'))).toBe(up);
              expect(find(sub, 'Restart')?.enabled ?? null).toBe(up ? state === 'running' : null);
              expect(find(sub, 'Stopping…')?.enabled ?? null).toBe(state === 'stopping' && !building ? false : null);

              // "Apply" exactly when a running VM runs an old closure (and no build runs).
              const apply = find(sub, /^(Restart to )?Apply$/);
              expect(Boolean(apply)).toBe(stale && up && !building);
              if (apply) {
                click(apply);
                expect(dispatched.at(-1)).toEqual({ kind: 'agent', method: 'apply', params: { vm: 'web' } });
              }

              // Building shows progress and offers Cancel instead of Rebuild.
              expect(Boolean(find(sub, 'Cancel Build'))).toBe(building);
              expect(Boolean(find(sub, 'Rebuild'))).toBe(!building);
              if (building) expect(find(sub, /^Building 42% — nixos-system-web$/)?.enabled).toBe(false);

              // Addresses of a VM that is up: one item per known address, a disabled placeholder otherwise.
              expect(Boolean(find(sub, /^Copy IPv6 fe80::/))).toBe(Boolean(ips.ipv6) && up);
              expect(Boolean(find(sub, 'Copy IPv4 192.168.64.7'))).toBe(Boolean(ips.ipv4) && up);
              expect(find(sub, 'Copy IP Address')?.enabled ?? null).toBe(up && (ips.ipv6 || ips.ipv4) ? null : false);

              // ssh needs sshd on, a command, and (for Terminal) a running guest.
              const hasCmd = v.sshCommand !== null;
              const copy = find(sub, 'Copy ssh Command')!;
              expect(copy.enabled).toBe(sshOn && hasCmd);
              const term = find(sub, /^Open ssh in Terminal/)!;
              expect(term.enabled).toBe(sshOn && hasCmd && state === 'running');
              expect(term.label!.includes('sshd is off')).toBe(!sshOn);

              // Always there.
              expect(find(sub, 'Show Log')?.enabled).not.toBe(false);
              expect(find(sub, 'Show Build Log')?.enabled).toBe(building);
              expect(find(sub, 'Show State Folder')).toBeDefined();
              if (state === 'crashed') expect(find(sub, 'Last console line: kernel panic')).toBeDefined();
            });
          }
});

describe('per-VM menu actions', () => {
  it('each item dispatches its command for that VM', () => {
    const base = vm();
    const running = vm({
      name: 'db',
      state: 'running',
      ipv6: 'fe80::1%bridge100',
      ipv4: '192.168.64.9',
      sshCommand: 'ssh alice@192.168.64.9',
      spec: { ...base.spec!, name: 'db' },
      build: { ...base.build, logPath: '/state/db/build.log' },
    });
    const { items, dispatched } = render(snapshot([vm(), running]));
    const sub = submenuOf(items, 'db');
    for (const label of [
      'Stop',
      'Restart',
      'Rebuild',
      'Open ssh in Terminal',
      'Copy ssh Command',
      'Copy IPv6 fe80::1%bridge100',
      'Copy IPv4 192.168.64.9',
      'Show Log',
      'Show Build Log',
      'Show State Folder',
    ]) {
      click(find(sub, label));
    }
    expect(dispatched).toEqual([
      { kind: 'agent', method: 'stop', params: { vm: 'db' } },
      { kind: 'agent', method: 'restart', params: { vm: 'db' } },
      { kind: 'agent', method: 'build', params: { vm: 'db' } },
      { kind: 'ui', verb: 'openSshInTerminal', params: { vm: 'db' } },
      { kind: 'ui', verb: 'copySshCommand', params: { vm: 'db' } },
      { kind: 'ui', verb: 'copyIp', params: { vm: 'db', family: 'ipv6' } },
      { kind: 'ui', verb: 'copyIp', params: { vm: 'db', family: 'ipv4' } },
      { kind: 'ui', verb: 'openLogWindow', params: { vm: 'db', kind: 'console' } },
      { kind: 'ui', verb: 'openLogWindow', params: { vm: 'db', kind: 'build' } },
      { kind: 'ui', verb: 'revealStateDir', params: { vm: 'db' } },
    ]);
    click(find(submenuOf(items, 'web'), 'Start'));
    expect(dispatched.at(-1)).toEqual({ kind: 'agent', method: 'start', params: { vm: 'web' } });
  });

  it('a build in flight can be cancelled', () => {
    const { items, dispatched } = render(snapshot([vm({ build: buildingBuild(10) })]));
    click(find(submenuOf(items, 'web'), 'Cancel Build'));
    expect(dispatched).toEqual([{ kind: 'agent', method: 'cancelBuild', params: { vm: 'web' } }]);
  });

  it('a VM whose config failed to evaluate shows the error and offers no Start', () => {
    const bad = vm({
      name: 'broken',
      spec: null,
      error: 'nixosConfigurations.broken failed to evaluate: undefined variable "foo".',
    });
    const { items, dispatched } = render(snapshot([bad]));
    expect(items.find((i) => i.id === 'vm:broken')!.label).toBe('broken — Evaluation failed');
    const sub = submenuOf(items, 'broken');
    expect(
      sub
        .filter((i) => i.enabled === false && i.type !== 'separator')
        .map((i) => i.label!.trim())
        .join(' '),
    ).toBe('⚠ nixosConfigurations.broken failed to evaluate: undefined variable "foo".');
    expect(sub[0]!.enabled).toBe(false);
    expect(find(sub, 'Start')).toBeUndefined();
    click(find(sub, 'Open Flake Folder'));
    expect(dispatched).toEqual([{ kind: 'ui', verb: 'openFlakeFolder', params: { dir: '/Users/me/vms' } }]);
  });

  it('a failed build says so with its one-sentence error', () => {
    const v = vm({
      build: {
        ...vm().build,
        status: 'failed',
        error: 'Building web failed: builder for hello.drv exited with 1.',
        logPath: '/l',
      },
    });
    const { items } = render(snapshot([v]));
    expect(items.find((i) => i.id === 'vm:web')!.label).toBe('web — Stopped · build failed');
    expect(submenuOf(items, 'web')[0]!.label).toBe('⚠ Building web failed: builder for hello.drv exited with 1.');
  });
});

describe('global menu items', () => {
  it('empty state: no flake configured offers to choose a folder', () => {
    const { items, dispatched } = render(snapshot([], { flakes: [], settings: settings({ flakes: [] }) }));
    expect(find(items, 'No flake configured')?.enabled).toBe(false);
    click(find(items, 'Choose Flake Folder…'));
    expect(dispatched).toEqual([{ kind: 'ui', verb: 'chooseFlakeFolder', params: {} }]);
    expect(find(items, 'Open Flake Folder')?.enabled).toBe(false);
  });

  it('a headless agent given --flake (none in settings) still lists its VMs and opens its folder', () => {
    const { items, dispatched } = render(snapshot([vm()], { settings: settings({ flakes: [] }) }));
    expect(find(items, 'No flake configured')).toBeUndefined();
    expect(find(items, 'Choose Flake Folder…')).toBeUndefined();
    expect(items.find((i) => i.id === 'vm:web')).toBeDefined();
    click(find(items, 'Open Flake Folder'));
    expect(dispatched).toEqual([{ kind: 'ui', verb: 'openFlakeFolder', params: { dir: '/Users/me/vms' } }]);
  });

  it('a flake with no configurations says so; while evaluating it says that', () => {
    expect(find(render(snapshot([])).items, 'No nixosConfigurations in the flake')).toBeDefined();
    const evaluating = snapshot([], {
      flakes: [flakeSnap({ dir: '/Users/me/vms', evaluating: true, error: null, warnings: [], lastEvalAt: null })],
    });
    expect(find(render(evaluating).items, 'Evaluating flake…')).toBeDefined();
  });

  it("a flake error is shown with nix's first line, full text in the tooltip", () => {
    const err = "error: syntax error, unexpected '}'\n       at /Users/me/vms/flake.nix:12:3";
    const snap = snapshot([], {
      flakes: [flakeSnap({ dir: '/Users/me/vms', evaluating: false, error: err, warnings: [], lastEvalAt: 1 })],
    });
    const item = find(render(snap).items, /^⚠ vms: error: syntax error/);
    expect(item?.enabled).toBe(false);
    expect(item?.toolTip).toBe(err);
    expect(find(render(snap).items, 'No nixosConfigurations in the flake')).toBeUndefined();
  });

  it('agent problems are listed first', () => {
    const snap = snapshot([vm()]);
    snap.agent.problems = ['Could not find vfkit; install it with `nix profile install nixpkgs#vfkit`.'];
    expect(render(snap).items[0]!.label).toMatch(/^⚠ Could not find vfkit/);
  });

  it('Rebuild All Stale counts stale VMs and is disabled when none', () => {
    expect(find(render(snapshot([vm()])).items, 'Rebuild All Stale')?.enabled).toBe(false);
    const { items, dispatched } = render(
      snapshot([vm({ stale: true }), vm({ name: 'db', stale: true }), vm({ name: 'c' })]),
    );
    click(find(items, 'Rebuild All Stale (2)'));
    expect(dispatched).toEqual([{ kind: 'agent', method: 'rebuildStale', params: {} }]);
  });

  it('Open Flake Folder opens the one flake, or offers each when there are several', () => {
    const one = render(snapshot([]));
    click(find(one.items, 'Open Flake Folder'));
    expect(one.dispatched).toEqual([{ kind: 'ui', verb: 'openFlakeFolder', params: { dir: '/Users/me/vms' } }]);
    const flake = (dir: string) => flakeSnap({ dir });
    const two = render(
      snapshot([], { flakes: [flake('/a'), flake('/b')], settings: settings({ flakes: ['/a', '/b'] }) }),
    );
    const sub = find(two.items, 'Open Flake Folder')!.submenu as Item[];
    click(find(sub, '/b'));
    expect(two.dispatched).toEqual([{ kind: 'ui', verb: 'openFlakeFolder', params: { dir: '/b' } }]);
  });

  it('Settings, Launch at Login (a checkbox that toggles) and Quit are there', () => {
    const { items, dispatched } = render(snapshot([vm()]), { launchAtLogin: true });
    click(find(items, 'Settings…'));
    const login = find(items, 'Launch at Login')!;
    expect(login.type).toBe('checkbox');
    expect(login.checked).toBe(true);
    click(login);
    click(find(items, 'Quit NixVM'));
    expect(dispatched).toEqual([
      { kind: 'ui', verb: 'openSettings', params: {} },
      { kind: 'ui', verb: 'setLaunchAtLogin', params: { enabled: false } },
      { kind: 'ui', verb: 'quit', params: {} },
    ]);
    expect(items.at(-1)!.label).toBe('Quit NixVM');
    expect(find(items, 'Settings…')!.accelerator).toBe('Command+,');
    expect(find(render(snapshot([vm()]), { platform: 'linux' }).items, 'Settings…')!.accelerator).toBeUndefined();
  });

  it('Quit says it will stop running VMs when the on-quit policy is stop', () => {
    const up = [vm({ state: 'running' }), vm({ name: 'db', state: 'starting' }), vm({ name: 'c' })];
    expect(render(snapshot(up, { settings: settings({ onQuit: 'stop' }) })).items.at(-1)!.label).toBe(
      'Quit NixVM and Stop 2 VMs',
    );
    const keep = render(snapshot(up)).items.at(-1)!;
    expect(keep.label).toBe('Quit NixVM');
    expect(keep.toolTip).toMatch(/keep running/);
  });

  it('notices that could not be shown as notifications appear at the top and open their log', () => {
    const { items, dispatched } = render(snapshot([vm()]), {
      unseenNotices: [
        { level: 'error', title: 'Build failed', body: 'web: builder exited with 1', vm: 'web', log: 'build' },
      ],
    });
    expect(items[0]!.label).toBe('⚠ Build failed: web: builder exited with 1');
    click(items[0]);
    expect(dispatched).toEqual([{ kind: 'ui', verb: 'openLogWindow', params: { vm: 'web', kind: 'build' } }]);
  });
});
