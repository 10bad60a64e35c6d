/** The tests' one wait: it fails at once, with the output, when the process it depends on dies. */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { settles, waitFor, watchChild } from '../helpers/wait.ts';

describe('waitFor', () => {
  it('returns the first truthy value, treating a throw as "not yet"', async () => {
    let n = 0;
    const v = await waitFor(
      () => {
        if (++n < 3) throw new Error('not there yet');
        return `try ${n}`;
      },
      { what: 'the third try', intervalMs: 1 },
    );
    expect(v).toBe('try 3');
  });

  it('fails as soon as the watched process exits, with its exit status and output', async () => {
    const child = spawn('/bin/sh', ['-c', 'echo "listen: address already in use" >&2; exit 3']);
    const p = watchChild(child, 'the server');
    const t0 = Date.now();
    const err = await waitFor(() => false, { what: 'its socket', process: p, timeoutMs: 20_000 }).catch((e) => e);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(String(err)).toMatch(
      /the server \(pid \d+\) exited with code 3 after \d+ ms, while we waited for its socket/,
    );
    expect(String(err)).toContain('listen: address already in use');
  });

  it('still succeeds when what it waited for happened just before the exit', async () => {
    const child = spawn('/bin/sh', ['-c', 'exit 0']);
    const p = watchChild(child, 'the job');
    await p.exited;
    expect(await waitFor(() => 'done', { what: 'the result', process: p })).toBe('done');
  });

  it('times out naming what it waited for, the last error and the process still running', async () => {
    const child = spawn('/bin/sh', ['-c', 'echo booting >&2; exec sleep 30']);
    const p = watchChild(child, 'the VM');
    try {
      const err = await waitFor(
        () => {
          throw new Error('connect ENOENT /tmp/x.sock');
        },
        { what: 'the REST socket', process: p, timeoutMs: 300 },
      ).catch((e) => e);
      expect(String(err)).toContain('Timed out after 300 ms waiting for the REST socket');
      expect(String(err)).toContain('is still running');
      expect(String(err)).toContain('Last try: connect ENOENT /tmp/x.sock');
      expect(String(err)).toContain('booting');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('cuts off a condition that never returns', async () => {
    const err = await waitFor(() => new Promise<boolean>(() => {}), { what: 'an answer', timeoutMs: 200 }).catch(
      (e) => e,
    );
    expect(String(err)).toContain('Timed out after 200 ms waiting for an answer');
  });
});

describe('settles', () => {
  it('passes a value or a rejection through, and times out otherwise', async () => {
    expect(await settles(Promise.resolve(4), { what: 'four' })).toBe(4);
    await expect(settles(Promise.reject(new Error('no')), { what: 'x' })).rejects.toThrow('no');
    await expect(settles(new Promise(() => {}), { what: 'the event', timeoutMs: 100 })).rejects.toThrow(
      'Timed out after 100 ms waiting for the event',
    );
  });
});
