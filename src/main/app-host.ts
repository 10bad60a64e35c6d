/** The AppHost over Electron: the app's own facts, the file system, the runner, a consent dialog. */
import fs from 'node:fs';
import path from 'node:path';
import { app, dialog } from 'electron';
import type { AppHost } from '../app/app-verbs.ts';
import { parseUserPath, userPathArgv, type PathEntry } from '../app/cli-tool.ts';
import { APP_CLI_LAUNCHER } from '../host/app-bundle.ts';
import { run } from '../host/runner.ts';

/** A consent dialog: the change, what it does, the button that does it, and Cancel. */
export async function confirmDialog({
  message,
  detail,
  button,
}: {
  message: string;
  detail: string;
  button: string;
}): Promise<boolean> {
  const r = await dialog.showMessageBox({
    type: 'question',
    message,
    detail,
    buttons: [button, 'Cancel'],
    defaultId: 0,
    cancelId: 1,
  });
  return r.response === 0;
}

/** Whether this build was signed (electron-builder's extraMetadata, scripts/electron-builder.config.ts). */
function builtSigned(): boolean {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(app.getAppPath(), 'package.json'), 'utf8')) as {
      nixvm?: { signed?: unknown };
    };
    return pkg.nixvm?.signed === true;
  } catch {
    return false;
  }
}

function entry(p: string): PathEntry {
  try {
    const st = fs.lstatSync(p);
    return st.isSymbolicLink() ? { kind: 'link', target: fs.readlinkSync(p) } : { kind: 'other' };
  } catch {
    return { kind: 'none' };
  }
}

function writable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The PATH the user's terminal has: an app started by launchd gets only /usr/bin:/bin:…, so ask
 * their login shell once (it may print its own greeting; the mark finds the line), else fall back
 * to /etc/paths and this process's PATH.
 */
let userPath: Promise<string[]> | null = null;
function userPathDirs(): Promise<string[]> {
  userPath ??= run(userPathArgv(process.env.SHELL || '/bin/zsh'), { allowFailure: true, timeoutMs: 5000 })
    .then((r) => parseUserPath(r.stdout))
    .catch(() => null)
    .then((dirs) => {
      if (dirs) return dirs;
      let etc: string[] = [];
      try {
        etc = fs.readFileSync('/etc/paths', 'utf8').split('\n').filter(Boolean);
      } catch {
        // No /etc/paths: this process's PATH alone.
      }
      return [...etc, ...(process.env.PATH ?? '').split(':').filter(Boolean)];
    });
  return userPath;
}

export function electronAppHost(): AppHost {
  return {
    packaged: app.isPackaged,
    signed: app.isPackaged && builtSigned(),
    platform: process.platform,
    async cliToolFacts() {
      return {
        launcher: app.isPackaged ? path.join(process.resourcesPath, 'cli', APP_CLI_LAUNCHER) : null,
        home: app.getPath('home'),
        pathDirs: await userPathDirs(),
        exists: (d) => fs.existsSync(d),
        writable,
        entry,
      };
    },
    confirm: confirmDialog,
    async run(argv) {
      const r = await run(argv, { allowFailure: true, timeoutMs: 120_000 });
      return { exitCode: r.exitCode ?? 1, stderr: r.stderr };
    },
  };
}
