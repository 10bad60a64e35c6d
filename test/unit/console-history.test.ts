/**
 * The Terminal tab's history: the console log's tail, then the relay's replay of the recent
 * screen, each byte once. The log has lines (LF, the relay's CRLFs made plain); the replay is raw
 * terminal output that may start inside a line or a character.
 */
import { describe, expect, it } from 'vitest';
import { runStartLine } from '../../src/api/log-lines.ts';
import { historyBeforeReplay, historyText, runStartText } from '../../src/renderer/console-history.ts';

const enc = (s: string) => new TextEncoder().encode(s);
/** What a terminal would be sent: the history, then the replay from where it says. */
const shown = (lines: string[], replay: string): string => {
  const r = enc(replay);
  const h = historyBeforeReplay(lines, r);
  return h.before.replace(/\n/g, '\r\n') + new TextDecoder().decode(r.subarray(h.from));
};

const RUN1 = Date.UTC(2026, 0, 5, 9, 0, 0);
const RUN2 = Date.UTC(2026, 0, 5, 10, 30, 0);
const LOG = [
  runStartLine(RUN1),
  '[    0.000000] Linux version 6.6.32',
  'minimal-vm login: root (automatic login)',
  '',
  '[root@minimal-vm:~]# poweroff',
  runStartLine(RUN2),
  '[    0.000000] Linux version 6.6.32',
  '<<< Welcome to NixOS 25.05 (aarch64) - hvc0 >>>',
  'minimal-vm login: root (automatic login)',
  '',
  '[root@minimal-vm:~]# uname -a',
  'Linux minimal-vm 6.6.32 #1-NixOS SMP aarch64 GNU/Linux',
  '\x1b[1;31m[root@minimal-vm:~]#\x1b[0m ',
];

describe('historyBeforeReplay', () => {
  it('cuts the log where the replay of the current run begins (the replay holds the whole run)', () => {
    const replay = `${LOG.slice(6).join('\r\n')}`;
    const h = historyBeforeReplay(LOG, enc(replay));
    expect(h).toEqual({ before: `${LOG.slice(0, 6).join('\n')}\n`, from: 0 });
    expect(shown(LOG, replay)).toBe(LOG.join('\r\n'));
  });

  it('joins a replay that starts inside a line, or inside a character, to the line the log has', () => {
    const lines = [...LOG.slice(0, 7), `été ${'x'.repeat(40)}`, ...LOG.slice(7)];
    const whole = lines.slice(7).join('\r\n');
    // "été": the first "é" is two bytes; start after its first byte.
    const replay = enc(whole).subarray(1);
    const h = historyBeforeReplay(lines, replay);
    expect(h.from).toBe(1);
    expect(h.before.endsWith('\n\u00e9'), JSON.stringify(h.before.slice(-20))).toBe(true);
    expect(h.before.replace(/\n/g, '\r\n') + new TextDecoder().decode(replay.subarray(h.from))).toBe(
      lines.join('\r\n'),
    );
    // Mid-line (a read chunk's edge): the line's beginning from the log, its end from the replay.
    const mid = whole.slice(10);
    expect(shown(lines, mid)).toBe(lines.join('\r\n'));
  });

  it('shows what came after the log was read once, and everything when nothing overlaps', () => {
    // The guest wrote more after the log was read: the replay goes on past the log's end.
    const replay = `${LOG.slice(10).join('\r\n')}uptime\r\n 10:31:02 up 1 min\r\n`;
    expect(shown(LOG, replay)).toBe(`${LOG.join('\r\n')}uptime\r\n 10:31:02 up 1 min\r\n`);
    // No common bytes (the guest wrote past 16 KiB since): the whole log, then the whole replay.
    const other = 'seq 100000\r\n99998\r\n99999\r\n100000\r\n';
    expect(shown(LOG, other)).toBe(`${LOG.join('\r\n')}\r\n${other}`);
    // A few bytes in common by chance are not an overlap.
    expect(shown(['abc', 'x# '], '# ls\r\n')).toBe('abc\r\nx# \r\n# ls\r\n');
    // No replay (a fresh relay), no log.
    expect(historyBeforeReplay(LOG, new Uint8Array())).toEqual({ before: `${LOG.join('\n')}\n`, from: 0 });
    expect(shown([], 'login: ')).toBe('login: ');
  });

  it('reads CR CR LF (libuv raw mode keeps ONLCR) and an old CRLF log as the same line ends', () => {
    const lines = ['boot\r', 'ok\r', 'prompt# '];
    const replay = 'ok\r\r\nprompt# ';
    expect(historyBeforeReplay(lines, enc(replay))).toEqual({ before: 'boot\n', from: 0 });
  });
});

describe('historyText', () => {
  it('draws run-start lines as the log window’s separators, with CRLF line ends', () => {
    const text = historyText(`${LOG.slice(0, 6).join('\n')}\n`);
    expect(text.split('\r\n')).toEqual([
      `\x1b[0m\x1b[2m──── ${runStartText(RUN1)} ────\x1b[0m`,
      ...LOG.slice(1, 5),
      `\x1b[0m\x1b[2m──── ${runStartText(RUN2)} ────\x1b[0m`,
      '',
    ]);
    expect(runStartText(RUN2)).toMatch(/^Run started /);
  });
});
