/**
 * "Launch at login" for the app: the same per-user LaunchAgent the CLI's `nixvm login-item`
 * manages (src/host/launchd.ts), pointed at NixVM.app, so the two never disagree or start two
 * agents. Loaded at the next login only: this process already is the agent.
 */
import { app } from 'electron';
import { installLoginItem, loginItemStatus, removeLoginItem } from '../host/launchd.ts';

/** What launchd should run: the app bundle's executable (or electron + this app in dev). */
export function appProgramArguments(): string[] {
  return app.isPackaged ? [app.getPath('exe')] : [process.execPath, app.getAppPath()];
}

export async function getLaunchAtLogin(): Promise<boolean> {
  return (await loginItemStatus()).installed;
}

export async function setLaunchAtLogin(enabled: boolean): Promise<boolean> {
  const status = enabled
    ? await installLoginItem({ programArguments: appProgramArguments(), load: false })
    : // Not unloaded: if launchd started this very app, bootout would quit it.
      await removeLoginItem({ unload: false });
  return status.installed;
}
