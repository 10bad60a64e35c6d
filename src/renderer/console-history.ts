/**
 * The Terminal tab shows the console log's history above the live console, as the log window's
 * Console tab does (runs before the current one too, each after a `Run started …` separator).
 * Two sources overlap: the log's tail (lines, read first) and what the relay replays on attach
 * (the last bytes the console showed, raw, up to 16 KiB), most of which the log already has.
 * The replay is kept whole (it holds the screen's exact bytes: colours, the prompt without a
 * newline), and the log is cut where the replay begins, found as the longest end of the log that
 * the replay starts with. Pure: tested in Node, run in the page.
 */
import { runStartOf } from '../api/log-lines.ts';

const dateFmt = new Intl.DateTimeFormat(undefined, {
  weekday: 'short',
  day: 'numeric',
  month: 'short',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});

/** The separator the log window draws for a run-start line. */
export function runStartText(at: number): string {
  return `Run started ${dateFmt.format(at)}`;
}

/** An overlap shorter than this (and not the whole replay) is taken for chance, not for the same bytes. */
const MIN_OVERLAP = 16;

export interface History {
  /** The log's text to write before the replay (LF-separated; ends mid-line where the replay goes on). */
  before: string;
  /** Write the replay from this byte (a character split by the replay's start is skipped). */
  from: number;
}

/** The log lines that come before the relay's replay (`replay` empty: all of them). */
export function historyBeforeReplay(lines: readonly string[], replay: Uint8Array): History {
  let from = 0;
  // The replay can start inside a UTF-8 character: skip its continuation bytes.
  while (from < replay.length && from < 3 && (replay[from]! & 0xc0) === 0x80) from++;
  const log = lines.map((l) => l.replace(/\r+$/, '')).join('\n');
  if (from >= replay.length) return { before: log && `${log}\n`, from };
  // The log keeps lines where the console sent CR LF (api: the relay writes LF).
  const shown = new TextDecoder('utf-8').decode(replay.subarray(from)).replace(/\r+\n/g, '\n');
  const k = overlap(log, shown);
  if (k === 0 || (k < MIN_OVERLAP && k < shown.length)) return { before: log && `${log}\n`, from };
  return { before: log.slice(0, log.length - k), from };
}

/** The length of the longest end of `a` that `b` starts with. */
function overlap(a: string, b: string): number {
  const tail = a.slice(-b.length);
  // The prefix function of b + separator + tail: its last value is the overlap.
  const s = `${b}\uffff${tail}`;
  const pi = new Int32Array(s.length);
  for (let i = 1; i < s.length; i++) {
    let k = pi[i - 1]!;
    while (k > 0 && s[i] !== s[k]) k = pi[k - 1]!;
    if (s[i] === s[k]) k++;
    pi[i] = k;
  }
  return Math.min(pi[s.length - 1] ?? 0, tail.length);
}

/**
 * The history as terminal text: CRLF line ends, run-start lines as dim separators, and the
 * attributes reset after each old run (a run that ended mid-colour must not tint the next).
 */
export function historyText(before: string): string {
  return before
    .split('\n')
    .map((line) => {
      const run = runStartOf(line);
      return run === null ? line : `\x1b[0m\x1b[2m──── ${runStartText(run)} ────\x1b[0m`;
    })
    .join('\r\n');
}
