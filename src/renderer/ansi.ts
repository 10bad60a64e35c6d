/**
 * ANSI → HTML for log lines with ansi_up, kept inside a strict CSP: ansi_up writes inline
 * `style` attributes (bold, truecolor), which `style-src 'self'` forbids in markup. We ask it for
 * classes, mark its inline styles, rewrite them into classes and data attributes, and apply
 * true colours through the CSSOM (which the CSP allows).
 */
import { AnsiUp } from 'ansi_up';

const MARK = { bold: '~b', faint: '~f', italic: '~i', underline: '~u' } as const;

export class AnsiRenderer {
  private readonly au = new AnsiUp();
  constructor() {
    this.au.use_classes = true;
    this.au.escape_html = true;
    this.au.url_allowlist = {};
    this.au.boldStyle = MARK.bold;
    this.au.faintStyle = MARK.faint;
    this.au.italicStyle = MARK.italic;
    this.au.underlineStyle = MARK.underline;
  }

  /** One line to CSP-safe HTML. Stateful: colours set on one line carry to the next, like a terminal. */
  toHtml(line: string): string {
    const html = this.au.ansi_to_html(line);
    // ansi_up escapes text (including quotes), so `style="…"` can only be its own attribute.
    return html.replace(
      /<span style="([^"]*)"(?: class="([^"]*)")?>/g,
      (_m, style: string, cls: string | undefined) => {
        const classes = cls ? cls.split(' ') : [];
        const data: string[] = [];
        for (const part of style.split(';')) {
          if (part === MARK.bold) classes.push('ansi-bold');
          else if (part === MARK.faint) classes.push('ansi-faint');
          else if (part === MARK.italic) classes.push('ansi-italic');
          else if (part === MARK.underline) classes.push('ansi-underline');
          else {
            const m = /^(color|background-color):rgb\((\d{1,3}),(\d{1,3}),(\d{1,3})\)$/.exec(part);
            if (m) data.push(` data-${m[1] === 'color' ? 'fg' : 'bg'}="${m[2]},${m[3]},${m[4]}"`);
          }
        }
        return `<span${classes.length ? ` class="${classes.join(' ')}"` : ''}${data.join('')}>`;
      },
    );
  }
}

/** Applies the true colours recorded as data attributes (CSSOM writes are allowed by the CSP). */
export function applyTrueColours(root: HTMLElement): void {
  for (const el of root.querySelectorAll<HTMLElement>('[data-fg],[data-bg]')) {
    if (el.dataset.fg) el.style.color = `rgb(${el.dataset.fg})`;
    if (el.dataset.bg) el.style.backgroundColor = `rgb(${el.dataset.bg})`;
  }
}

/** Plain text of a line (for search): ANSI escape sequences removed. */
export function stripAnsi(line: string): string {
  // CSI … final byte, OSC … BEL/ST, and lone two-byte escapes.
  return line.replace(/\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g, '');
}
