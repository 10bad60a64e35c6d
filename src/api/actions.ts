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
  | 'resetDisk'
  | 'useAsBuilder'
  | 'stopUsingAsBuilder';

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
   * The one action for the row's state: Cancel Build while building, else Stopping… while it
   * stops, else Apply ("Restart to Apply" when only a restart will do) for a VM up on an older
   * closure, else Stop for a VM that is up, else Start. Null for a VM that did not evaluate.
   */
  primary: VmAction | null;
  /** The frequent ones, always offered (disabled with the reason when they cannot work): Terminal, copy ssh, copy IP. */
  quick: VmAction[];
  /** Everything else that applies, in menu order (the dropdown's "…" menu, the native submenu). */
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
  const q = JSON.stringify(vm.name);
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
  const reveal = act(
    'revealStateDir',
    'Show State Folder',
    'State folder',
    ui('revealStateDir'),
    true,
    'Show its disks, logs and keys in Finder',
  );

  if (vm.spec === null) {
    // Evaluation failed: nothing to run; point at where to fix it.
    return {
      primary: null,
      quick: [],
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
  const up = isUp(vm);
  const noVfkit = ctx.vfkit ? null : (firstSentence(ctx.problems, /vfkit/i) ?? 'vfkit was not found.');
  const noNix = ctx.nix ? null : (firstSentence(ctx.problems, /\bnix\b/i) ?? 'Nix was not found.');

  const stop = act('stop', 'Stop', 'Stop', agent('stop'));
  const preview = vm.applyPreview ?? null;
  const applyLabel = preview?.how === 'restart' ? 'Restart to Apply' : 'Apply';
  const apply =
    needsRestart(vm) && !building
      ? act(
          'apply',
          applyLabel,
          // The row's button is short; the row's note and the tooltip say how it applies.
          'Apply',
          agent('apply'),
          true,
          preview?.how === 'restart'
            ? `Rebuild, then restart: ${preview.reasons.join('; ')}`
            : preview?.how === 'switch'
              ? 'Rebuild, then switch it to the new configuration in place (no reboot)'
              : 'Rebuild, then bring it to the new configuration',
        )
      : null;

  let primary: VmAction;
  if (building) primary = act('cancelBuild', 'Cancel Build', 'Cancel', agent('cancelBuild'), true, 'Cancel the build');
  else if (vm.state === 'stopping') primary = act('stopping', 'Stopping…', 'Stopping…', null, false);
  else if (apply) primary = apply;
  else if (up) primary = stop;
  else {
    // The agent refuses these starts with the same words (Agent.boot).
    const noRun = vm.platform?.cannotRun ? `VM ${q} cannot run on this Mac: ${vm.platform.cannotRun}.` : null;
    const why = noVfkit ?? noRun ?? (canStart(vm) ? null : `${q} cannot start right now.`);
    primary = act('start', 'Start', 'Start', agent('start'), why === null, why);
  }

  const ssh = sshAvailable(vm);
  const sshOff = vm.spec.ssh.enabled === false;
  const sshWhy = sshOff
    ? 'sshd is not enabled in this configuration'
    : !up
      ? `${q} is not running`
      : !ssh
        ? `${q} has no address yet`
        : null;
  // Nothing answers on a stopped VM's address (its IPv6 is known from the MAC all the same).
  const addr = up ? (vm.ipv4 ?? vm.ipv6) : null;
  const quick: VmAction[] = [
    act(
      'openSshInTerminal',
      sshOff ? 'Open ssh in Terminal (sshd is off in this config)' : 'Open ssh in Terminal',
      'Terminal',
      ui('openSshInTerminal'),
      ssh && vm.state === 'running',
      sshWhy ?? (vm.state === 'running' ? 'Open ssh in Terminal' : `${q} is still starting`),
    ),
    act('copySshCommand', 'Copy ssh Command', 'Copy ssh', ui('copySshCommand'), ssh, sshWhy ?? 'Copy the ssh command'),
    // The address people paste: IPv4 once leased, else the link-local IPv6 (the row shows the same).
    act(
      'copyIp',
      'Copy IP Address',
      'Copy IP',
      addr ? { kind: 'ui', verb: 'copyIp', params: { vm: vm.name, family: vm.ipv4 ? 'ipv4' : 'ipv6' } } : null,
      addr !== null,
      addr ? `Copy ${addr}` : up ? `${q} has no address yet` : `${q} is not running`,
    ),
  ];

  const more: VmAction[] = [];
  // The lifecycle the primary does not cover: Stop when Apply or Cancel Build took its place.
  if (up && primary !== stop && vm.state !== 'stopping') more.push(stop);
  if (up) {
    more.push(
      act(
        'restart',
        'Restart',
        'Restart',
        agent('restart'),
        vm.state === 'running',
        vm.state === 'running' ? null : `${q} is still starting.`,
      ),
    );
  }
  if (!building) more.push(act('build', 'Rebuild', 'Rebuild', agent('build'), noNix === null, noNix));

  // Each address by family, with the address in the label (what the menu item copies).
  if (up && vm.ipv4) {
    more.push(
      act('copyIpv4', `Copy IPv4 ${vm.ipv4}`, 'IPv4', {
        kind: 'ui',
        verb: 'copyIp',
        params: { vm: vm.name, family: 'ipv4' },
      }),
    );
  }
  if (up && vm.ipv6) {
    more.push(
      act('copyIpv6', `Copy IPv6 ${vm.ipv6}`, 'IPv6', {
        kind: 'ui',
        verb: 'copyIp',
        params: { vm: vm.name, family: 'ipv6' },
      }),
    );
  }

  const hasBuildLog = vm.build.logPath !== null || building;
  more.push(
    // "Serial": the log window's "Open in Console" means Console.app.
    act(
      'openConsoleInTerminal',
      'Open Serial Console in Terminal',
      'Serial Console',
      ui('openConsoleInTerminal'),
      vm.state === 'running',
      vm.state === 'running'
        ? 'Type into the serial console (nixvm console) in Terminal'
        : up
          ? `${q} is still starting`
          : `${q} is not running`,
    ),
    act(
      'viewConsoleLog',
      'Show Log',
      'Log',
      { kind: 'ui', verb: 'openLogWindow', params: { vm: vm.name, kind: 'console' } },
      true,
      'What the serial console printed, in the log window',
    ),
    act(
      'viewBuildLog',
      'Show Build Log',
      'Build log',
      { kind: 'ui', verb: 'openLogWindow', params: { vm: vm.name, kind: 'build' } },
      hasBuildLog,
      hasBuildLog ? 'The last build log, in the log window' : `${q} has not been built yet`,
    ),
    reveal,
  );

  // The persistent writable store image: grow it to diskSize, or delete it (never implicitly).
  const writable = vm.disks?.images.find((d) => d.role === 'writable-store');
  if (writable) {
    const down = vm.state === 'stopped' || vm.state === 'crashed';
    const stopFirst = down ? null : `Stop ${q} first`;
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
      confirm: `Delete the writable store image of ${q}? Everything it keeps in its writable Nix store is lost; its next start makes a new, empty one.`,
    });
  }

  // This Mac's Linux builder: offered for a VM that can be one (the agent says which and why not).
  const builderAction = (on: boolean): Action => ({ kind: 'ui', verb: 'useAsBuilder', params: { vm: vm.name, on } });
  if (vm.platform?.isBuilder) {
    more.push(
      act(
        'stopUsingAsBuilder',
        'Stop Using as Linux Builder',
        'Not builder',
        builderAction(false),
        true,
        "nix stops building on it, and nixvm's change to nix's configuration is undone; the VM keeps running",
      ),
    );
  } else if (vm.platform && vm.platform.builderRefusal === null) {
    more.push(
      act(
        'useAsBuilder',
        'Use as Linux Builder…',
        'Use as builder',
        builderAction(true),
        noVfkit === null,
        noVfkit ?? `Start ${q} if needed and let nix build Linux systems on it (what changes is shown first)`,
      ),
    );
  }

  return { primary, quick, more };
}
