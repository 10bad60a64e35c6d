/**
 * A serial line carries no window size: the guest's tty keeps the rows and columns it was given
 * (none, or what `stty` last set), whatever the window on the host shows. Both faces of the console
 * (`nixvm console`, the log window's Terminal tab) say the `stty` line to run, at attach and again
 * after each resize (debounced); asked to (`nixvm console --resize`, the tab's "Pass size"), they
 * type it into the guest themselves, but only where it cannot land in the middle of anything:
 *
 * - this client holds the console's input;
 * - the user's own line is empty (nothing typed since the last Enter, Ctrl-C or Ctrl-U; an arrow
 *   key or Tab counts as typing, since the shell may have put text on the line);
 * - the guest has been quiet a moment, its last line is a shell prompt (ends in `# `, `$ ` or
 *   `% `, colours aside: not `login: `, `Password: `, a `>` continuation or a REPL) and no
 *   full-screen program holds the alternate screen.
 *
 * Otherwise the new size waits for the next such moment (the newest size wins). The line typed
 * starts with a space, which keeps it out of bash's history where HISTCONTROL ignores such lines.
 * Pure (no Node, no DOM): the CLI and the renderer share it.
 */

export interface ConsoleSize {
  rows: number;
  cols: number;
}

/** The command that tells the guest's tty its size. */
export function sttyCommand(s: ConsoleSize): string {
  return `stty rows ${s.rows} cols ${s.cols}`;
}

/** The one sentence both faces show when they do not type it themselves. */
export function sizeHint(s: ConsoleSize): string {
  return `The guest cannot see this window's size over a serial line: run \`${sttyCommand(s)}\` in it.`;
}

export interface SizerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: SizerClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
};

export interface SizerOptions {
  /** Type the stty line into the guest (true), or only hint it (false). Can change later (`typing`). */
  typing: boolean;
  /** Type text into the guest (only called while this client holds the input). */
  send(text: string): void;
  /** Say the size the guest should be told (hint mode, after a resize). */
  hint(size: ConsoleSize): void;
  /** A burst of resizes (a window dragged) is one, this long after the last (ms). */
  debounceMs?: number;
  /** How long the guest must have been quiet at its prompt before anything is typed (ms). */
  quietMs?: number;
  clock?: SizerClock;
}

