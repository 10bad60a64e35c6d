/**
 * What the tray shows for a snapshot: which template icon, the title next to it and the tooltip.
 * Pure, so the precedence (building over error over running over idle) is tested without Electron.
 */
import type { AgentSnapshot, Notice } from '../api/types.ts';
import { isUp, truncate } from '../api/describe.ts';

export type TrayIcon = 'idle' | 'running' | 'building' | 'error';
export const TRAY_ICONS: readonly TrayIcon[] = ['idle', 'running', 'building', 'error'];

export interface TrayView {
  icon: TrayIcon;
  /** Text beside the icon: build percentage while building, else the running count when > 0. */
  title: string;
  tooltip: string;
}

/** Longest notice shown as the tray title (the menu bar has little room). */
const NOTICE_TITLE_MAX = 28;

/**
 * `unseen`: notices that could not be shown as system notifications (an unsigned app on recent
 * macOS), newest first. Until the menu that lists them is opened, the newest one is the title.
 */
export function trayView(snap: AgentSnapshot, unseen: readonly Notice[] = []): TrayView {
  const building = snap.vms.filter((v) => v.build.status === 'building');
  const running = snap.vms.filter(isUp);
  const crashed = snap.vms.filter((v) => v.state === 'crashed');
  const failed = snap.vms.filter((v) => v.build.status === 'failed' || (v.spec === null && v.error));
  const flakeErrors = snap.flakes.filter((f) => f.error);
  const problems = snap.agent.problems.length + crashed.length + failed.length + flakeErrors.length;

  const lines: string[] = [];
  if (running.length) lines.push(`${running.length} running: ${running.map((v) => v.name).join(', ')}`);
  if (building.length) lines.push(`Building ${building.map((v) => v.name).join(', ')}`);
  if (crashed.length) lines.push(`Crashed: ${crashed.map((v) => v.name).join(', ')}`);
  if (failed.length) lines.push(`Failed: ${failed.map((v) => v.name).join(', ')}`);
  if (flakeErrors.length)
    lines.push(`${flakeErrors.length} flake${flakeErrors.length === 1 ? '' : 's'} failed to evaluate`);
  if (snap.agent.problems.length) lines.push(...snap.agent.problems);
  for (const n of unseen) lines.push(`${n.title}${n.body ? `: ${n.body}` : ''}`);
  const tooltip = ['NixVM', ...lines].join('\n');

  if (building.length) {
    // The slowest build is the one the user waits for.
    const pct = Math.min(...building.map((v) => v.build.progress?.percent ?? 0));
    return { icon: 'building', title: `${Math.floor(pct)}%`, tooltip };
  }
  const newest = unseen[0];
  const title = newest ? truncate(newest.title, NOTICE_TITLE_MAX) : running.length > 0 ? String(running.length) : '';
  if (problems > 0 || unseen.some((n) => n.level === 'error')) return { icon: 'error', title, tooltip };
  if (running.length) return { icon: 'running', title, tooltip };
  return { icon: 'idle', title, tooltip };
}
