/**
 * A serial line carries no window size. `nixvm console` and the Terminal tab say the `stty` line
 * to run after a resize, or (asked to) type it into the guest: only at a shell prompt, with nothing
 * on the user's line, while this client holds the input and no full-screen program runs. The
 * sizer on a manual clock (every wait is a clock step, not a sleep), then `nixvm console` itself
 * on a fake terminal whose window is resized.
 */
import { describe, expect, it } from 'vitest';
import { ConsoleSizer, sizeHint, type ConsoleSize, type SizerClock } from '../../src/api/console-size.ts';
import type { ConsoleAttachment, ConsoleEvent } from '../../src/api/types.ts';
import { runConsole } from '../../src/cli/console.ts';
import type { CliInput, CliIo, CliPort } from '../../src/cli/io.ts';
import { waitFor } from '../helpers/wait.ts';

class ManualClock implements SizerClock {
  t = 0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now = (): number => this.t;
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimeout = (h: unknown): void => {
    this.#timers.delete(h as number);
  };
  /** Move time on by `ms`, running each timer due on the way, in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
    }
    this.t = end;
  }
}

const PROMPT = '\x1b[1;31m[root@minimal-vm:~]#\x1b[0m ';
const bytes = (s: string) => new TextEncoder().encode(s);

function sizer(typing: boolean) {
  const clock = new ManualClock();
  const sent: string[] = [];
  const hints: ConsoleSize[] = [];
  const s = new ConsoleSizer({
    typing,
    send: (t) => sent.push(t),
    hint: (h) => hints.push(h),
    debounceMs: 250,
    quietMs: 200,
    clock,
  });
  return { s, clock, sent, hints };
}

describe('ConsoleSizer', () => {
  it('hints once per burst of resizes, with the size the window ended at, and types nothing', () => {
    const { s, clock, sent, hints } = sizer(false);
    s.attached({ rows: 24, cols: 80 });
    s.writer(true);
    s.output(bytes(`\r\n${PROMPT}`));
    for (const cols of [90, 100, 110, 120]) {
      s.resize({ rows: 40, cols });
      clock.advance(100);
    }
    expect(hints, 'a hint while the window was still being dragged').toEqual([]);
    clock.advance(250);
    expect(hints).toEqual([{ rows: 40, cols: 120 }]);
    expect(sizeHint(hints[0]!)).toBe(
      "The guest cannot see this window's size over a serial line: run `stty rows 40 cols 120` in it.",
    );
    // Back and forth to where it was: no second hint.
    s.resize({ rows: 40, cols: 100 });
    s.resize({ rows: 40, cols: 120 });
    clock.advance(1000);
    expect(hints).toHaveLength(1);
    expect(sent, 'typed into the guest without being asked').toEqual([]);
  });

  it('types the size at attach and after a resize, once the guest sits quiet at its prompt', () => {
    const { s, clock, sent } = sizer(true);
    s.writer(true);
    s.output(bytes(`[  OK  ] Reached target Multi-User System.\r\n\r\n${PROMPT}`));
    s.attached({ rows: 24, cols: 80 });
    clock.advance(199);
    expect(sent, 'typed while the guest had just written').toEqual([]);
    clock.advance(1);
    expect(sent).toEqual([' stty rows 24 cols 80\r']);
    // The guest echoes it and shows its prompt again.
    s.output(bytes(` stty rows 24 cols 80\r\n${PROMPT}`));
    s.resize({ rows: 50, cols: 132 });
    clock.advance(250 + 200);
    expect(sent).toEqual([' stty rows 24 cols 80\r', ' stty rows 50 cols 132\r']);
    expect(s.waiting).toBe(false);
  });

  it('waits while the user has typed part of a line, and types after their Enter brings the prompt back', () => {
    const { s, clock, sent } = sizer(true);
    s.writer(true);
    s.output(bytes(PROMPT));
    s.attached({ rows: 24, cols: 80 });
    clock.advance(300);
    sent.length = 0;
    s.input(bytes('echo hal'));
    s.output(bytes('echo hal'));
    s.input(bytes('\x7f'));
    s.output(bytes('\b \b'));
    s.resize({ rows: 30, cols: 100 });
    clock.advance(5000);
    expect(sent, 'typed into the middle of the user’s line').toEqual([]);
    expect(s.waiting).toBe(true);
    s.input(bytes('\r'));
    s.output(bytes(`\r\nha\r\n${PROMPT}`));
    clock.advance(200);
    expect(sent).toEqual([' stty rows 30 cols 100\r']);
  });

  it('treats history, completion and other keys it cannot follow as typing, until Enter or Ctrl-C', () => {
    for (const key of ['\x1b[A', '\t', '\x12']) {
      const { s, clock, sent } = sizer(true);
      s.writer(true);
      s.output(bytes(PROMPT));
      s.input(bytes(key));
      s.attached({ rows: 24, cols: 80 });
      clock.advance(5000);
      expect(sent, JSON.stringify(key)).toEqual([]);
      s.input(bytes('\x03'));
      s.output(bytes(`^C\r\n${PROMPT}`));
      clock.advance(200);
      expect(sent, JSON.stringify(key)).toEqual([' stty rows 24 cols 80\r']);
    }
  });

  it('never types at a login or password prompt, in a full-screen program, or while another client holds the input', () => {
    const cases: Array<[string, (s: ConsoleSizer) => void]> = [
      ['login prompt', (s) => s.output(bytes('\r\nminimal-vm login: '))],
      ['password prompt', (s) => s.output(bytes('Password: '))],
      ['a continuation line', (s) => s.output(bytes(`${PROMPT}for i in 1 2; do\r\n> `))],
      ['a Python REPL', (s) => s.output(bytes('>>> '))],
      ['vim', (s) => s.output(bytes(`${PROMPT}vim\r\n\x1b[?1049h\x1b[1;1H~\r\n~ $ `))],
      [
        'watching',
        (s) => {
          s.output(bytes(PROMPT));
          s.writer(false);
        },
      ],
    ];
    for (const [what, setup] of cases) {
      const { s, clock, sent } = sizer(true);
      s.writer(true);
      setup(s);
      s.attached({ rows: 24, cols: 80 });
      s.resize({ rows: 40, cols: 100 });
      clock.advance(10_000);
      expect(sent, what).toEqual([]);
      expect(s.waiting, what).toBe(true);
    }
    // Leaving vim (its alternate screen) back at the prompt: now it is typed.
    const { s, clock, sent } = sizer(true);
    s.writer(true);
    s.output(bytes(`${PROMPT}vim\r\n\x1b[?1049h~`));
    s.attached({ rows: 24, cols: 80 });
    clock.advance(1000);
    expect(sent).toEqual([]);
    s.output(bytes(`\x1b[?1049l\r${PROMPT}`));
    clock.advance(200);
    expect(sent).toEqual([' stty rows 24 cols 80\r']);
  });

  it('turned on later, types the size the window has now', () => {
    const { s, clock, sent, hints } = sizer(false);
    s.writer(true);
    s.output(bytes(PROMPT));
    s.attached({ rows: 24, cols: 80 });
    clock.advance(1000);
    expect(sent).toEqual([]);
    s.typing = true;
    clock.advance(0);
    expect(sent).toEqual([' stty rows 24 cols 80\r']);
    expect(hints).toEqual([]);
  });
});

// ————— nixvm console on a fake terminal —————

interface FakeTerm {
  io: CliIo;
  out: () => string;
  err: () => string;
  type(s: string): void;
  resize(rows: number, cols: number): void;
}

function fakeTerminal(): FakeTerm {
  let out = '';
  let err = '';
  let rows = 24;
  let cols = 80;
  const resizers = new Set<() => void>();
  let onData: ((b: Buffer) => void) | null = null;
  const stdin: CliInput = {
    isTTY: true,
    setRaw: () => {},
    onData(fn) {
      onData = fn;
      return () => {
        onData = null;
      };
    },
    onEnd: () => () => {},
  };
  const io = {
    stdin,
    stdout: {
      write: (s: string) => (out += s),
      isTTY: true,
      get columns() {
        return cols;
      },
      get rows() {
        return rows;
      },
      onResize(fn: () => void) {
        resizers.add(fn);
        return () => resizers.delete(fn);
      },
    },
    stderr: { write: (s: string) => (err += s), isTTY: true },
    now: () => Date.now(),
    signal: new AbortController().signal,
  } as unknown as CliIo;
  return {
    io,
    out: () => out,
    err: () => err,
    type: (s) => onData?.(Buffer.from(s)),
    resize(r, c) {
      rows = r;
      cols = c;
      for (const fn of resizers) fn();
    },
  };
}

/** A console whose guest sits at its prompt and echoes what it is sent. */
function fakeGuest() {
  const typed: string[] = [];
  let fn: ((ev: ConsoleEvent) => void) | null = null;
  const port = {
    attachConsole: async (_vm: string, _o: { input: boolean }, f: (ev: ConsoleEvent) => void) => {
      fn = f;
      f({ kind: 'data', data: Buffer.from(`Welcome\r\n${PROMPT}`) });
      f({ kind: 'input', writer: true });
      return {
        vm: 'minimal-vm',
        pty: '/dev/pts/9',
        write: (d: Uint8Array) => {
          const s = Buffer.from(d).toString();
          typed.push(s);
          // The guest's echo, and for an Enter the prompt again.
          f({ kind: 'data', data: Buffer.from(s.endsWith('\r') ? `${s}\n${PROMPT}` : s) });
        },
        detach: () => {},
      } satisfies ConsoleAttachment;
    },
  } as unknown as CliPort;
  return { port, typed, end: () => fn?.({ kind: 'end', reason: 'The VM ended.' }) };
}

describe('nixvm console and the window size', () => {
  it('without --resize: says the stty line at attach and again after a resize, and types nothing', async () => {
    const t = fakeTerminal();
    const g = fakeGuest();
    const clock = new ManualClock();
    const done = runConsole({
      vm: 'minimal-vm',
      io: t.io,
      port: g.port,
      readOnly: false,
      quietMs: 1000,
      sizer: { debounceMs: 250, quietMs: 200, clock },
    });
    await waitFor(() => t.err().includes('Detach with Ctrl-]'), { what: 'the attach message', detail: t.err });
    expect(t.err()).toContain(
      "The guest cannot see this window's size over a serial line: run `stty rows 24 cols 80` in it. (`--resize` types it there",
    );
    t.resize(40, 100);
    t.resize(50, 132);
    clock.advance(250);
    expect(t.err()).toContain(
      "\r\n(The guest cannot see this window's size over a serial line: run `stty rows 50 cols 132` in it.)\r\n",
    );
    expect(t.err(), 'a hint for a size the window only passed through').not.toContain('rows 40');
    clock.advance(10_000);
    t.type('\x1d');
    expect(await done).toBe(0);
    expect(g.typed, 'typed into the guest without --resize').toEqual([]);
  });

  it('with --resize: types the size at the prompt at attach and after each resize, not over what the user types', async () => {
    const t = fakeTerminal();
    const g = fakeGuest();
    const clock = new ManualClock();
    const done = runConsole({
      vm: 'minimal-vm',
      io: t.io,
      port: g.port,
      readOnly: false,
      resize: true,
      quietMs: 1000,
      sizer: { debounceMs: 250, quietMs: 200, clock },
    });
    await waitFor(() => t.err().includes('Detach with Ctrl-]'), { what: 'the attach message', detail: t.err });
    expect(t.err()).toContain("This window's size goes to the guest as `stty rows 24 cols 80`");
    clock.advance(200);
    expect(g.typed).toEqual([' stty rows 24 cols 80\r']);
    t.resize(50, 132);
    clock.advance(250 + 200);
    expect(g.typed.at(-1)).toBe(' stty rows 50 cols 132\r');
    // Half a command on the line: the next size waits for the user's Enter.
    t.type('uname');
    t.resize(30, 100);
    clock.advance(10_000);
    expect(g.typed.at(-1), 'typed into the middle of the user’s command').toBe('uname');
    t.type(' -a\r');
    clock.advance(200);
    expect(g.typed).toEqual([
      ' stty rows 24 cols 80\r',
      ' stty rows 50 cols 132\r',
      'uname',
      ' -a\r',
      ' stty rows 30 cols 100\r',
    ]);
    expect(t.err(), 'a hint printed while typing it').not.toContain('(The guest cannot see');
    g.end();
    expect(await done).toBe(1);
  });
});
