import { describe, expect, it } from 'vitest';
import { run, RunError, ProgramNotFoundError, recentRuns } from '../../src/host/runner.ts';

describe('runner', () => {
  it('runs argv without a shell and records it', async () => {
    const r = await run(['/bin/echo', 'a b', '$HOME;']);
    expect(r.stdout).toBe('a b $HOME;\n');
    expect(recentRuns().at(-1)?.argv).toEqual(['/bin/echo', 'a b', '$HOME;']);
    expect(recentRuns().at(-1)?.exitCode).toBe(0);
  });

  it('names the program and where it looked when it is missing', async () => {
    const err = await run(['nixvm-no-such-program'], { searchPath: ['/nope/a', '/nope/b'] }).catch((e) => e);
    expect(err).toBeInstanceOf(ProgramNotFoundError);
    expect(err.message).toContain('nixvm-no-such-program');
    expect(err.message).toContain('/nope/a, /nope/b');
  });

  it('throws a RunError with exit code and stderr tail', async () => {
    const err = await run(['/bin/sh', '-c', 'echo boom >&2; exit 3']).catch((e) => e);
    expect(err).toBeInstanceOf(RunError);
    expect(err.exitCode).toBe(3);
    expect(err.message).toContain('boom');
  });

  it('runs background work nicer, and what it starts too, with the nice(1) argv recorded', async () => {
    const base = Number((await run(['nice'])).stdout.trim());
    const r = await run(['/bin/sh', '-c', 'nice'], { nice: 10 });
    expect(Number(r.stdout.trim())).toBe(Math.min(19, base + 10));
    expect(recentRuns().at(-1)?.argv.slice(1, 4)).toEqual(['-n', '10', '/bin/sh']);
    expect(recentRuns().at(-1)?.argv[0]).toMatch(/\/nice$/);
  });

  it('streams lines as they come', async () => {
    const lines: string[] = [];
    await run(['/bin/sh', '-c', 'echo one; echo two >&2; printf three'], { onLine: (l) => lines.push(l) });
    expect(lines.sort()).toEqual(['one', 'three', 'two']);
  });

  it('keeps only a tail of stderr when asked, while still streaming every line', async () => {
    let lines = 0;
    const r = await run(
      ['/bin/sh', '-c', 'i=0; while [ $i -lt 5000 ]; do echo "line $i" >&2; i=$((i+1)); done; echo out'],
      {
        stderrTailChars: 100,
        onLine: (_l, stream) => {
          if (stream === 'stderr') lines++;
        },
      },
    );
    expect(lines).toBe(5000);
    expect(r.stderr.length).toBeLessThanOrEqual(100);
    expect(r.stderr.endsWith('line 4999\n')).toBe(true);
    expect(r.stdout).toBe('out\n');
  });

  it('cancels and times out', async () => {
    const ac = new AbortController();
    const p = run(['/bin/sleep', '10'], { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    const err = await p.catch((e) => e);
    expect(err.cancelled).toBe(true);
    const t = await run(['/bin/sleep', '10'], { timeoutMs: 50 }).catch((e) => e);
    expect(t.timedOut).toBe(true);
  });
});
