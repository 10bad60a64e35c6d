/**
 * The `window.nixvm` object, built over a transport (Electron's ipcRenderer in the preload, the
 * test harness's exposed functions in the UI tests), so both run the same bookkeeping: one
 * subscription per window whose log interest is the union of its listeners', and log events
 * handed only to the listeners that asked for them.
 */
import { CHANNELS, type Bridge, type Reply } from '../api/ipc.ts';
import type { AgentEvent, LogKind, SubscribeOptions, WireConsoleEvent } from '../api/types.ts';

export interface Transport {
  invoke(channel: string, arg: unknown): Promise<unknown>;
  /** Registers the one receiver of events pushed by the main process. */
  listen(fn: (ev: AgentEvent) => void): void;
  /** Registers the one receiver of the attached console's events. */
  listenConsole(fn: (ev: WireConsoleEvent) => void): void;
}

type LogRef = { vm: string; kind: LogKind };

export function createBridge(t: Transport): Bridge {
  const listeners = new Map<number, { fn: (ev: AgentEvent) => void; logs: LogRef[]; usage: boolean }>();
  let nextId = 0;
  let lastSent = '';

  function sync(): void {
    const seen = new Set<string>();
    const logs: LogRef[] = [];
    for (const l of listeners.values()) {
      for (const r of l.logs) {
        const key = `${r.kind}\0${r.vm}`;
        if (!seen.has(key)) {
          seen.add(key);
          logs.push({ vm: r.vm, kind: r.kind });
        }
      }
    }
    // The window shows usage while any of its listeners does (the dropdown, while open).
    const usage = [...listeners.values()].some((l) => l.usage);
    const opts: SubscribeOptions = usage ? { logs, usage } : { logs };
    const key = JSON.stringify(opts);
    if (key === lastSent) return;
    lastSent = key;
    void t.invoke(CHANNELS.subscribe, opts);
  }

  t.listen((ev) => {
    for (const l of Array.from(listeners.values())) {
      if (ev.type === 'log' && !l.logs.some((r) => r.vm === ev.vm && r.kind === ev.kind)) continue;
      try {
        l.fn(ev);
      } catch (e) {
        console.error('nixvm: event listener failed', e);
      }
    }
  });

  let consoleFn: ((ev: WireConsoleEvent) => void) | null = null;
  t.listenConsole((ev) => {
    try {
      consoleFn?.(ev);
    } catch (e) {
      console.error('nixvm: console listener failed', e);
    }
  });

  return {
    consoleAttach(vm, fn) {
      consoleFn = fn;
      return t.invoke(CHANNELS.consoleAttach, { vm }) as Promise<Reply<{ pty: string }>>;
    },
    consoleInput: (data) => t.invoke(CHANNELS.consoleInput, { data }) as Promise<Reply<null>>,
    consoleDetach() {
      consoleFn = null;
      return t.invoke(CHANNELS.consoleDetach, {}) as Promise<Reply<null>>;
    },
    call: (method, params) => t.invoke(CHANNELS.call, { method, params }) as Promise<Reply<never>>,
    ui: (verb, params) => t.invoke(CHANNELS.ui, { verb, params }) as Promise<Reply<never>>,
    app: (verb, params) => t.invoke(CHANNELS.app, { verb, params }) as Promise<Reply<never>>,
    onEvent(fn, opts) {
      const id = nextId++;
      listeners.set(id, {
        fn,
        logs: (opts?.logs ?? []).map((r) => ({ vm: r.vm, kind: r.kind })),
        usage: opts?.usage === true,
      });
      sync();
      return () => {
        if (listeners.delete(id)) sync();
      };
    },
  };
}
