/** The EventHub's bounds (issue 16): which logs may be followed, how many, and how long a line travels. */
import { describe, expect, it } from 'vitest';
import type { AgentEvent } from '../../src/api/types.ts';
import { MAX_LOG_LINE_BYTES } from '../../src/api/validate.ts';
import { EventHub } from '../../src/core/event-hub.ts';
import { agentSnapshot } from '../helpers/fake-port.ts';

function hub(maxLogFilters?: number): EventHub {
  return new EventHub({
    emitIntervalMs: 100,
    snapshot: () => agentSnapshot([]),
    afterEmit: () => {},
    consoleLogPath: (vm) => `/nonexistent/${vm}/console.log`,
    knows: (vm) => vm === 'web' || vm === 'db',
    ...(maxLogFilters !== undefined ? { maxLogFilters } : {}),
    log: () => {},
  });
}

describe('EventHub', () => {
  it('follows only logs of VMs that exist', () => {
    const h = hub();
    expect(() => h.subscribe(() => {}, { logs: [{ vm: 'ghost', kind: 'build' }] })).toThrow(
      'There is no VM named "ghost" whose log could be followed.',
    );
    h.close();
  });

  it('caps the logs all subscribers follow together, and gives the room back on unsubscribe', () => {
    const h = hub(3);
    const a = h.subscribe(() => {}, {
      logs: [
        { vm: 'web', kind: 'build' },
        { vm: 'db', kind: 'build' },
        { vm: 'web', kind: 'build' },
      ],
    });
    h.subscribe(() => {}, { logs: [{ vm: 'web', kind: 'build' }] });
    expect(() => h.subscribe(() => {}, { logs: [{ vm: 'db', kind: 'build' }] })).toThrow(/already follows 3 logs/);
    a();
    expect(() => h.subscribe(() => {}, { logs: [{ vm: 'db', kind: 'build' }] })).not.toThrow();
    h.close();
  });

  it('cuts a live log line at the same cap as the answers to `logs`', () => {
    const h = hub();
    const got: AgentEvent[] = [];
    h.subscribe((ev) => got.push(ev), { logs: [{ vm: 'web', kind: 'build' }] });
    h.broadcast({ type: 'log', vm: 'web', kind: 'build', lines: ['ü'.repeat(600_000), 'short'] });
    const ev = got[0] as Extract<AgentEvent, { type: 'log' }>;
    expect(Buffer.byteLength(ev.lines[0]!)).toBeLessThanOrEqual(MAX_LOG_LINE_BYTES + 3);
    expect(ev.lines[0]!.endsWith('ü…')).toBe(true);
    expect(ev.lines[1]).toBe('short');
    h.close();
  });
});
