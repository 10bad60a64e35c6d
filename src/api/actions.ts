/**
 * Which actions apply to a VM right now, enabled or not and why: decided once, here, and rendered
 * by every face (the dropdown, the native menu), so they can never disagree. Pure over the
 * snapshot.
 */
import { canStart, isBuilding, isUp, needsRestart, sshAvailable } from './describe.ts';
import type { Action } from './ipc.ts';
import type { AgentInfo, VmSnapshot } from './types.ts';

export type VmActionId =
  | 'start'
  | 'stop'
  | 'stopping'
  | 'cancelBuild'
  | 'apply'
  | 'restart'
  | 'build'
  | 'openSshInTerminal'
  | 'openConsoleInTerminal'
  | 'copySshCommand'
  | 'copyIpv6'
  | 'copyIpv4'
  | 'copyIp'
  | 'viewConsoleLog'
  | 'viewBuildLog'
  | 'revealStateDir'
  | 'openFlakeFolder'
  | 'growDisk'
  | 'resetDisk';

export interface VmAction {
  id: VmActionId;
  /** As a menu item reads it. */
  label: string;
  /** As a button reads it, where there is little room. */
  short: string;
  enabled: boolean;
  /** Why it is disabled (or what it does), for a tooltip; null when there is nothing to add. */
  reason: string | null;
  /** What a click runs; null for the disabled placeholders. */
  run: Action | null;
  /** A question to confirm before running (it deletes something). */
  confirm?: string;
}

export interface VmActions {
  /**
   * The row's main actions for its state, in order: Cancel Build while building, then Stop or
   * Stopping… for a VM that is up, else Start (not while a build runs: the build comes first).
   * Empty for a VM that did not evaluate.
   */
  primary: VmAction[];
  /** "Apply": a running VM on an older closure (not while a build runs); its title says switch or why a restart. */
  apply: VmAction | null;
  /** Everything else that applies, in menu order. */
  more: VmAction[];
}

function act(
  id: VmActionId,
  label: string,
  short: string,
  run: Action | null,
  enabled = true,
  reason: string | null = null,
): VmAction {
  return { id, label, short, enabled, reason, run };
}

/** The agent facts that decide what can work at all (vfkit and nix found). */
export type ActionContext = Pick<AgentInfo, 'vfkit' | 'nix' | 'problems'>;

function firstSentence(problems: readonly string[], about: RegExp): string | null {
  return problems.find((p) => about.test(p)) ?? null;
}

