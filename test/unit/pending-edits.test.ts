import { describe, expect, it } from 'vitest';
import { PendingEdits } from '../../src/renderer/pending.ts';

interface Form {
  a: number;
  b: string;
  map: Record<string, boolean>;
}

describe('PendingEdits', () => {
  const base: Form = { a: 1, b: 'x', map: {} };

  it('overlays the edits in flight on whatever the agent last said, the latest edit winning', () => {
    const edits = new PendingEdits<Form>();
    const first = edits.add({ a: 2 });
    const second = edits.add({ a: 3, map: { dev: true } });
    // A snapshot from before the agent got to either edit still shows both.
    expect(edits.overlay(base)).toEqual({ a: 3, b: 'x', map: { dev: true } });
    // Another window changed b meanwhile: that shows too.
    expect(edits.overlay({ ...base, b: 'y' })).toEqual({ a: 3, b: 'y', map: { dev: true } });
    // The first is answered (the agent's answer is the new base); the second still overlays it.
    edits.settle(first);
    expect(edits.overlay({ ...base, a: 2 })).toEqual({ a: 3, b: 'x', map: { dev: true } });
    edits.settle(second);
    expect(edits.size).toBe(0);
    expect(edits.overlay(base)).toBe(base);
  });

  it('a refused edit (settled without a new base) leaves the agent’s value showing', () => {
    const edits = new PendingEdits<Form>();
    const refused = edits.add({ b: 'bad' });
    expect(edits.overlay(base).b).toBe('bad');
    edits.settle(refused);
    expect(edits.overlay(base).b).toBe('x');
  });
});
