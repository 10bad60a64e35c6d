import { afterEach, describe, expect, it, vi } from 'vitest';
import { trimWhenIdle } from '../../src/host/idle-trim.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('trimWhenIdle', () => {
  it('collects once per quiet spell, and every activity starts the spell again', () => {
    vi.useFakeTimers();
    let collections = 0;
    const trim = trimWhenIdle(1000, () => collections++);
    vi.advanceTimersByTime(900);
    trim.activity();
    vi.advanceTimersByTime(900);
    expect(collections).toBe(0);
    vi.advanceTimersByTime(200);
    expect(collections).toBe(1);
    // Quiet goes on: no timer keeps firing.
    vi.advanceTimersByTime(60_000);
    expect(collections).toBe(1);
    trim.activity();
    vi.advanceTimersByTime(1000);
    expect(collections).toBe(2);
    trim.activity();
    trim.stop();
    vi.advanceTimersByTime(5000);
    expect(collections).toBe(2);
  });

  it('finds a real gc() without --expose-gc on the command line', async () => {
    const { gcAvailable } = await import('../../src/host/idle-trim.ts');
    expect(gcAvailable()).toBe(true);
  });
});