/** A shell prompt as the last line shows it, colours stripped: `[root@vm:~]# `, `$ `, `% `. */
const PROMPT = /[#$%] $/;
const TAIL_MAX = 256;

/** Follows what the guest shows and what the user types, and tells the guest the window's size when safe. */
export class ConsoleSizer {
  readonly #o: Required<Omit<SizerOptions, 'typing'>>;
  #typing: boolean;
  /** The size the window has now, the last one typed into the guest, the last one hinted. */
  #size: ConsoleSize | null = null;
  #typedSize: ConsoleSize | null = null;
  #hinted: ConsoleSize | null = null;
  #writer = false;
  #altScreen = false;
  /** The guest's current line, escape sequences left out (its last TAIL_MAX characters). */
  #tail = '';
  #esc: '' | 'esc' | 'csi' | 'osc' | 'osc-esc' = '';
  #csi = '';
  #lastOutput = Number.NEGATIVE_INFINITY;
  /** What the user has on the line: characters typed since the line was last empty; `dirty`: unknowable. */
  #typed = 0;
  #dirty = false;
  #debounce: unknown = null;
  #check: unknown = null;
  readonly #decoder = new TextDecoder('utf-8');
  #disposed = false;

  constructor(o: SizerOptions) {
    this.#typing = o.typing;
    this.#o = {
      send: o.send,
      hint: o.hint,
      debounceMs: o.debounceMs ?? 250,
      quietMs: o.quietMs ?? 200,
      clock: o.clock ?? realClock,
    };
  }

  /** A size is waiting for a moment it can be typed. */
  get waiting(): boolean {
    return this.#typing && this.#size !== null && !same(this.#size, this.#typedSize);
  }

  get typing(): boolean {
    return this.#typing;
  }

  set typing(on: boolean) {
    this.#typing = on;
    if (on) this.#schedule(0);
  }

  /**
   * The window's size when attaching. Typing: typed at the first safe moment. Hinting: the face
   * says it with its attach message, so it is not hinted again until it changes.
   */
  attached(size: ConsoleSize): void {
    this.#size = { ...size };
    this.#hinted = { ...size };
    this.#schedule(0);
  }

  /** The window's size changed (debounced). */
  resize(size: ConsoleSize): void {
    if (this.#disposed || !(size.rows > 0 && size.cols > 0)) return;
    this.#size = { ...size };
    const { clock } = this.#o;
    if (this.#debounce !== null) clock.clearTimeout(this.#debounce);
    this.#debounce = clock.setTimeout(() => {
      this.#debounce = null;
      this.#settled();
    }, this.#o.debounceMs);
  }

  #settled(): void {
    if (this.#disposed || !this.#size) return;
    if (this.#typing) this.#schedule(0);
    else if (!same(this.#size, this.#hinted)) {
      this.#hinted = { ...this.#size };
      this.#o.hint({ ...this.#size });
    }
  }

  /** This client holds the input (true) or watches (false). */
  writer(on: boolean): void {
    this.#writer = on;
    if (on) this.#schedule(0);
  }

  /** What the guest wrote. */
  output(data: Uint8Array): void {
    this.#lastOutput = this.#o.clock.now();
    for (const ch of this.#decoder.decode(data, { stream: true })) this.#screen(ch);
    if (this.waiting) this.#schedule(this.#o.quietMs);
  }

  /** What the user typed (before it is sent). */
  input(data: Uint8Array): void {
    for (const b of data) {
      if (b === 0x0d || b === 0x0a || b === 0x03 || b === 0x15) {
        this.#typed = 0;
        this.#dirty = false;
      } else if (b === 0x7f || b === 0x08) {
        if (this.#typed > 0) this.#typed--;
      } else if (b < 0x20) {
        // Escape sequences (arrows: history), Tab (completion), Ctrl-R…: the shell may now have
        // text on the line that we never saw typed.
        this.#dirty = true;
      } else if (b < 0x80 || b >= 0xc0) {
        this.#typed++;
      }
    }
  }

  dispose(): void {
    this.#disposed = true;
    const { clock } = this.#o;
    if (this.#debounce !== null) clock.clearTimeout(this.#debounce);
    if (this.#check !== null) clock.clearTimeout(this.#check);
    this.#debounce = this.#check = null;
  }

  /** Why nothing can be typed now (null: it can). */
  #blocked(): 'input' | 'typed' | 'screen' | 'quiet' | null {
    if (!this.#writer) return 'input';
    if (this.#typed > 0 || this.#dirty) return 'typed';
    if (this.#altScreen || this.#esc !== '' || !PROMPT.test(this.#tail)) return 'screen';
    if (this.#o.clock.now() - this.#lastOutput < this.#o.quietMs) return 'quiet';
    return null;
  }

  #schedule(ms: number): void {
    if (this.#disposed || !this.waiting) return;
    const { clock } = this.#o;
    if (this.#check !== null) clock.clearTimeout(this.#check);
    this.#check = clock.setTimeout(() => {
      this.#check = null;
      this.#try();
    }, ms);
  }

  #try(): void {
    if (this.#disposed || !this.waiting) return;
    const why = this.#blocked();
    if (why === 'quiet') {
      this.#schedule(Math.max(1, this.#o.quietMs - (this.#o.clock.now() - this.#lastOutput)));
      return;
    }
    // Anything else waits for the event that changes it (output, the input back, an Enter).
    if (why !== null) return;
    const size = this.#size!;
    this.#typedSize = { ...size };
    this.#o.send(` ${sttyCommand(size)}\r`);
  }

  /** One character of the guest's output, as far as its last line and the alternate screen go. */
  #screen(ch: string): void {
    if (this.#esc === 'esc') {
      this.#esc = ch === '[' ? 'csi' : ch === ']' ? 'osc' : '';
      this.#csi = '';
      return;
    }
    if (this.#esc === 'csi') {
      const c = ch.charCodeAt(0);
      if (c >= 0x40 && c <= 0x7e) {
        this.#esc = '';
        const m = /^\?([\d;]+)$/.exec(this.#csi);
        if (m && (ch === 'h' || ch === 'l') && m[1]!.split(';').some((p) => p === '1049' || p === '1047' || p === '47'))
          this.#altScreen = ch === 'h';
      } else if (this.#csi.length < 32) this.#csi += ch;
      return;
    }
    if (this.#esc === 'osc' || this.#esc === 'osc-esc') {
      if (ch === '\x07' || (this.#esc === 'osc-esc' && ch === '\\')) this.#esc = '';
      else this.#esc = ch === '\x1b' ? 'osc-esc' : 'osc';
      return;
    }
    if (ch === '\x1b') this.#esc = 'esc';
    else if (ch === '\n' || ch === '\r') this.#tail = '';
    else if (ch === '\b') this.#tail = this.#tail.slice(0, -1);
    else if (ch >= ' ' && ch !== '\x7f') this.#tail = (this.#tail + ch).slice(-TAIL_MAX);
  }
}

function same(a: ConsoleSize | null, b: ConsoleSize | null): boolean {
  return !!a && !!b && a.rows === b.rows && a.cols === b.cols;
}
