import { appendFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { follow, rotateConsoleLog, tail, tailRuns, type Follower } from '../../src/core/vm/console.ts';
import { runStartLine, runStartOf, stampedLine, unstamp } from '../../src/api/log-lines.ts';
import { settles, waitFor } from '../helpers/wait.ts';

let tmp: string;
let n = 0;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'nixvm-console-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});
/** A fresh directory per test: follow() watches a whole directory. */
async function freshDir(): Promise<string> {
  const d = path.join(tmp, `t${n++}`);
  await mkdir(d);
  return d;
}

describe('rotateConsoleLog', () => {
  it('shifts current → .1 → .2 … and drops the oldest', async () => {
    const d = await freshDir();
    const log = path.join(d, 'console.log');
    for (let run = 1; run <= 5; run++) {
      await rotateConsoleLog(log, 3);
      await writeFile(log, `run ${run}\n`);
    }
    await rotateConsoleLog(log, 3);
    expect((await readdir(d)).sort()).toEqual(['console.log.1', 'console.log.2', 'console.log.3']);
    expect(await readFile(`${log}.1`, 'utf8')).toBe('run 5\n');
    expect(await readFile(`${log}.3`, 'utf8')).toBe('run 3\n');
  });

  it('copes with gaps and with leftovers from a larger keep', async () => {
    const d = await freshDir();
    const log = path.join(d, 'vm.log');
    await writeFile(log, 'now\n');
    await writeFile(`${log}.2`, 'two\n');
    await writeFile(`${log}.7`, 'seven\n');
    await writeFile(path.join(d, 'vm.log.bak'), 'not ours\n');
    await writeFile(path.join(d, 'other.log.1'), 'not ours\n');
    await rotateConsoleLog(log, 3);
    expect((await readdir(d)).sort()).toEqual(['other.log.1', 'vm.log.1', 'vm.log.3', 'vm.log.bak']);
    expect(await readFile(`${log}.1`, 'utf8')).toBe('now\n');
    expect(await readFile(`${log}.3`, 'utf8')).toBe('two\n');
  });

  it('keep = 0 keeps nothing; a missing directory is fine', async () => {
    const d = await freshDir();
    const log = path.join(d, 'vm.log');
    await writeFile(log, 'x\n');
    await writeFile(`${log}.1`, 'y\n');
    await rotateConsoleLog(log, 0);
    expect(await readdir(d)).toEqual([]);
    await rotateConsoleLog(path.join(d, 'nope', 'vm.log'));
    await expect(rotateConsoleLog(log, -1)).rejects.toThrow(RangeError);
  });

  it('caps the total: older runs go first, the last run keeps its end', async () => {
    const d = await freshDir();
    const log = path.join(d, 'vm.log');
    await writeFile(`${log}.1`, `${'a'.repeat(300)}\n`);
    await writeFile(`${log}.2`, `${'b'.repeat(300)}\n`);
    await writeFile(log, `${'c'.repeat(300)}\n`);
    await rotateConsoleLog(log, 5, 700);
    expect((await readdir(d)).sort()).toEqual(['vm.log.1', 'vm.log.2']);
    expect(await readFile(`${log}.2`, 'utf8')).toMatch(/^a+\n$/);

    // The last run alone over the cap: cut its beginning at a line boundary, say so, keep the end.
    const lines = `${Array.from({ length: 2000 }, (_, i) => `line ${i} ✓`).join('\n')}\n`;
    await writeFile(log, lines);
    await rotateConsoleLog(log, 5, 1000);
    expect((await readdir(d)).sort()).toEqual(['vm.log.1']);
    const kept = await readFile(`${log}.1`, 'utf8');
    const [note, ...rest] = kept.split('\n');
    expect(note).toMatch(/^\[nixvm: the first \d+ bytes of this run's console were dropped/);
    expect(rest[0]).toMatch(/^line \d+ ✓$/);
    expect(kept.endsWith('line 1999 ✓\n')).toBe(true);
    expect((await stat(`${log}.1`)).size).toBeLessThan(1000 + note!.length + 2);
  });
});

describe('tail', () => {
  const write = async (content: string | Buffer): Promise<string> => {
    const f = path.join(await freshDir(), 'c.log');
    await writeFile(f, content);
    return f;
  };

  it('returns the last lines, oldest first, with or without a final newline', async () => {
    const f = await write('one\ntwo\nthree\nfour\n');
    expect(await tail(f, 2)).toEqual(['three', 'four']);
    expect(await tail(f, 10)).toEqual(['one', 'two', 'three', 'four']);
    expect(await tail(await write('one\ntwo\nlogin: '), 2)).toEqual(['two', 'login: ']);
    expect(await tail(await write('a\n\n\nb\n'), 3)).toEqual(['', '', 'b']);
    expect(await tail(await write(''), 5)).toEqual([]);
    expect(await tail(await write('\n'), 5)).toEqual(['']);
    expect(await tail(f, 0)).toEqual([]);
    expect(await tail(path.join(tmp, 'missing.log'), 5)).toEqual([]);
  });

  it('strips CRLF', async () => {
    const f = await write('[    0.000000] Linux version 6.6\r\n[    0.1] ok\r\nnixos login: ');
    expect(await tail(f, 3)).toEqual(['[    0.000000] Linux version 6.6', '[    0.1] ok', 'nixos login: ']);
  });

  it('is the same whatever the chunk size: multibyte characters and long lines across chunks', async () => {
    const lines = ['ä€😀 mixed', 'x'.repeat(300), '', '名前😀'.repeat(12), 'end ✓'];
    const f = await write(`${lines.join('\r\n')}\n`);
    for (const chunkSize of [1, 2, 3, 5, 7, 64, 4096]) {
      expect(await tail(f, 5, { chunkSize }), `chunk ${chunkSize}`).toEqual(lines);
      expect(await tail(f, 2, { chunkSize })).toEqual(lines.slice(-2));
    }
  });

  it('returns no more than maxBytes of the newest lines (always the last one)', async () => {
    const file = path.join(await freshDir(), 'big.log');
    await writeFile(file, Array.from({ length: 100 }, (_, i) => `line ${String(i).padStart(3, '0')}`).join('\n'));
    const got = await tail(file, 1000, { maxBytes: 45 });
    expect(got).toEqual(['line 095', 'line 096', 'line 097', 'line 098', 'line 099']);
    expect(await tail(file, 1000, { maxBytes: 1 })).toEqual(['line 099']);
  });

  it('cuts a monster line at a character boundary and marks it', async () => {
    const f = await write(`short\n${'😀'.repeat(100)}\nlast\n`);
    const [, cut, last] = await tail(f, 3, { maxLineBytes: 10 });
    // 10 bytes hold two 4-byte emoji; the third would be split, so it is left out.
    expect(cut).toBe('😀😀…');
    expect(last).toBe('last');
  });
});

describe('tailRuns', () => {
  it('fills the lines asked for from the runs before the current one, oldest first, within maxBytes', async () => {
    const d = await freshDir();
    const log = path.join(d, 'console.log');
    for (let run = 1; run <= 3; run++) {
      await rotateConsoleLog(log, 5);
      await writeFile(log, `${runStartLine(run * 1000)}\nrun ${run} a\nrun ${run} b\n`);
    }
    expect(await tailRuns(log, 2)).toEqual(['run 3 a', 'run 3 b']);
    expect(await tailRuns(log, 5)).toEqual(['run 2 a', 'run 2 b', runStartLine(3000), 'run 3 a', 'run 3 b']);
    expect(await tailRuns(log, 100)).toHaveLength(9);
    // The byte cap holds across runs: the current run (65 bytes) leaves room for one line of the
    // run before; a run cut short ends the reading there, so no run joins another unmarked.
    expect(await tailRuns(log, 100, { maxBytes: 80 })).toEqual(['run 2 b', runStartLine(3000), 'run 3 a', 'run 3 b']);
    expect(await tailRuns(log, 100, { maxBytes: 56 })).toEqual(['run 3 a', 'run 3 b']);
    expect(await tailRuns(log, 4)).toEqual(['run 2 b', runStartLine(3000), 'run 3 a', 'run 3 b']);
    // A log from before the run-start line: read alone.
    await writeFile(log, 'old agent a\nold agent b\n');
    expect(await tailRuns(log, 100)).toEqual(['old agent a', 'old agent b']);
    expect(await tailRuns(path.join(d, 'none.log'), 10)).toEqual([]);
  });

  it('run-start and stamped lines read back what was written, and nothing else passes for them', () => {
    const at = Date.UTC(2026, 11, 3, 13, 40, 1, 234);
    expect(runStartLine(at)).toBe('[nixvm: run started at 2026-12-03T13:40:01.234Z]');
    expect(runStartOf(runStartLine(at))).toBe(at);
    expect(runStartOf(`${runStartLine(at)} and more`)).toBeNull();
    expect(runStartOf('[nixvm: run started at yesterday]')).toBeNull();
    expect(stampedLine(at, 'building foo')).toBe('2026-12-03T13:40:01.234Z building foo');
    expect(unstamp(stampedLine(at, '  indented'))).toEqual({ at, text: '  indented' });
    expect(unstamp('building foo')).toBeNull();
    expect(unstamp('2026-12-03 13:40:01 not ours')).toBeNull();
  });
});

describe('follow', () => {
  const followers: Follower[] = [];
  afterAll(() => {
    for (const f of followers) f.close();
  });

  /** Collects lines; `until(k)` waits for k lines in total. */
  class Collector {
    readonly lines: string[] = [];
    readonly push = (ls: string[]): void => {
      this.lines.push(...ls);
    };
    async until(k: number): Promise<string[]> {
      await waitFor(() => this.lines.length >= k, {
        what: `${k} lines`,
        detail: () => `Got ${JSON.stringify(this.lines)}`,
      });
      return this.lines.slice(0, k);
    }
  }
  const collector = (): Collector => new Collector();
  /** A follower that has looked at the file once (so later appends are "after it starts"). */
  const start = async (file: string, c: Collector, opts = {}): Promise<Follower> => {
    // The poll is set far out so these tests prove that change events alone deliver lines.
    const f = follow(file, c.push, { pollMs: 60_000, partialFlushMs: 200, ...opts });
    followers.push(f);
    await settles(f.ready, { what: `the follower of ${file} to start` });
    return f;
  };

  it('streams lines appended after it starts (not what was there before)', async () => {
    const file = path.join(await freshDir(), 'console.log');
    await writeFile(file, 'old 1\nold 2\n');
    const c = collector();
    const f = await start(file, c);
    await appendFile(file, 'new 1\r\nnew ');
    await appendFile(file, '2\n');
    expect(await c.until(2)).toEqual(['new 1', 'new 2']);
    f.close();
    // A follower still open sees the next line; the closed one must not.
    const witness = collector();
    await start(file, witness);
    await appendFile(file, 'after close\n');
    expect(await witness.until(1)).toEqual(['after close']);
    expect(c.lines).toEqual(['new 1', 'new 2']);
  });

  // Issue 16: a guest writing tens of KB without a newline reached the log window whole (and a
  // megabyte line cost a megabyte per follower); a line is now cut, as `tail` cuts it.
  it('cuts a line that never ends at the cap, marks it, and skips the rest of it', async () => {
    const file = path.join(await freshDir(), 'console.log');
    await writeFile(file, '');
    const c = collector();
    await start(file, c, { maxLineBytes: 1000 });
    const huge = 'é'.repeat(300_000); // 600 KB, two bytes a character
    await appendFile(file, huge);
    await appendFile(file, huge);
    await appendFile(file, '\nnext line\n');
    const got = await c.until(2);
    expect(got[1]).toBe('next line');
    expect(got[0]).toBe(`${'é'.repeat(500)}…`);
    expect(c.lines).toHaveLength(2);
  });

  it('fromStart reads what is there, and a file that appears later is read whole', async () => {
    const d = await freshDir();
    const a = path.join(d, 'a.log');
    await writeFile(a, 'first\n');
    const ca = collector();
    await start(a, ca, { fromStart: true });
    expect(await ca.until(1)).toEqual(['first']);
    const b = path.join(d, 'b.log');
    const cb = collector();
    await start(b, cb);
    await writeFile(b, 'booting\nstage 1\n');
    expect(await cb.until(2)).toEqual(['booting', 'stage 1']);
  });

  it('delivers a prompt without newline after a quiet moment, and split UTF-8 intact', async () => {
    const file = path.join(await freshDir(), 'console.log');
    await writeFile(file, '');
    const c = collector();
    // No quiet-moment flush while a character is split: the split must be healed by the next read.
    await start(file, c, { partialFlushMs: 60_000 });
    const bytes = Buffer.from('boot\nwörld ✓\n');
    await appendFile(file, bytes.subarray(0, 7)); // ends inside "ö"
    // "boot" out means the follower has read the chunk that ends mid-character.
    expect(await c.until(1)).toEqual(['boot']);
    await appendFile(file, bytes.subarray(7));
    expect(await c.until(2)).toEqual(['boot', 'wörld ✓']);

    const prompt = collector();
    await start(file, prompt);
    await appendFile(file, 'nixos login: ');
    expect(await prompt.until(1)).toEqual(['nixos login: ']);
  });

  it('survives rotation: finishes the old file, then follows the new one', async () => {
    const file = path.join(await freshDir(), 'console.log');
    await writeFile(file, 'run 1 boot\n');
    const c = collector();
    await start(file, c);
    // All in one tick, so the follower first hears of it when the file is already replaced.
    appendFileSync(file, 'run 1 last words\n');
    renameSync(file, `${file}.1`);
    writeFileSync(file, 'run 2 boot\n');
    await appendFile(file, 'run 2 up\n');
    expect(await c.until(3)).toEqual(['run 1 last words', 'run 2 boot', 'run 2 up']);
    // A plain rename-and-recreate, a second time.
    await rename(file, `${file}.x`);
    await writeFile(file, 'run 3\n');
    expect((await c.until(4))[3]).toBe('run 3');
  });

  it('starts over when the file is truncated in place', async () => {
    const file = path.join(await freshDir(), 'console.log');
    await writeFile(file, 'a long first line that makes the file big\n');
    const c = collector();
    await start(file, c);
    await truncate(file, 0);
    await appendFile(file, 'fresh\n');
    expect(await c.until(1)).toEqual(['fresh']);
  });

  it('the fallback poll alone also delivers (a file system without change events)', async () => {
    const file = path.join(await freshDir(), 'console.log');
    await writeFile(file, '');
    const c = collector();
    const f = follow(file, c.push, { pollMs: 100 });
    followers.push(f);
    await settles(f.ready, { what: 'the follower to start' });
    await appendFile(file, 'polled\n');
    expect(await c.until(1)).toEqual(['polled']);
  });
});
