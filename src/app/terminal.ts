/**
 * "Open ssh in Terminal" and "Open in Console": write an executable `.command` file and hand it
 * to the app with `open -a`. Terminal runs `.command` files itself, so no Apple Events (and no
 * automation permission prompt) are involved. Everything goes through the one runner.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentError } from '../api/errors.ts';
import { RunError, run } from '../host/runner.ts';
import { consoleAppArgv, terminalOpenArgv } from './actions.ts';

/** `open -a` failures say "Unable to find application named 'X'": turn that into what to do. */
function openError(app: string, err: unknown): AgentError {
  const text = err instanceof RunError ? `${err.stderr}${err.stdout}` : '';
  if (/unable to find application/i.test(text)) {
    return new AgentError(
      'failed',
      `There is no application named "${app}" on this Mac: install it, or choose another terminal in NixVM Settings.`,
    );
  }
  const why = err instanceof Error ? err.message : String(err);
  return new AgentError('failed', `Could not open ${app} (${why}).`);
}

export async function writeCommandFile(file: string, body: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, body, { mode: 0o700 });
  // writeFile's mode only applies when it creates the file.
  await chmod(file, 0o700);
}

export async function openInTerminal(file: string, body: string, terminalApp: string): Promise<void> {
  await writeCommandFile(file, body);
  const argv = terminalOpenArgv(terminalApp, file);
  try {
    await run(argv);
  } catch (e) {
    throw openError(argv[2]!, e);
  }
}

export async function openInConsole(file: string): Promise<void> {
  try {
    await run(consoleAppArgv(file));
  } catch (e) {
    throw openError('Console', e);
  }
}
