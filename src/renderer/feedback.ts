/**
 * The dropdown's feedback and button primitives: the toast, a bridge call run from a button (busy
 * while in flight, its error as one sentence), and the two DOM writes that touch only what changed.
 */
import { errorMessage } from './bridge.ts';
import { h, icon } from './dom.ts';

/** The toast (the dropdown fits its height around it). */
export const toastEl = document.getElementById('toast')!;

let toastTimer: ReturnType<typeof setTimeout> | undefined;
export function toast(message: string, kind: 'info' | 'error' = 'info'): void {
  clearTimeout(toastTimer);
  toastEl.replaceChildren(
    h('span', { class: 'toast-text' }, message),
    h(
      'button',
      { class: 'toast-close', title: 'Dismiss', 'aria-label': 'Dismiss', onclick: () => (toastEl.hidden = true) },
      icon('xmark', 10),
    ),
  );
  toastEl.className = `toast ${kind}`;
  toastEl.hidden = false;
  // Errors stay until dismissed: they say what to do.
  if (kind === 'info') toastTimer = setTimeout(() => (toastEl.hidden = true), 2500);
}

/** Runs a bridge call from a button: busy while in flight, errors shown as one sentence. */
export async function act(
  btn: HTMLButtonElement | null,
  fn: () => Promise<unknown>,
  done?: (r: unknown) => string | void,
): Promise<void> {
  if (btn) btn.classList.add('busy');
  try {
    const r = await fn();
    const msg = done?.(r);
    if (msg) toast(msg);
  } catch (e) {
    toast(errorMessage(e), 'error');
  } finally {
    if (btn) btn.classList.remove('busy');
  }
}

export function button(
  label: string,
  action: string,
  opts: { primary?: boolean; icon?: string; title?: string } = {},
  onClick?: (btn: HTMLButtonElement) => void,
): HTMLButtonElement {
  const b = h(
    'button',
    { class: `btn${opts.primary ? ' primary' : ''}`, 'data-action': action, title: opts.title ?? null, type: 'button' },
    opts.icon ? icon(opts.icon) : null,
    h('span', {}, label),
  );
  if (onClick)
    b.addEventListener('click', (ev) => {
      ev.stopPropagation();
      onClick(b);
    });
  return b;
}

export function show(el: HTMLElement, visible: boolean): void {
  if (el.hidden === visible) el.hidden = !visible;
}

export function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}
