/**
 * The native (right-click) menu as a pure function of the agent's snapshot: no Electron at run
 * time, so every state combination is unit-tested. Clicks carry an `Action` to `dispatch`;
 * src/main/tray.ts turns the template into a Menu.
 */
import type { MenuItemConstructorOptions } from 'electron';
import type { AgentSnapshot, Notice, VmSnapshot } from '../api/types.ts';
import type { Action } from '../api/ipc.ts';
import { vmActions, type VmAction, type VmActionId } from '../api/actions.ts';
import { buildLabel, drvName, firstLine, folderName, isUp, truncate, vmStatusLine } from '../api/describe.ts';

/** What the menu needs to know that is not in the snapshot. */
export interface MenuFacts {
  platform: NodeJS.Platform;
  launchAtLogin: boolean;
  /** Notices the user has not seen because system notifications are unavailable. */
  unseenNotices: Notice[];
}

export type Dispatch = (action: Action) => void;

type Item = MenuItemConstructorOptions;

const sep: Item = { type: 'separator' };
const LABEL_MAX = 72;

function info(label: string, toolTip?: string): Item {
  return { label: truncate(label, LABEL_MAX), enabled: false, ...(toolTip ? { toolTip } : {}) };
}

/** Native menus cannot wrap: a long message becomes a few disabled lines (the rest in the tooltip). */
function wrapped(text: string, toolTip: string, width = 64, maxLines = 4): Item[] {
  const words = text.replace(/\s+/g, ' ').trim().split(' ');
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    if (cur && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = w;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) lines.push(cur);
  if (lines.length > maxLines) {
    lines.length = maxLines;
    const last = lines[maxLines - 1]!;
    lines[maxLines - 1] = last.length >= width ? `${last.slice(0, width - 1)}…` : `${last} …`;
  }
  return lines.map((l, i) => ({ label: i === 0 ? `⚠ ${l}` : `    ${l}`, enabled: false, toolTip }));
}

function vmItems(vm: VmSnapshot, agent: AgentSnapshot['agent'], d: Dispatch): Item[] {
  const items: Item[] = [];
  const err = vm.error ?? vm.build.error;
  if (err) items.push(...wrapped(err, vm.build.detail ?? err));
  if (vm.state === 'crashed' && vm.exit?.lastLines.length) {
    items.push(info(`Last console line: ${vm.exit.lastLines[vm.exit.lastLines.length - 1]}`));
  }

  if (vm.spec === null) {
    // Evaluation failed: nothing to run; point at where to fix it.
    items.push(sep);
    for (const a of vmActions(vm, agent).more) items.push({ label: a.label, click: () => a.run && d(a.run) });
    return items;
  }

  if (err || vm.state === 'crashed') items.push(sep);

  const acts = vmActions(vm, agent);
  const item = (a: VmAction): Item => ({
    label: a.label,
    enabled: a.enabled,
    ...(a.reason && !a.enabled ? { toolTip: a.reason } : {}),
    ...(a.run ? { click: () => d(a.run!) } : {}),
  });
  const all = [...acts.quick, ...acts.more];
  const group = (ids: VmActionId[]) => all.filter((a) => ids.includes(a.id)).map(item);
  const p = acts.primary;
  if (p?.id === 'cancelBuild') {
    // Building: what it builds, and the way to stop it.
    const what = drvName(vm.build.progress?.currentDrv ?? null);
    items.push(info(`${buildLabel(vm)}${what ? ` — ${what}` : ''}`), item(p));
  } else if (p) items.push(item(p));
  items.push(...group(['stop', 'restart', 'build']));
  // The per-family items name each address; "Copy IP Address" stays only as the disabled placeholder.
  const copyIp = acts.quick.find((a) => a.id === 'copyIp');
  items.push(
    sep,
    ...group(['openConsoleInTerminal', 'openSshInTerminal', 'copySshCommand', 'copyIpv6', 'copyIpv4']),
    ...(copyIp && !copyIp.enabled ? [item(copyIp)] : []),
  );
  items.push(sep, ...group(['viewConsoleLog', 'viewBuildLog', 'revealStateDir']));
  return items;
}

