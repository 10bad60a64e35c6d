/**
 * The renderer's only way out: `window.nixvm` (set by the preload in the app, by the harness in
 * the UI tests). Unwraps reply envelopes into values or `BridgeError`s that keep the error code.
 */
import {
  BRIDGE_GLOBAL,
  type AppParamsOf,
  type AppResultOf,
  type AppVerb,
  type Bridge,
  type Reply,
  type UiParamsOf,
  type UiResultOf,
  type UiVerb,
} from '../api/ipc.ts';
import type { AgentEvent, AgentMethod, ParamsOf, ResultOf, SubscribeOptions, WireConsoleEvent } from '../api/types.ts';
import type { AgentErrorCode } from '../api/errors.ts';

declare global {
  interface Window {
    nixvm?: Bridge;
  }
}

export class BridgeError extends Error {
  readonly code: AgentErrorCode;
  constructor(code: AgentErrorCode, message: string) {
    super(message);
    this.name = 'BridgeError';
    this.code = code;
  }
}

function unwrap<T>(r: Reply<T>): T {
  if (r.ok) return r.value;
  throw new BridgeError(r.error.code, r.error.message);
}

function raw(): Bridge {
  const b = (window as unknown as Record<string, Bridge | undefined>)[BRIDGE_GLOBAL];
  if (!b) throw new Error('NixVM: the app bridge is missing (window.nixvm); this page must be opened by NixVM.app.');
  return b;
}

export const bridge = {
  async call<M extends AgentMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    return unwrap(await raw().call(method, params));
  },
  async app<V extends AppVerb>(verb: V, params: AppParamsOf<V>): Promise<AppResultOf<V>> {
    return unwrap(await raw().app(verb, params));
  },
  async ui<V extends UiVerb>(verb: V, params: UiParamsOf<V>): Promise<UiResultOf<V>> {
    return unwrap(await raw().ui(verb, params));
  },
  /** Snapshots and notices always; log lines only for the logs named in opts. */
  onEvent(fn: (ev: AgentEvent) => void, opts?: SubscribeOptions): () => void {
    return raw().onEvent(fn, opts);
  },
  /** Attach this window to a VM's serial console; rejects with the agent's sentence. */
  async consoleAttach(vm: string, fn: (ev: WireConsoleEvent) => void): Promise<{ pty: string }> {
    return unwrap(await raw().consoleAttach(vm, fn));
  },
  async consoleInput(data: string): Promise<void> {
    unwrap(await raw().consoleInput(data));
  },
  async consoleDetach(): Promise<void> {
    unwrap(await raw().consoleDetach());
  },
};

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
