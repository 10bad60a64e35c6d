/**
 * The app's windows (the menubar dropdown is created by `menubar`, with the same preferences):
 * log windows (one per VM) and the settings window. All hardened alike: context isolation,
 * sandbox, no Node, the preload as the only bridge, no navigation, no new windows, no
 * permissions; the pages carry a strict CSP of their own.
 */
import { BrowserWindow, app, nativeTheme, session, shell, type WebContents, type WebPreferences } from 'electron';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { LogKind } from '../api/types.ts';

export interface AppPaths {
  /** dist/renderer: index.html, log.html, settings.html. */
  rendererDir: string;
  /** dist/preload/preload.cjs */
  preload: string;
}

export type Page = 'index' | 'log' | 'settings';

export function rendererBaseUrl(p: AppPaths): string {
  return pathToFileURL(p.rendererDir + path.sep).href;
}

export function pageUrl(p: AppPaths, page: Page, query: Record<string, string> = {}): string {
  const url = new URL(`${page}.html`, rendererBaseUrl(p));
  for (const [k, v] of Object.entries({ platform: process.platform, ...query })) url.searchParams.set(k, v);
  return url.href;
}

export function secureWebPreferences(p: AppPaths): WebPreferences {
  return {
    preload: p.preload,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    webviewTag: false,
    navigateOnDragDrop: false,
    spellcheck: false,
    devTools: !app.isPackaged,
  };
}

/** Applied to every webContents the app creates (app 'web-contents-created'). */
export function hardenWebContents(wc: WebContents): void {
  wc.setWindowOpenHandler(({ url }) => {
    // Links in logs (if any) open in the browser, never in an app window.
    if (/^https:\/\//.test(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  wc.on('will-navigate', (ev, url) => {
    if (url !== wc.getURL()) ev.preventDefault();
  });
  wc.on('will-redirect', (ev) => ev.preventDefault());
  wc.on('will-attach-webview', (ev) => ev.preventDefault());
}

/** Session-wide: no permission (camera, notifications from pages, …) is ever granted to a page. */
export function hardenSession(): void {
  session.defaultSession.setPermissionRequestHandler((_wc, _perm, cb) => cb(false));
  session.defaultSession.setPermissionCheckHandler(() => false);
}

const bg = () => (nativeTheme.shouldUseDarkColors ? '#2b2b2d' : '#ececec');

export class Windows {
  private readonly paths: AppPaths;
  private readonly logs = new Map<string, BrowserWindow>();
  private settings: BrowserWindow | null = null;

  constructor(paths: AppPaths) {
    this.paths = paths;
  }

  private create(opts: Electron.BrowserWindowConstructorOptions, url: string): BrowserWindow {
    const win = new BrowserWindow({
      show: false,
      backgroundColor: bg(),
      titleBarStyle: process.platform === 'darwin' ? 'hiddenInset' : 'default',
      webPreferences: secureWebPreferences(this.paths),
      ...opts,
    });
    win.once('ready-to-show', () => {
      win.show();
      app.focus({ steal: true });
    });
    void win.loadURL(url);
    return win;
  }

  /** One log window per VM; asking again focuses it (switching to the kind asked for). */
  openLog(vm: string, kind: LogKind): void {
    this.#logWindow(vm, `${vm} — NixVM`, { vm, kind }, true);
  }

  /** The log window on a flake's evaluation error: one per flake, reused like a VM's. */
  openFlakeError(dir: string): void {
    this.#logWindow(`flake:${dir}`, `${path.basename(dir)} — Evaluation Error — NixVM`, { flake: dir }, false);
  }

  /** The log page for `key`: the open one focused (and reloaded with `query` if `reload`), else a new one. */
  #logWindow(key: string, title: string, query: Record<string, string>, reload: boolean): void {
    const existing = this.logs.get(key);
    if (existing && !existing.isDestroyed()) {
      if (reload) void existing.loadURL(pageUrl(this.paths, 'log', query));
      existing.show();
      existing.focus();
      return;
    }
    const win = this.create(
      { width: 900, height: 560, minWidth: 520, minHeight: 240, title },
      pageUrl(this.paths, 'log', query),
    );
    this.logs.set(key, win);
    win.on('closed', () => this.logs.delete(key));
  }

  openSettings(): void {
    if (this.settings && !this.settings.isDestroyed()) {
      this.settings.show();
      this.settings.focus();
      return;
    }
    const win = this.create(
      {
        width: 560,
        height: 700,
        minWidth: 480,
        minHeight: 420,
        resizable: true,
        maximizable: false,
        fullscreenable: false,
        title: 'NixVM Settings',
      },
      pageUrl(this.paths, 'settings'),
    );
    this.settings = win;
    win.on('closed', () => (this.settings = null));
  }

  closeAll(): void {
    for (const w of BrowserWindow.getAllWindows()) if (!w.isDestroyed()) w.destroy();
  }
}
