/**
 * The progress bar on a terminal (cli-progress on a stream that says it is a TTY), read back
 * through a small terminal model: "evaluating" first, the time on every redraw, and once the
 * build ends the bar is gone and the result line is what stays on screen.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { VmSnapshot } from '../../src/api/types.ts';
import { createProgressView } from '../../src/cli/progress.ts';
import { buildInfo, vmSnapshot } from '../helpers/fake-port.ts';
import { waitFor } from '../helpers/wait.ts';

/** A TTY-looking stream that keeps everything written to it. */
function fakeTty(): NodeJS.WriteStream & { text: string } {
  const w = new Writable({
    write(chunk, _enc, cb) {
      (w as unknown as { text: string }).text += String(chunk);
      cb();
    },
  }) as unknown as NodeJS.WriteStream & { text: string };
  w.text = '';
  Object.assign(w, { isTTY: true, columns: 100, rows: 30 });
  return w;
}

/** What a terminal shows after `s`: the cursor movements and erasures cli-progress uses. */
function screen(s: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  for (const m of s.matchAll(/\u001b\[(\d*)([A-Za-z])|\u001b\[\?\d+[hl]|\r|\n|[^\u001b\r\n]/gu)) {
    const t = m[0];
    if (t === '\r') col = 0;
    else if (t === '\n') {
      row++;
      lines[row] ??= '';
      col = 0;
    } else if (t.startsWith('\u001b[?')) continue;
    else if (t.startsWith('\u001b[')) {
      const n = Number(m[1] || 1);
      if (m[2] === 'A') row = Math.max(0, row - n);
      else if (m[2] === 'G') col = n - 1;
      else if (m[2] === 'K') lines[row] = (lines[row] ?? '').slice(0, col);
      else if (m[2] === 'J') {
        lines[row] = (lines[row] ?? '').slice(0, col);
        lines.length = row + 1;
      }
    } else {
      const l = (lines[row] ?? '').padEnd(col);
      lines[row] = l.slice(0, col) + t + l.slice(col + 1);
      col++;
    }
  }
  return lines.filter((l, i) => l !== '' || i < lines.length - 1);
}

const T0 = 1_700_000_000_000;

function building(stage: 'evaluating' | 'building', percent: number): VmSnapshot {
  return vmSnapshot({
    name: 'web',
    build: buildInfo({
      status: 'building',
      startedAt: T0,
      progress: {
        buildsDone: 1,
        buildsExpected: 4,
        buildsRunning: 1,
        downloadsDone: 0,
        downloadsExpected: 0,
        bytesDone: 0,
        bytesExpected: 0,
        currentDrv: null,
        phase: null,
        lastLine: 'compiling',
        percent,
        stage,
      },
    }),
  });
}

describe('the progress bar on a terminal', () => {
  it('says evaluating with the time, then a bar, and leaves only the result line when done', async () => {
    const tty = fakeTty();
    let now = T0 + 3000;
    const view = createProgressView({ write: (x) => tty.write(x), isTTY: true, columns: 100, stream: tty }, () => now);
    view.update(building('evaluating', 0));
    await waitFor(() => screen(tty.text).at(-1) === 'web evaluating… 3s', {
      what: 'the evaluating line',
      detail: () => JSON.stringify(screen(tty.text)),
    });
    now = T0 + 12_000;
    view.update(building('building', 25));
    await waitFor(() => /^web 12s \[█+░+\] 25% 1\/4 builds \| compiling$/.test(screen(tty.text).at(-1) ?? ''), {
      what: 'the bar with the time',
      detail: () => JSON.stringify(screen(tty.text)),
    });
    view.update(vmSnapshot({ name: 'web', build: buildInfo({ status: 'succeeded' }) }));
    view.log('web: built /nix/store/x-nixos-system-web');
    view.stop();
    expect(screen(tty.text)).toEqual(['web: built /nix/store/x-nixos-system-web']);
  });

  it('removes the bar of a failed build too', async () => {
    const tty = fakeTty();
    const view = createProgressView({ write: (x) => tty.write(x), isTTY: true, columns: 100, stream: tty }, () => T0);
    view.update(building('building', 50));
    await waitFor(() => (screen(tty.text).at(-1) ?? '').includes('50%'), { what: 'the bar' });
    view.update(vmSnapshot({ name: 'web', build: buildInfo({ status: 'failed', error: 'boom' }) }));
    view.stop();
    expect(screen(tty.text)).toEqual([]);
  });
});
