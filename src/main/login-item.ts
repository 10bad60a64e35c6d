/**
 * "Launch at login" for the app: the same per-user LaunchAgent the CLI's `nixvm login-item`
 * manages (src/host/launchd.ts), pointed at NixVM.app, so the two never disagree or start two
 * agents. Loaded at the next login only: this process already is the agent.
 */
import { app } from 'electron';
import { AgentError } from '../api/errors.ts';
import { loginProgram } from '../host/app-bundle.ts';
import { installLoginItem, loginItemStatus, removeLoginItem } from '../host/launchd.ts';

/**
 * What launchd should run: this app's executable. A development run (Electron from a checkout's
 * node_modules) points at an installed NixVM.app instead, or says why it will not write one.
 */
export function appProgramArguments(): string[] {
  const program = loginProgram({
    entry: app.isPackaged ? app.getPath('exe') : app.getAppPath(),
    home: app.getPath('home'),
  });
  if (program.refused !== undefined) throw new AgentError('failed', program.refused);
  return program.programArguments;
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
