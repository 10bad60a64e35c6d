/**
 * The tray icon: template image per state, title (running count or build %), tooltip, and the
 * native menu on right click, built fresh from the latest snapshot each time it opens.
 */
import { Menu, nativeImage, type NativeImage, type Tray } from 'electron';
import path from 'node:path';
import type { AgentSnapshot } from '../api/types.ts';
import { menuTemplate, type Dispatch, type MenuFacts } from '../app/menu-template.ts';
import { TRAY_ICONS, trayView, type TrayIcon } from '../app/tray-state.ts';

export function trayImage(iconsDir: string, icon: TrayIcon): NativeImage {
  // `<state>Template.png` next to `<state>Template@2x.png`: Electron loads both and treats the
  // "Template" suffix as a template image (tinted by macOS for light/dark menu bars).
  const img = nativeImage.createFromPath(path.join(iconsDir, `${icon}Template.png`));
  img.setTemplateImage(true);
  return img;
}

export class TrayController {
  private readonly tray: Tray;
  private readonly images: Record<TrayIcon, NativeImage>;
  private last = { icon: '', title: '', tooltip: '' };
  private snap: AgentSnapshot | null = null;
  private override: string | null = null;

  private readonly facts: () => MenuFacts;

  constructor(tray: Tray, iconsDir: string, menu: { facts: () => MenuFacts; dispatch: Dispatch; opened?: () => void }) {
    this.tray = tray;
    this.facts = menu.facts;
    this.images = Object.fromEntries(TRAY_ICONS.map((i) => [i, trayImage(iconsDir, i)])) as Record<
      TrayIcon,
      NativeImage
    >;
    tray.setImage(this.images.idle);
    // Not setContextMenu: on macOS that would take over the left click the dropdown needs.
    tray.on('right-click', () => {
      if (!this.snap) return;
      tray.popUpContextMenu(Menu.buildFromTemplate(menuTemplate(this.snap, menu.facts(), menu.dispatch)));
      menu.opened?.();
      // The notices it listed are seen now: the title goes back to the state's.
      this.refresh();
    });
  }

  /** Redraw from the last snapshot (the unseen notices changed). */
  refresh(): void {
    if (this.snap) this.update(this.snap);
  }

  update(snap: AgentSnapshot): void {
    this.snap = snap;
    const v = trayView(snap, this.facts().unseenNotices);
    const title = this.override ?? v.title;
    if (v.icon !== this.last.icon) this.tray.setImage(this.images[v.icon]);
    if (title !== this.last.title) this.tray.setTitle(title, { fontType: 'monospacedDigit' });
    if (v.tooltip !== this.last.tooltip) this.tray.setToolTip(v.tooltip);
    this.last = { icon: v.icon, title, tooltip: v.tooltip };
  }

  /** A temporary title (e.g. "Stopping…" while quitting); null returns to the state's. */
  setOverride(title: string | null): void {
    this.override = title;
    this.last.title = '\0';
    if (this.snap) this.update(this.snap);
    else this.tray.setTitle(title ?? '');
  }
}
