import { describe, expect, it } from 'vitest';
import { LineBuffer, matches, newAfterTail } from '../../src/renderer/log-buffer.ts';
import { AnsiRenderer, stripAnsi } from '../../src/renderer/ansi.ts';

describe('log window line buffer', () => {
  it('keeps the newest lines within its cap and says what it dropped', () => {
    const b = new LineBuffer<null>(3);
    const push = (...t: string[]) => b.push(t.map((text) => ({ text, data: null })));
    expect(push('a', 'b').dropped).toBe(0);
    const r = push('c', 'd', 'e');
    expect(r.dropped).toBe(2);
    expect(b.all.map((l) => l.text)).toEqual(['c', 'd', 'e']);
    expect(b.total).toBe(5);
    // One push larger than the cap: only its tail survives, and only that is reported as added.
    const big = push('1', '2', '3', '4', '5');
    expect(big.added.map((l) => l.text)).toEqual(['3', '4', '5']);
    expect(b.all.map((l) => l.text)).toEqual(['3', '4', '5']);
    expect(new Set(b.all.map((l) => l.id)).size).toBe(3);
  });

  it('drops live lines that repeat the end of the initial tail', () => {
    expect(newAfterTail(['a', 'b', 'c'], ['b', 'c', 'd'])).toEqual(['d']);
    expect(newAfterTail(['a', 'b', 'c'], ['c', 'd'])).toEqual(['d']);
    expect(newAfterTail(['a', 'b', 'c'], ['d', 'e'])).toEqual(['d', 'e']);
    expect(newAfterTail([], ['x'])).toEqual(['x']);
    expect(newAfterTail(['a'], [])).toEqual([]);
    // Identical lines are not confused with an overlap that is not there.
    expect(newAfterTail(['x', 'y'], ['x', 'x'])).toEqual(['x', 'x']);
  });

  it('filters case-insensitively; empty matches all', () => {
    expect(matches('Started SSH Daemon.', 'ssh')).toBe(true);
    expect(matches('Started SSH Daemon.', 'nginx')).toBe(false);
    expect(matches('anything', '')).toBe(true);
  });
});

describe('ANSI rendering under a strict CSP', () => {
  it('turns SGR colours into classes and never emits inline styles', () => {
    const a = new AnsiRenderer();
    const html = a.toHtml('[  \x1b[0;32mOK\x1b[0m  ] \x1b[1;31mfailed\x1b[0m <b>&');
    expect(html).toBe(
      '[  <span class="ansi-green-fg">OK</span>  ] <span class="ansi-red-fg ansi-bold">failed</span> &lt;b&gt;&amp;',
    );
    expect(html).not.toContain('style=');
  });

  it('keeps 24-bit colours as data for the CSSOM', () => {
    const html = new AnsiRenderer().toHtml('\x1b[38;2;255;128;0morange\x1b[0m');
    expect(html).toBe('<span data-fg="255,128,0">orange</span>');
  });

  it('carries a colour across lines like a terminal', () => {
    const a = new AnsiRenderer();
    a.toHtml('\x1b[33mstart of yellow');
    expect(a.toHtml('still yellow')).toBe('<span class="ansi-yellow-fg">still yellow</span>');
  });

  it('strips escapes for search', () => {
    expect(stripAnsi('\x1b[0;32mOK\x1b[0m \x1b]8;;https://x\x07link\x1b]8;;\x07')).toBe('OK link');
  });
});
