/** The UiHost over Electron: clipboard, Finder, dialogs, windows, login item, quit. */
import { confirmDialog } from './app-host.ts';
import path from 'node:path';
import { app, clipboard, dialog, shell } from 'electron';
import { AgentError } from '../api/errors.ts';
import { APP_CLI_LAUNCHER } from '../host/app-bundle.ts';
import { notAPlainFolder, type UiHost } from '../app/actions.ts';
import { getLaunchAtLogin, setLaunchAtLogin } from './login-item.ts';
import { openInConsole, openInTerminal } from '../app/terminal.ts';
import type { Windows } from './windows.ts';

export interface HostHooks {
  quit(): void;
  loginChanged(enabled: boolean): void;
  fitDropdown(height: number): void;
}

/** How Terminal and ssh's ProxyCommand run nixvm from this app: the CLI it carries, by its launcher. */
export function nixvmArgv(): string[] {
  return app.isPackaged
    ? [path.join(process.resourcesPath, 'cli', APP_CLI_LAUNCHER)]
    : ['/usr/bin/env', 'ELECTRON_RUN_AS_NODE=1', process.execPath, path.join(app.getAppPath(), 'bin', 'nixvm.js')];
}

export function electronHost(windows: Windows, hooks: HostHooks): UiHost {
  return {
    writeClipboard: (text) => clipboard.writeText(text),
    openTerminal: openInTerminal,
    nixvmCommand: nixvmArgv,
    // The app carries examples/flake outside its asar (extraResources); the copy is the user's to edit.
    exampleFlake: () => ({
      source: path.join(app.isPackaged ? process.resourcesPath : app.getAppPath(), 'examples', 'flake'),
      dest: path.join(app.getPath('home'), 'NixVM', 'example'),
    }),
    async openFolder(dir) {
      // The app model checked already; openPath runs what it opens, so check again right here.
      const bundle = notAPlainFolder(dir);
      if (bundle) throw new AgentError('bad-request', bundle);
      const err = await shell.openPath(dir);
      if (err) throw new AgentError('failed', `Could not open ${dir} (${err}); check that the folder still exists.`);
    },
    revealPath: (p) => shell.showItemInFolder(p),
    openLogWindow: (vm, kind) => windows.openLog(vm, kind),
    openFlakeErrorWindow: (dir) => windows.openFlakeError(dir),
    openConsoleApp: openInConsole,
    async chooseFolder() {
      const r = await dialog.showOpenDialog({
        title: 'Choose a flake folder',
        message: 'Choose the folder that holds your flake.nix.',
        buttonLabel: 'Use Folder',
        properties: ['openDirectory', 'createDirectory'],
      });
      return r.canceled ? null : (r.filePaths[0] ?? null);
    },
    openSettings: () => windows.openSettings(),
    getLaunchAtLogin,
    async setLaunchAtLogin(enabled) {
      const now = await setLaunchAtLogin(enabled);
      hooks.loginChanged(now);
      return now;
    },
    quit: () => hooks.quit(),
    confirm: confirmDialog,
    fitDropdown: (height) => hooks.fitDropdown(height),
  };
}