export function vmActions(vm: VmSnapshot, ctx: ActionContext): VmActions {
  const ref = { vm: vm.name };
  const agent = (method: 'start' | 'stop' | 'restart' | 'build' | 'cancelBuild' | 'apply'): Action => ({
    kind: 'agent',
    method,
    params: ref,
  });
  const ui = (verb: 'openSshInTerminal' | 'openConsoleInTerminal' | 'copySshCommand' | 'revealStateDir'): Action => ({
    kind: 'ui',
    verb,
    params: ref,
  });
  const reveal = act('revealStateDir', 'Reveal State Folder', 'State folder', ui('revealStateDir'));

  if (vm.spec === null) {
    // Evaluation failed: nothing to run; point at where to fix it.
    return {
      primary: [],
      apply: null,
      more: [
        act('openFlakeFolder', 'Open Flake Folder', 'Flake folder', {
          kind: 'ui',
          verb: 'openFlakeFolder',
          params: { dir: vm.flake },
        }),
        reveal,
      ],
    };
  }

  const building = isBuilding(vm);
  const noVfkit = ctx.vfkit ? null : (firstSentence(ctx.problems, /vfkit/i) ?? 'vfkit was not found.');
  const noNix = ctx.nix ? null : (firstSentence(ctx.problems, /\bnix\b/i) ?? 'Nix was not found.');

  const primary: VmAction[] = [];
  if (building)
    primary.push(act('cancelBuild', 'Cancel Build', 'Cancel', agent('cancelBuild'), true, 'Cancel the build'));
  if (vm.state === 'stopping') {
    primary.push(act('stopping', 'Stopping…', 'Stopping…', null, false));
  } else if (isUp(vm)) {
    primary.push(act('stop', 'Stop', 'Stop', agent('stop')));
  } else if (!building) {
    const why = noVfkit ?? (canStart(vm) ? null : `${JSON.stringify(vm.name)} cannot start right now.`);
    primary.push(act('start', 'Start', 'Start', agent('start'), why === null, why));
  }

  const more: VmAction[] = [];
  if (isUp(vm)) {
    more.push(
      act(
        'restart',
        'Restart',
        'Restart',
        agent('restart'),
        vm.state === 'running',
        vm.state === 'running' ? null : `${JSON.stringify(vm.name)} is still starting.`,
      ),
    );
  }
  if (!building) {
    more.push(act('build', 'Rebuild', 'Rebuild', agent('build'), noNix === null, noNix));
  }

  const ssh = sshAvailable(vm);
  const sshOff = vm.spec.ssh.enabled === false;
  const sshWhy = sshOff
    ? 'sshd is not enabled in this configuration'
    : !isUp(vm)
      ? `${JSON.stringify(vm.name)} is not running`
      : !ssh
        ? `${JSON.stringify(vm.name)} has no address yet`
        : null;
  more.push(
    act(
      'openSshInTerminal',
      sshOff ? 'Open ssh in Terminal (sshd is off in this config)' : 'Open ssh in Terminal',
      'Terminal',
      ui('openSshInTerminal'),
      ssh && vm.state === 'running',
      sshWhy ?? (vm.state === 'running' ? 'Open ssh in Terminal' : `${JSON.stringify(vm.name)} is still starting`),
    ),
    act('copySshCommand', 'Copy ssh Command', 'Copy ssh', ui('copySshCommand'), ssh, sshWhy ?? 'Copy the ssh command'),
  );
  if (vm.ipv6) {
    more.push(
      act('copyIpv6', `Copy IPv6 ${vm.ipv6}`, 'IPv6', {
        kind: 'ui',
        verb: 'copyIp',
        params: { vm: vm.name, family: 'ipv6' },
      }),
    );
  }
  if (vm.ipv4) {
    more.push(
      act('copyIpv4', `Copy IPv4 ${vm.ipv4}`, 'IPv4', {
        kind: 'ui',
        verb: 'copyIp',
        params: { vm: vm.name, family: 'ipv4' },
      }),
    );
  }
  if (!vm.ipv4 && !vm.ipv6) more.push(act('copyIp', 'Copy IP Address', 'Copy IP', null, false, 'No address yet'));

  const hasBuildLog = vm.build.logPath !== null || building;
  more.push(
    act(
      'openConsoleInTerminal',
      'Open Console in Terminal',
      'Console',
      ui('openConsoleInTerminal'),
      vm.state === 'running',
      vm.state === 'running'
        ? 'Type into the serial console (nixvm console) in Terminal'
        : isUp(vm)
          ? `${JSON.stringify(vm.name)} is still starting`
          : `${JSON.stringify(vm.name)} is not running`,
    ),
    act('viewConsoleLog', 'View Console Log', 'Log', {
      kind: 'ui',
      verb: 'openLogWindow',
      params: { vm: vm.name, kind: 'console' },
    }),
    act(
      'viewBuildLog',
      'View Build Log',
      'Build log',
      { kind: 'ui', verb: 'openLogWindow', params: { vm: vm.name, kind: 'build' } },
      hasBuildLog,
      hasBuildLog ? null : `${JSON.stringify(vm.name)} has not been built yet`,
    ),
    reveal,
  );

  // The persistent writable store image: grow it to diskSize, or delete it (never implicitly).
  const writable = vm.disks?.images.find((d) => d.role === 'writable-store');
  if (writable) {
    const down = vm.state === 'stopped' || vm.state === 'crashed';
    const stopFirst = down ? null : `Stop ${JSON.stringify(vm.name)} first`;
    if (vm.disks?.canGrow) {
      more.push(
        act(
          'growDisk',
          'Grow Writable Store to diskSize',
          'Grow disk',
          { kind: 'agent', method: 'diskGrow', params: ref },
          down,
          stopFirst ?? vm.disks.notice,
        ),
      );
    }
    more.push({
      ...act(
        'resetDisk',
        'Reset Writable Store…',
        'Reset disk',
        { kind: 'agent', method: 'diskReset', params: ref },
        down,
        stopFirst ?? `Delete ${writable.path}; the next start makes a new one`,
      ),
      confirm: `Delete the writable store image of ${JSON.stringify(vm.name)}? Everything it keeps in its writable Nix store is lost; its next start makes a new, empty one.`,
    });
  }

  const preview = vm.applyPreview ?? null;
  const apply =
    needsRestart(vm) && !building
      ? act(
          'apply',
          'Apply',
          'Apply',
          agent('apply'),
          true,
          preview?.how === 'restart'
            ? `Rebuild, then restart: ${preview.reasons.join('; ')}`
            : 'Rebuild, then switch it to the new configuration in place (no reboot)',
        )
      : null;
  return { primary, apply, more };
}
