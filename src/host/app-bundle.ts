/**
 * NixVM.app's layout, as electron-builder makes it and the faces need to know it: the app's
 * executable, and the `nixvm` it carries (its CLI bundle in Contents/Resources/cli, with a
 * launcher that runs it with the app's own Electron binary as Node). From a path the CLI or the
 * app runs from, this says whether it is that app or a checkout, and so what a login item (which
 * must outlive any checkout) may point at. Pure but for the existence checks it is handed.
 */
import fs from 'node:fs';
import path from 'node:path';

export const APP_EXECUTABLE_NAME = 'NixVM';
/** Where the CLI sits inside the app: Contents/Resources/cli/{nixvm, nixvm.mjs, chunks/}. */
export const APP_CLI_DIR = path.join('Contents', 'Resources', 'cli');
export const APP_CLI_LAUNCHER = 'nixvm';

/** The `.app` that `file` lies inside (its outermost `*.app/Contents/…`), or null. */
export function appBundleOf(file: string): string | null {
  const parts = path.resolve(file).split(path.sep);
  for (let i = 1; i < parts.length - 1; i++) {
    if (parts[i]!.endsWith('.app') && parts[i + 1] === 'Contents') return parts.slice(0, i + 1).join(path.sep) || null;
  }
  return null;
}

export function appExecutable(app: string): string {
  return path.join(app, 'Contents', 'MacOS', APP_EXECUTABLE_NAME);
}

/** The launcher of the app's CLI: what a PATH symlink, Terminal and ssh's ProxyCommand run. */
export function appCliLauncher(app: string): string {
  return path.join(app, APP_CLI_DIR, APP_CLI_LAUNCHER);
}

/** Where an installed NixVM.app is looked for, most usual first. */
export function installedAppCandidates(home: string): string[] {
  return ['/Applications/NixVM.app', path.join(home, 'Applications', 'NixVM.app')];
}

/** The argv that runs this nixvm again from anywhere: the app's launcher when it is the app's CLI. */
export function selfCommand(execPath: string, entry: string): string[] {
  const app = appBundleOf(entry);
  return app ? [appCliLauncher(app)] : [execPath, path.resolve(entry)];
}

export type LoginProgram =
  | { programArguments: string[]; app: string; refused?: undefined }
  | { refused: string; programArguments?: undefined };

/**
 * What the login item runs: the app (the menubar agent; the app's CLI and the app itself write
 * the same item) that `entry` lies in, else an installed NixVM.app. A checkout is never pointed
 * at: its Node, node_modules and sources move or go with it, and login would then start nothing.
 */
export function loginProgram(o: {
  /** The file this face runs from (the CLI's script, the app's asar or folder). */
  entry: string;
  home: string;
  isFile?: (p: string) => boolean;
}): LoginProgram {
  const isFile =
    o.isFile ??
    ((p: string) => {
      try {
        return fs.statSync(p).isFile();
      } catch {
        return false;
      }
    });
  const own = appBundleOf(o.entry);
  for (const app of own ? [own] : installedAppCandidates(o.home)) {
    const exe = appExecutable(app);
    if (isFile(exe)) return { programArguments: [exe], app };
  }
  if (own) {
    return {
      refused: `${own} has no ${path.join('Contents', 'MacOS', APP_EXECUTABLE_NAME)}; reinstall NixVM.app, then turn the login item on again.`,
    };
  }
  return {
    refused:
      `This nixvm runs from a checkout (${path.dirname(path.resolve(o.entry))}), and a login item pointing into it would ` +
      `start nothing once the checkout moves or is deleted. Install NixVM.app (\`npm run package\`, then drag it to ` +
      `Applications) and turn the login item on from the app or its nixvm; until then, start the agent with \`npx nixvm daemon\`.`,
  };
}
