/**
 * The app's first-run checklist: `nixvm doctor`'s checks that decide whether VMs can run here
 * (nix, vfkit, Rosetta, a Linux builder) plus the flake folder, each with the actions that fix it.
 * Pure: the dropdown renders it from the agent's doctor report and snapshot. Only `fail` keeps an
 * item open (a `warn` works, and says so); the checklist is done when no item is open.
 */
import type { AgentSnapshot, DoctorCheck, DoctorReport } from './types.ts';

/** The commands the checklist offers to copy; the main process copies these texts, never one the page sends. */
export const SETUP_COMMANDS = {
  'brew-vfkit': 'brew install vfkit',
  'nix-vfkit': 'nix profile install nixpkgs#vfkit',
  rosetta: 'softwareupdate --install-rosetta --agree-to-license',
} as const;
export type SetupCommand = keyof typeof SETUP_COMMANDS;

export type ChecklistAction =
  | { kind: 'copy'; label: string; command: SetupCommand }
  | { kind: 'ui'; label: string; verb: 'chooseFlakeFolder' | 'useExampleFlake' | 'openSettings' | 'setUpLinuxBuilder' };

export interface ChecklistItem {
  id: 'nix' | 'vfkit' | 'rosetta' | 'builder' | 'flake';
  title: string;
  /** done: nothing to do; note: works, with something worth knowing; open: needs doing; na: not for this machine. */
  state: 'done' | 'note' | 'open' | 'na';
  summary: string;
  fix: string | null;
  actions: ChecklistAction[];
}

export interface Checklist {
  items: ChecklistItem[];
  /** How many items still need doing. */
  open: number;
}

const stateOf = (c: DoctorCheck | undefined): ChecklistItem['state'] =>
  !c ? 'na' : c.status === 'ok' ? 'done' : c.status === 'warn' ? 'note' : c.status === 'fail' ? 'open' : 'na';

function fromCheck(
  report: DoctorReport | null,
  id: 'nix' | 'vfkit' | 'rosetta' | 'builder',
  title: string,
  actions: ChecklistAction[],
): ChecklistItem {
  const c = report?.checks.find((x) => x.id === id);
  const state = report ? stateOf(c) : 'na';
  return {
    id,
    title,
    state,
    summary: c?.summary ?? (report ? 'not checked here.' : 'checking…'),
    fix: state === 'done' ? null : (c?.fix ?? null),
    actions: state === 'open' ? actions : [],
  };
}

export function firstRunChecklist(report: DoctorReport | null, snap: AgentSnapshot): Checklist {
  const flakes = snap.flakes.length;
  const items: ChecklistItem[] = [
    fromCheck(report, 'nix', 'Nix', []),
    fromCheck(report, 'vfkit', 'vfkit', [
      { kind: 'copy', label: 'Copy brew install', command: 'brew-vfkit' },
      { kind: 'copy', label: 'Copy nix profile install', command: 'nix-vfkit' },
      { kind: 'ui', label: 'Choose Its Path…', verb: 'openSettings' },
    ]),
    fromCheck(report, 'rosetta', 'Rosetta', [{ kind: 'copy', label: 'Copy Install Command', command: 'rosetta' }]),
    fromCheck(report, 'builder', 'A Linux builder', [
      { kind: 'ui', label: 'Set Up a Linux Builder…', verb: 'setUpLinuxBuilder' },
    ]),
    {
      id: 'flake',
      title: 'A flake folder',
      state: flakes ? 'done' : 'open',
      summary: flakes
        ? `${flakes} flake folder${flakes === 1 ? '' : 's'} configured.`
        : 'No flake folder yet: NixVM runs the NixOS machines a flake defines in nixosConfigurations.',
      fix: flakes
        ? null
        : 'Choose the folder that holds your flake.nix, or start from the example (the seed’s two VMs).',
      actions: flakes
        ? []
        : [
            { kind: 'ui', label: 'Choose Folder…', verb: 'chooseFlakeFolder' },
            { kind: 'ui', label: 'Use the Example', verb: 'useExampleFlake' },
          ],
    },
  ];
  return { items, open: items.filter((i) => i.state === 'open').length };
}
