/**
 * NixVM.app's main process: thin wiring. One instance (Electron's single-instance lock; the
 * agent's own lock guards against a headless `nixvm daemon`), tray only (no Dock icon), the
 * in-process Agent as the single source of state, and the faces over it: tray + native menu,
 * the menubar dropdown, log and settings windows, notifications. Quit honours settings.onQuit.
 */
import { Tray, app, dialog } from 'electron';
import { menubar } from 'menubar';
import path from 'node:path';
import { isUp } from '../api/describe.ts';
import { createUiHandlers, runAction, stopForQuit } from '../app/actions.ts';
import { connectAppAgent, type AppAgent } from '../app/agent-connection.ts';
import { createAppHandlers } from '../app/app-verbs.ts';
import { IpcDispatcher } from '../app/dispatch.ts';
import { electronAppHost } from './app-host.ts';
import { electronHost, nixvmArgv } from './electron-host.ts';
import { registerIpc } from './ipc.ts';
import { getLaunchAtLogin } from './login-item.ts';
import { Notifier } from './notify.ts';
import { TrayController, trayImage } from './tray.ts';
import {
  Windows,
  hardenSession,
  hardenWebContents,
  pageUrl,
  rendererBaseUrl,
  secureWebPreferences,
  type AppPaths,
} from './windows.ts';

// Bundled to dist/main/main.js; the renderer and preload are its siblings, icons/ sits beside dist/.
const distDir = path.resolve(import.meta.dirname, '..');
const paths: AppPaths = {
  rendererDir: path.join(distDir, 'renderer'),
  preload: path.join(distDir, 'preload', 'preload.cjs'),
};
const iconsDir = path.join(distDir, '..', 'icons');
const DROPDOWN = { width: 380, initialHeight: 420, minHeight: 180, maxHeight: 680 };

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function main(): Promise<void> {
  app.setName('NixVM');
  app.on('web-contents-created', (_e, wc) => hardenWebContents(wc));
  // A tray app keeps running with no window open.
  app.on('window-all-closed', () => {});
  await app.whenReady();
  // Packaged builds get LSUIElement from plist/Info.plist; dev runs hide the Dock icon here.
  app.dock?.hide();
  hardenSession();

  let connected: { agent: AppAgent; owned: boolean };
  try {
    connected = await connectAppAgent((line) => console.error(`nixvm: control socket: ${line}`), nixvmArgv());
  } catch (e) {
    dialog.showErrorBox('NixVM could not start', message(e));
    // Exit 0: the user has been told, and launchd's KeepAlive (crash only) must not bring the
    // same dialog back every ten seconds.
    app.exit(0);
    return;
  }
  const { agent, owned } = connected;

  const windows = new Windows(paths);
  let launchAtLogin = await getLaunchAtLogin().catch(() => false);
  let quitting = false;
  let trayCtl: TrayController | null = null;
  if (!owned) {
    // The headless agent this app is a face for quit or crashed (launchd may be restarting it):
    // start over, which either takes the lock and becomes the agent (adopting running VMs) or
    // connects to its successor, instead of showing a frozen snapshot whose every action fails.
    agent.onClose?.((err) => {
      if (err && !quitting) {
        app.relaunch();
        app.exit(0);
      }
    });
  }

  async function quit(): Promise<void> {
    if (quitting) return;
    quitting = true;
    windows.closeAll();
    try {
      if (owned) {
        const snap = await agent.call('snapshot', {});
        if (snap.settings.onQuit === 'stop' && snap.vms.some(isUp)) trayCtl?.setOverride('Stopping…');
        const { failed } = await stopForQuit(agent);
        if (failed.length) {
          await dialog.showMessageBox({
            type: 'warning',
            message: `NixVM could not stop ${failed.map((f) => f.vm).join(', ')}.`,
            detail: `${failed.map((f) => `${f.vm}: ${f.error}`).join('\n')}\n\nThey keep running; stop them with \`nixvm stop\` or Activity Monitor.`,
          });
        }
      }
      await agent.close();
    } catch (e) {
      console.error(`nixvm: while quitting: ${message(e)}`);
    }
    app.exit(0);
  }
  // Cmd-Q, logout and shutdown come through here too: run the on-quit policy first.
  app.on('before-quit', (ev) => {
    if (!quitting) {
      ev.preventDefault();
      void quit();
    }
  });

  let fitDropdown = (_height: number): void => {};
  const ui = createUiHandlers(
    agent,
    electronHost(windows, {
      quit: () => void quit(),
      loginChanged: (v) => (launchAtLogin = v),
      fitDropdown: (h) => fitDropdown(h),
    }),
  );
  registerIpc(new IpcDispatcher(agent, ui, createAppHandlers(electronAppHost())), rendererBaseUrl(paths));

  // Where notifications are unavailable, the notice shows as the tray title until the menu is opened.
  const notifier = new Notifier(
    (vm, kind) => windows.openLog(vm, kind),
    () => trayCtl?.refresh(),
  );
  const tray = new Tray(trayImage(iconsDir, 'idle'));
  trayCtl = new TrayController(tray, iconsDir, {
    facts: () => ({ platform: process.platform, launchAtLogin, unseenNotices: notifier.pending }),
    dispatch: (action) =>
      void runAction(action, agent, ui).catch((e) => dialog.showMessageBox({ type: 'warning', message: message(e) })),
    opened: () => notifier.seen(),
  });

  const mac = process.platform === 'darwin';
  const mb = menubar({
    tray,
    index: pageUrl(paths, 'index', mac ? { vibrancy: '1' } : {}),
    // Created up front so it is current (and opens instantly) when the icon is clicked.
    preloadWindow: true,
    showDockIcon: false,
    tooltip: 'NixVM',
    browserWindow: {
      width: DROPDOWN.width,
      height: DROPDOWN.initialHeight,
      resizable: false,
      movable: false,
      minimizable: false,
      maximizable: false,
      fullscreenable: false,
      skipTaskbar: true,
      ...(mac
        ? { vibrancy: 'popover' as const, visualEffectState: 'active' as const, backgroundColor: '#00000000' }
        : {}),
      webPreferences: secureWebPreferences(paths),
    },
  });
  app.on('second-instance', () => void mb.showWindow());
  // The dropdown grows with its rows (down from the menu bar), within reason.
  fitDropdown = (height) => {
    const win = mb.window;
    if (!win || win.isDestroyed()) return;
    const h = Math.max(DROPDOWN.minHeight, Math.min(DROPDOWN.maxHeight, Math.ceil(height)));
    const [w, cur] = win.getContentSize();
    if (cur !== h) win.setContentSize(w ?? DROPDOWN.width, h);
  };

  agent.subscribe((ev) => {
    if (ev.type === 'snapshot') trayCtl?.update(ev.snapshot);
    else if (ev.type === 'notice') notifier.show(ev.notice);
  });
  trayCtl.update(await agent.call('snapshot', {}));
}

if (!app.requestSingleInstanceLock()) {
  // The running instance gets 'second-instance' and opens its dropdown.
  app.quit();
} else {
  main().catch((e) => {
    dialog.showErrorBox('NixVM failed', message(e));
    app.exit(1);
  });
}