function vmLabel(vm: VmSnapshot): string {
  return `${vm.name} — ${vmStatusLine(vm)}`;
}

export function menuTemplate(snap: AgentSnapshot, facts: MenuFacts, d: Dispatch): Item[] {
  const items: Item[] = [];
  const isMac = facts.platform === 'darwin';

  for (const n of facts.unseenNotices) {
    items.push({
      label: truncate(`${n.level === 'error' ? '⚠ ' : ''}${n.title}${n.body ? `: ${n.body}` : ''}`, LABEL_MAX),
      toolTip: n.body,
      enabled: Boolean(n.vm),
      click: () => {
        if (n.vm) d({ kind: 'ui', verb: 'openLogWindow', params: { vm: n.vm, kind: n.log ?? 'console' } });
      },
    });
  }
  if (facts.unseenNotices.length) items.push(sep);

  for (const p of snap.agent.problems) items.push(info(`⚠ ${p}`, p));
  for (const f of snap.flakes) {
    if (f.error) items.push(info(`⚠ ${folderName(f.dir)}: ${firstLine(f.error)}`, f.error));
    for (const w of f.warnings) items.push(info(`${folderName(f.dir)}: ${firstLine(w)}`, w));
  }
  if (items.length) items.push(sep);

  // The flakes the agent runs: settings' plus any a headless `nixvm daemon --flake DIR` was given.
  const flakes = snap.flakes.map((f) => f.dir);
  if (flakes.length === 0) {
    items.push(info('No flake configured'));
    items.push({
      label: 'Choose Flake Folder…',
      click: () => d({ kind: 'ui', verb: 'chooseFlakeFolder', params: {} }),
    });
  } else if (snap.vms.length === 0) {
    const evaluating = snap.flakes.some((f) => f.evaluating);
    const errored = snap.flakes.some((f) => f.error);
    if (evaluating) items.push(info('Evaluating flake…'));
    else if (!errored) items.push(info('No nixosConfigurations in the flake'));
  } else {
    for (const vm of snap.vms) {
      items.push({ label: vmLabel(vm), id: `vm:${vm.name}`, submenu: vmItems(vm, snap.agent, d) });
    }
  }

  items.push(sep);
  const stale = snap.vms.filter((v) => v.stale && v.spec !== null);
  items.push({
    label: stale.length ? `Rebuild All Stale (${stale.length})` : 'Rebuild All Stale',
    enabled: stale.length > 0,
    click: () => d({ kind: 'agent', method: 'rebuildStale', params: {} }),
  });
  if (flakes.length > 1) {
    items.push({
      label: 'Open Flake Folder',
      submenu: flakes.map((dir) => ({
        label: dir,
        click: () => d({ kind: 'ui', verb: 'openFlakeFolder', params: { dir } }),
      })),
    });
  } else {
    items.push({
      label: 'Open Flake Folder',
      enabled: flakes.length === 1,
      click: () => d({ kind: 'ui', verb: 'openFlakeFolder', params: flakes[0] ? { dir: flakes[0] } : {} }),
    });
  }
  items.push(sep);
  items.push({
    label: 'Settings…',
    ...(isMac ? { accelerator: 'Command+,' } : {}),
    click: () => d({ kind: 'ui', verb: 'openSettings', params: {} }),
  });
  items.push({
    label: 'Launch at Login',
    type: 'checkbox',
    checked: facts.launchAtLogin,
    click: () => d({ kind: 'ui', verb: 'setLaunchAtLogin', params: { enabled: !facts.launchAtLogin } }),
  });
  items.push(sep);
  const up = snap.vms.filter(isUp).length;
  const quitNote = up === 0 ? '' : snap.settings.onQuit === 'stop' ? ` and Stop ${up} VM${up === 1 ? '' : 's'}` : '';
  items.push({
    label: `Quit NixVM${quitNote}`,
    ...(isMac ? { accelerator: 'Command+Q' } : {}),
    ...(up > 0 && snap.settings.onQuit === 'keep' ? { toolTip: 'Running VMs keep running after NixVM quits.' } : {}),
    click: () => d({ kind: 'ui', verb: 'quit', params: {} }),
  });
  return items;
}
