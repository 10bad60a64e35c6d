/**
 * The two marks the agent puts in the logs it keeps, shared by the agent that writes them and the
 * faces that read them (the log window draws them; the CLI prints them as they are):
 *
 * - a console log starts each run with `[nixvm: run started at <ISO time>]`, written by the
 *   supervisor before vfkit starts, so a log that is followed across a restart (or read with
 *   the runs before it) says where each run begins;
 * - every build log line starts with the time the agent received it from nix (`<ISO time> `).
 */

const RUN_START = /^\[nixvm: run started at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\]$/;
const STAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) /;

export function runStartLine(at: number): string {
  return `[nixvm: run started at ${new Date(at).toISOString()}]`;
}

/** The time a run-start line names, or null for any other line. */
export function runStartOf(line: string): number | null {
  const m = RUN_START.exec(line);
  if (!m) return null;
  const t = Date.parse(m[1]!);
  return Number.isNaN(t) ? null : t;
}

export function stampedLine(at: number, line: string): string {
  return `${new Date(at).toISOString()} ${line}`;
}

/** A build log line split into the time it was received and nix's text; null when unstamped. */
export function unstamp(line: string): { at: number; text: string } | null {
  const m = STAMP.exec(line);
  if (!m) return null;
  const at = Date.parse(m[1]!);
  return Number.isNaN(at) ? null : { at, text: line.slice(m[0].length) };
}
