/**
 * The log window's Terminal tab: the VM's serial console in xterm.js, attached through the
 * bridge like `nixvm console` (the console's recent screen first, then live; this window holds
 * the input while it is the newest to ask). Loaded only when the tab is first opened.
 *
 * xterm.js writes its theme and cell sizes into <style> elements it creates, which the window's
 * CSP (style-src 'self') refuses; constructable stylesheets are not inline styles, so the text of
 * every <style> element made here goes into one of those instead (xtermjs/xterm.js#4445).
 */
import '@xterm/xterm/css/xterm.css';
import type { WireConsoleEvent } from '../api/types.ts';
import { bridge, errorMessage } from './bridge.ts';

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
}

/** Mount a terminal on `container` attached to `vm`'s console; `status` hears one-line news. */
export async function openConsoleView(
  container: HTMLElement,
  vm: string,
  status: (text: string, kind: 'info' | 'error') => void,
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
  // Rows and columns follow the window (the guest still cannot see them over a serial line).
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(container);
  fit.fit();
  const resized = new ResizeObserver(() => fit.fit());
  resized.observe(container);
  let closed = false;
  const onEvent = (ev: WireConsoleEvent) => {
    if (closed) return;
    if (ev.kind === 'data') term.write(fromBase64(ev.data));
    else if (ev.kind === 'input')
      status(
        ev.writer
          ? `Typing into the console of ${JSON.stringify(vm)}.`
          : `Watching: another client types into this console; its input passes here when it detaches.`,
        'info',
      );
    else status(ev.reason, 'error');
  };
  const input = term.onData((d) => {
    void bridge.consoleInput(toBase64(d)).catch((e: unknown) => status(errorMessage(e), 'error'));
  });
  try {
    await bridge.consoleAttach(vm, onEvent);
  } catch (e) {
    status(errorMessage(e), 'error');
  }
  term.focus();
  return {
    focus: () => term.focus(),
    close() {
      if (closed) return;
      closed = true;
      input.dispose();
      resized.disconnect();
      void bridge.consoleDetach().catch(() => {});
      term.dispose();
    },
  };
}
