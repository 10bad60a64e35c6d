/**
 * How a VM's run ended, in words: a clean guest power-off told from a crash by the console's last
 * lines, vfkit's own reason for refusing a configuration, and the one sentence a user reads.
 */
import { readFileSync } from 'node:fs';
import type { VmRuntimePaths } from './runtime-paths.ts';
import { vfkitLogPath } from './boot-record.ts';

export interface EndInfo {
  code: number | null;
  signal: string | null;
}

/**
 * Console lines a clean guest power-off or reboot leaves: systemd's final targets, systemd-shutdown,
 * the kernel's last words. (Virtualization.framework ends the VM on a guest reboot too.)
 */
const CLEAN_END =
  /Reached target (System )?(Power-?Off|Reboot|Halt)|systemd-shutdown.*(Powering off|Rebooting)|reboot: (Power down|Restarting system)|System halted/i;

export function endedCleanly(lastLines: readonly string[]): boolean {
  return lastLines.some((l) => CLEAN_END.test(l));
}

export function how(info: EndInfo): string {
  if (info.signal) return `killed by ${info.signal}`;
  if (info.code === null) return 'exit code unknown';
  return `exit code ${info.code}`;
}

export function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export function crashSentence(name: string, info: EndInfo, lastLines: string[]): string {
  const last = [...lastLines].reverse().find((l) => l.trim());
  const cause = info.signal
    ? `vfkit was killed by ${info.signal}`
    : info.code === null
      ? 'its vfkit ended while the agent was not its parent, so the exit code is unknown'
      : `vfkit exited with code ${info.code}`;
  return `VM ${JSON.stringify(name)} crashed: ${cause}${last ? `; the console's last line was "${truncate(last.trim(), 160)}"` : ''}.`;
}

/** A run that ended while no agent watched, without a clean shutdown. */
export function endedAwaySentence(name: string, lastLines: string[]): string {
  const last = lastLines.at(-1);
  return (
    `VM ${JSON.stringify(name)} ended while nixvm was not running, without a clean shutdown` +
    `${last ? ` (last console line: ${truncate(last, 120)})` : ''}; start it again, and see its console log for why.`
  );
}

/**
 * vfkit's own reason for a failed start, from its output, as one sentence with what to do. Before
 * its REST API answered, vfkit was still checking the configuration: it refused it. After, the VM
 * had started and died while booting.
 */
/** Why a process might have died this way, when it did not say (the end of a sentence, or ''). */
export function deathReason(info: EndInfo): string {
  switch (info.signal) {
    case 'SIGKILL':
      return ': something outside nixvm killed it, or macOS ended it for lack of memory';
    case 'SIGTERM':
    case 'SIGINT':
    case 'SIGHUP':
      return ': something outside nixvm asked it to quit';
    case 'SIGSEGV':
    case 'SIGBUS':
    case 'SIGILL':
    case 'SIGABRT':
    case 'SIGTRAP':
      return ': vfkit itself crashed';
    default:
      return '';
  }
}

export function startFailure(
  name: string,
  paths: VmRuntimePaths,
  info: EndInfo,
  restSeen: boolean,
  lastLines: readonly string[] = [],
): string {
  let text = '';
  try {
    text = readFileSync(vfkitLogPath(paths), 'utf8');
  } catch {
    // No output at all.
  }
  const msg = vfkitMessage(text)?.replace(/[.\s]+$/, '') ?? null;
  if (restSeen) {
    return `VM ${JSON.stringify(name)} crashed while booting (vfkit ${how(info)}${msg ? `: ${msg}` : ''}); see its console log and ${vfkitLogPath(paths)}.`;
  }
  if (!msg) {
    const last = [...lastLines].reverse().find((l) => l.trim());
    const clue = last ? `; the console's last line was "${truncate(last.trim(), 160)}"` : '';
    return `vfkit for VM ${JSON.stringify(name)} exited while starting (${how(info)}${deathReason(info)}) before printing a reason${clue}; see ${vfkitLogPath(paths)}.`;
  }
  return `vfkit refused to start VM ${JSON.stringify(name)}: ${msg}; ${hintFor(msg)}.`;
}

/**
 * The error line in vfkit's output. vfkit logs with logrus (`time=… level=… msg="…"`) and on
 * failure cobra prints `Error: <err>` (plus usage) and main prints `<err>` again last.
 */
export function vfkitMessage(text: string): string | null {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const cobra = lines.find((l) => l.startsWith('Error: '));
  if (cobra) return cobra.slice('Error: '.length).trim();
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = lines[i]!.match(/level=(?:fatal|error|panic)\s+msg="((?:[^"\\]|\\.)*)"/);
    if (m?.[1]) return m[1].replace(/\\"/g, '"');
  }
  const last = lines.at(-1);
  return last && !/level=(info|debug|warning)/.test(last) ? last : null;
}

function hintFor(msg: string): string {
  if (/rosetta is not installed/i.test(msg))
    return 'install Rosetta with `softwareupdate --install-rosetta --agree-to-license` or turn off virtualisation.rosetta.enable';
  if (/rosetta is (not supported|unsupported)/i.test(msg))
    return 'Rosetta needs an Apple silicon Mac, so turn off virtualisation.rosetta.enable for this VM';
  if (/kernel must be uncompressed|compressed file/i.test(msg))
    return 'on Apple silicon Virtualization.framework boots only an uncompressed kernel Image, so build the VM with one';
  return "fix the VM's configuration and start it again";
}
