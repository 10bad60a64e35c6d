/**
 * The console relay over a real pty (the simulator's helper makes it the way vfkit does): the log
 * it writes (lines, not CRLFs; bounded while the guest runs), what attached clients get (recent
 * history first, then live), input from one client at a time, and its end when the pty closes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ConsoleEvent } from '../../src/api/types.ts';
import { ConsoleRelay } from '../../src/core/vm/console-relay.ts';
import { openPty, type SimPty } from '../vfkit-sim/pty.ts';
import { settles, waitFor } from '../helpers/wait.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-relay-'));
const ptys: SimPty[] = [];
afterAll(() => {
  for (const p of ptys) p.close();
  fs.rmSync(root, { recursive: true, force: true });
});

async function setup(maxLogBytes?: number) {
  const pty = await openPty();
  ptys.push(pty);
  const typed: Buffer[] = [];
  pty.onInput((d) => typed.push(d));
  const log = path.join(root, `console-${ptys.length}.log`);
  const problems: string[] = [];
  const relay = new ConsoleRelay('web', pty.name, log, (p) => problems.push(p), maxLogBytes);
  await relay.open();
  const read = () => fs.readFileSync(log, 'utf8');
  return { pty, relay, log, read, typed: () => Buffer.concat(typed).toString(), problems };
}

function listener() {
  let text = '';
  let writer: boolean | null = null;
  let end: string | null = null;
  const fn = (ev: ConsoleEvent) => {
    if (ev.kind === 'data') text += Buffer.from(ev.data).toString();
    else if (ev.kind === 'input') writer = ev.writer;
    else end = ev.reason;
  };
  return { fn, text: () => text, writer: () => writer, end: () => end };
}

const until = (what: string, ok: () => boolean) => waitFor(ok, { what });

describe('the console relay', () => {
  it('logs lines (a CRLF split across reads included) and shows a new client the recent screen first', async () => {
    const { pty, relay, read } = await setup();
    pty.write('one\r');
    await until('"one" in the log', () => read().includes('one'));
    pty.write('\ntwo\r\nthree\r\n');
    await until('three lines', () => read() === 'one\ntwo\nthree\n');
    const l = listener();
    relay.attach(l.fn, false);
    // History first: exactly what the guest sent, CRLFs and all.
    expect(l.text()).toBe('one\r\ntwo\r\nthree\r\n');
    pty.write('four\r\n');
    await until('the live line', () => l.text().endsWith('four\r\n'));
  });

  it('passes input from the newest client that asked for it, and hands it back when that one leaves', async () => {
    const { relay, typed } = await setup();
    const a = listener();
    const b = listener();
    const watcher = listener();
    const ha = relay.attach(a.fn, true);
    const hw = relay.attach(watcher.fn, false);
    const hb = relay.attach(b.fn, true);
    expect([a.writer(), b.writer(), watcher.writer()]).toEqual([false, true, false]);
    ha.write(Buffer.from('from-a '));
    hw.write(Buffer.from('from-watcher '));
    hb.write(Buffer.from('from-b '));
    await until('b typed', () => typed().includes('from-b'));
    hb.detach();
    expect(a.writer()).toBe(true);
    ha.write(Buffer.from('a-again'));
    await until('a typed', () => typed().includes('a-again'));
    expect(typed()).toBe('from-b a-again');
  });

  it('keeps a run that writes without end under its cap, with the newest lines and a note', async () => {
    const { pty, read } = await setup(8192);
    const lines = Array.from({ length: 2000 }, (_, i) => `line ${i} ${'x'.repeat(20)}`);
    for (const l of lines) pty.write(`${l}\r\n`);
    // The relay trims right after the write that passed the cap, so a read in between can see one
    // pty read's worth more (a loaded machine's reads are bigger): wait for the trimmed file.
    await waitFor(
      () => {
        const t = read();
        return t.includes(`${lines.at(-1)}\n`) && t.length <= 8192 + 200;
      },
      {
        what: 'the last line in the log, trimmed under its cap',
        detail: () => `The log holds ${read().length} bytes.`,
      },
    );
    const text = read();
    expect(text).toMatch(/^\[nixvm: the first \d+ bytes of this run's console were dropped/);
    expect(text.endsWith(`${lines.at(-1)}\n`)).toBe(true);
  });

  it('ends, telling its clients, when the pty closes (the VM ended)', async () => {
    const { pty, relay, read } = await setup();
    const l = listener();
    relay.attach(l.fn, true);
    pty.write('reboot: Power down\r\n');
    pty.close();
    // The helper holds the pty until the last words are read, then it is gone.
    ptys.splice(ptys.indexOf(pty), 1);
    await settles(relay.closed, { what: 'the relay to close' });
    expect(l.end()).toBe('The console of VM "web" closed: the VM ended.');
    expect(read()).toBe('reboot: Power down\n');
  });
});
