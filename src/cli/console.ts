/**
 * `nixvm console <vm>`: the VM's serial console on this terminal, through the agent (the pty's
 * one reader). On a terminal: raw keys, the screen the console had, and Ctrl-] to detach; the
 * window's size, which a serial line cannot carry, is said as the `stty` line to run in the guest
 * at attach and after each resize, or with `--resize` typed there at the shell prompt
 * (api/console-size.ts says when that is safe). From a pipe (a script): line mode; what comes in
 * is typed, what the guest answers is printed with plain newlines, and the command ends once the
 * guest has been quiet for `--quiet-ms` after the input ended.
 */
import { ConsoleSizer, sizeHint, sttyCommand, type SizerClock } from '../api/console-size.ts';
import type { ConsoleAttachment, ConsoleEvent } from '../api/types.ts';
import { visibleName, visibleText } from './format.ts';
import type { CliInput, CliIo, CliPort } from './io.ts';

/** Ctrl-]: telnet's and virsh's detach key. */
export const DETACH_BYTE = 0x1d;
export const DETACH_KEY = 'Ctrl-]';

export interface ConsoleRun {
  vm: string;
  io: CliIo;
  port: CliPort;
  readOnly: boolean;
  /** Pipe mode: how long the guest must stay quiet after the input ended (ms). */
  quietMs: number;
  /** On a terminal: type `stty rows … cols …` into the guest at its prompt when the size changes. */
  resize?: boolean;
  /** The resize debounce and the guest's quiet time before typing (tests shorten them). */
  sizer?: { debounceMs?: number; quietMs?: number; clock?: SizerClock };
}

/** Output for a pipe: the guest's CRLFs as newlines, bare CRs dropped. */
export function pipeText(data: Uint8Array, state: { cr: boolean }): string {
  let out = '';
  const s = Buffer.from(data).toString('latin1');
  for (const ch of s) {
    if (state.cr) {
      state.cr = false;
      if (ch === '\n') {
        out += '\n';
        continue;
      }
    }
    if (ch === '\r') state.cr = true;
    else out += ch;
  }
  return Buffer.from(out, 'latin1').toString('utf8');
}

/** Attach and relay until detached or the console ends; resolves with the exit code. */
export async function runConsole(r: ConsoleRun): Promise<number> {
  const { io } = r;
  const stdin: CliInput | undefined = io.stdin;
  const tty = !!stdin?.isTTY && !!io.stdout.isTTY;
  const raw = io.stdout.stream;
  let writer = false;
  let seenInputEvent = false;
  const crState = { cr: false };
  let lastOutput = io.now();
  let inputEnded = !stdin;
  let finish!: (code: number) => void;
  const done = new Promise<number>((res) => (finish = res));
  let ended: string | null = null;

  let att: ConsoleAttachment | null = null;
  const typeSize = tty && !r.readOnly && !!r.resize;
  const sizer = tty
    ? new ConsoleSizer({
        typing: typeSize,
        send: (text) => att?.write(Buffer.from(text)),
        hint: (size) => io.stderr.write(`\r\n(${sizeHint(size)})\r\n`),
        ...r.sizer,
      })
    : null;
  const windowSize = () => {
    const rows = io.stdout.rows;
    const cols = io.stdout.columns;
    return rows && cols ? { rows, cols } : null;
  };

  const onEvent = (ev: ConsoleEvent) => {
    if (ev.kind === 'data') {
      // A script wants the answers to what it typed, not the screen before it attached.
      if (!tty && !seenInputEvent) return;
      sizer?.output(ev.data);
      lastOutput = io.now();
      if (tty && raw) raw.write(ev.data);
      else io.stdout.write(tty ? Buffer.from(ev.data).toString('utf8') : pipeText(ev.data, crState));
    } else if (ev.kind === 'input') {
      const before = writer;
      writer = ev.writer;
      sizer?.writer(writer);
      if (!seenInputEvent) {
        seenInputEvent = true;
        if (!writer && !r.readOnly)
          io.stderr.write(
            `${tty ? '\r\n' : ''}(Watching only: another client types into this console; its input passes to you when it detaches.)${tty ? '\r\n' : '\n'}`,
          );
      } else if (writer && !before && tty) {
        io.stderr.write("\r\n(You have the console's input now.)\r\n");
      } else if (!writer && before) {
        io.stderr.write(
          `${tty ? '\r\n' : ''}(Another client took this console's input; you are watching until it detaches.)${tty ? '\r\n' : '\n'}`,
        );
      }
    } else {
      ended = ev.reason;
      finish(inputEnded && !tty ? 0 : 1);
    }
  };

  try {
    att = await r.port.attachConsole(r.vm, { input: !r.readOnly }, onEvent);
  } catch (err) {
    sizer?.dispose();
    throw err;
  }
  const offs: Array<() => void> = [];
  if (tty && sizer) {
    const size = windowSize();
    io.stderr.write(
      `Connected to the console of VM "${visibleName(r.vm)}" (${visibleName(att.pty)}). Detach with ${DETACH_KEY}.` +
        (!size
          ? ''
          : typeSize
            ? ` This window's size goes to the guest as \`${sttyCommand(size)}\`, typed at its shell prompt (now and after each resize).`
            : ` ${sizeHint(size)} (\`--resize\` types it there at the shell prompt, after each resize too.)`) +
        '\r\n',
    );
    if (size) sizer.attached(size);
    const off = io.stdout.onResize?.(() => {
      const now = windowSize();
      if (now) sizer.resize(now);
    });
    if (off) offs.push(off);
  }
  const attached = att;
  if (stdin) {
    if (tty) stdin.setRaw(true);
    offs.push(
      stdin.onData((chunk) => {
        if (tty) {
          const at = chunk.indexOf(DETACH_BYTE);
          if (at >= 0) {
            if (at > 0 && !r.readOnly) {
              sizer?.input(chunk.subarray(0, at));
              attached.write(chunk.subarray(0, at));
            }
            finish(0);
            return;
          }
        }
        if (r.readOnly) return;
        sizer?.input(chunk);
        attached.write(chunk);
      }),
      stdin.onEnd(() => {
        inputEnded = true;
        lastOutput = io.now();
        if (tty) finish(0);
      }),
    );
  }
  // Pipe mode: done once the input ended and the guest has said all it will say about it.
  let quietTimer: NodeJS.Timeout | null = null;
  if (!tty) {
    const check = () => {
      if (inputEnded && io.now() - lastOutput >= r.quietMs) finish(0);
      else quietTimer = setTimeout(check, Math.max(20, Math.min(200, r.quietMs / 4)));
    };
    check();
  }
  const onAbort = () => finish(130);
  io.signal.addEventListener('abort', onAbort);
  const code = await done;
  io.signal.removeEventListener('abort', onAbort);
  if (quietTimer) clearTimeout(quietTimer);
  for (const off of offs) off();
  sizer?.dispose();
  if (tty) stdin?.setRaw(false);
  attached.detach();
  if (tty)
    io.stderr.write(
      ended ? `\r\n${visibleText(ended)}\r\n` : `\r\nDetached from the console of VM "${visibleName(r.vm)}".\r\n`,
    );
  else if (ended && code !== 0) io.stderr.write(`${visibleText(ended)}\n`);
  return code;
}
