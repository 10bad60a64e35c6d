/**
 * The log window's Terminal tab: the VM's serial console in xterm.js, attached through the
 * bridge like `nixvm console`: the console log's history first (the runs before this one too,
 * each after its `Run started …` separator), then the console's recent screen and the live
 * stream without repeating what the log already showed (console-history.ts); this window holds
 * the input while it is the newest to ask. The window's size reaches the guest as `nixvm console`
 * passes it: the `stty` line in the notice after a resize, or with "Pass size" typed at the
 * guest's shell prompt (api/console-size.ts). Loaded only when the tab is first opened.
 *
 * xterm.js writes its theme and cell sizes into <style> elements it creates, which the window's
 * CSP (style-src 'self') refuses; constructable stylesheets are not inline styles, so the text of
 * every <style> element made here goes into one of those instead (xtermjs/xterm.js#4445).
 */
import '@xterm/xterm/css/xterm.css';
import { ConsoleSizer, sizeHint } from '../api/console-size.ts';
import type { WireConsoleEvent } from '../api/types.ts';
import { bridge, errorMessage } from './bridge.ts';
import { historyBeforeReplay, historyText } from './console-history.ts';

/** Lines of the console log shown above the live console (xterm.js keeps 5000 in all). */
const HISTORY_LINES = 3000;

let shimmed = false;
function styleShim(): void {
  if (shimmed) return;
  shimmed = true;
  const create = document.createElement.bind(document);
  document.createElement = ((tag: string, opts?: ElementCreationOptions) => {
    if (tag.toLowerCase() !== 'style') return create(tag, opts);
    // Even an empty <style> in the page is refused: hand back an inert element whose text
    // becomes a constructable sheet, and whose removal drops that sheet.
    const el = create('template');
    const sheet = new CSSStyleSheet();
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    Object.defineProperty(el, 'textContent', {
      get: () => '',
      set: (v: unknown) => sheet.replaceSync(String(v ?? '')),
    });
    const remove = el.remove.bind(el);
    el.remove = () => {
      document.adoptedStyleSheets = document.adoptedStyleSheets.filter((x) => x !== sheet);
      remove();
    };
    return el;
  }) as typeof document.createElement;
}

function fromBase64(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

function toBase64(s: string): string {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

export interface ConsoleView {
  close(): void;
  focus(): void;
  /** Type `stty rows … cols …` into the guest at its prompt when the size changes (else only say it). */
  passSize(on: boolean): void;
}

export interface ConsoleViewOptions {
  passSize: boolean;
}

/** Mount a terminal on `container` attached to `vm`'s console; `status` hears one-line news. */
export async function openConsoleView(
  container: HTMLElement,
  vm: string,
  status: (text: string, kind: 'info' | 'error') => void,
  opts: ConsoleViewOptions = { passSize: false },
): Promise<ConsoleView> {
  styleShim();
  const [{ Terminal }, { FitAddon }] = await Promise.all([import('@xterm/xterm'), import('@xterm/addon-fit')]);
  const dark = matchMedia('(prefers-color-scheme: dark)').matches;
  const term = new Terminal({
    convertEol: false,
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, monospace',
    fontSize: 12,
    theme: dark
      ? { background: '#1e1e1e', foreground: '#e6e6e6' }
      : { background: '#ffffff', foreground: '#1d1d1f', cursor: '#1d1d1f', selectionBackground: '#b4d5fe' },
  });
  // Rows and columns follow the window; the guest learns them only through `stty` (the sizer).
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(container);
  fit.fit();
  const resized = new ResizeObserver(() => fit.fit());
  resized.observe(container);
  let closed = false;
  const send = (text: string) =>
    void bridge.consoleInput(toBase64(text)).catch((e: unknown) => status(errorMessage(e), 'error'));
  // What the input's state last said ("Typing into…", "Watching…"): a resize hint keeps it in
  // front, so the notice still says who types after the window (or its scrollbar) changed size.
  let inputNews = '';
  const sizer = new ConsoleSizer({
    typing: opts.passSize,
    send,
    hint: (size) => status(`${inputNews}${inputNews ? ' ' : ''}${sizeHint(size)}`, 'info'),
  });
  const resizedTerm = term.onResize(({ rows, cols }) => sizer.resize({ rows, cols }));

  // The log's history, read before attaching: the relay's replay then overlaps its end.
  const tail = await bridge.call('logs', { vm, kind: 'console', lines: HISTORY_LINES }).catch(() => null);
  let history: string[] | null = tail?.lines ?? [];
  const showHistory = (replay: Uint8Array = new Uint8Array()): number => {
    if (history === null) return 0;
    const { before, from } = historyBeforeReplay(history, replay);
    history = null;
    if (before) term.write(historyText(before));
    return from;
  };
  let firstInput = true;
  const onEvent = (ev: WireConsoleEvent) => {
    if (closed) return;
    if (ev.kind === 'data') {
      const data = fromBase64(ev.data);
      // The first bytes, before the input's state, are the relay's replay of the recent screen.
      const from = showHistory(data);
      sizer.output(data);
      term.write(from ? data.subarray(from) : data);
      return;
    }
    showHistory();
    if (ev.kind === 'input') {
      sizer.writer(ev.writer);
      const hint = firstInput && ev.writer && !sizer.typing ? ` ${sizeHint({ rows: term.rows, cols: term.cols })}` : '';
      firstInput = false;
      inputNews = ev.writer
        ? `Typing into the console of ${JSON.stringify(vm)}.`
        : `Watching: another client types into this console; its input passes here when it detaches.`;
      status(`${inputNews}${hint}`, 'info');
    } else status(ev.reason, 'error');
  };
  const encoder = new TextEncoder();
  const input = term.onData((d) => {
    sizer.input(encoder.encode(d));
    send(d);
  });
  try {
    await bridge.consoleAttach(vm, onEvent);
    sizer.attached({ rows: term.rows, cols: term.cols });
  } catch (e) {
    showHistory();
    status(errorMessage(e), 'error');
  }
  term.focus();
  return {
    focus: () => term.focus(),
    passSize(on) {
      sizer.typing = on;
    },
    close() {
      if (closed) return;
      closed = true;
      sizer.dispose();
      resizedTerm.dispose();
      input.dispose();
      resized.disconnect();
      void bridge.consoleDetach().catch(() => {});
      term.dispose();
    },
  };
}
