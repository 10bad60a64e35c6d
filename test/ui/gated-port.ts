/**
 * The real agent behind a port that lets a UI test choose when a call reaches it, and push the
 * agent's own snapshots as fast as a build does. With a call held, the windows see what they see
 * while a busy agent has not got to their edit yet: snapshots that still carry the old value.
 */
import type { AgentEvent, AgentMethod, AgentPort, ParamsOf, ResultOf, SubscribeOptions } from '../../src/api/types.ts';

export class GatedPort implements AgentPort {
  readonly #agent: AgentPort;
  readonly #gates = new Map<AgentMethod, ((refusal?: Error) => void)[]>();
  readonly #onHeld = new Set<() => void>();
  readonly #listeners = new Set<(ev: AgentEvent) => void>();
  #pump: ReturnType<typeof setInterval> | undefined;

  constructor(agent: AgentPort) {
    this.#agent = agent;
  }

  /** From now on, calls of `method` wait (in order) until release(method). */
  hold(method: AgentMethod): void {
    if (!this.#gates.has(method)) this.#gates.set(method, []);
  }

  /** Lets the held calls of `method` through, in the order they were made, and stops holding. */
  release(method: AgentMethod): void {
    const waiting = this.#gates.get(method) ?? [];
    this.#gates.delete(method);
    for (const go of waiting) go();
  }

  /**
   * Answers the held calls of `method` with `refusal` instead of passing them on, as the agent
   * answers an edit it cannot store (a settings file it cannot write), and stops holding.
   */
  refuse(method: AgentMethod, refusal: Error): void {
    const waiting = this.#gates.get(method) ?? [];
    this.#gates.delete(method);
    for (const go of waiting) go(refusal);
  }

  /** Resolves once `count` calls of `method` are being held. */
  held(method: AgentMethod, count = 1): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if ((this.#gates.get(method)?.length ?? 0) < count) return;
        this.#onHeld.delete(check);
        resolve();
      };
      this.#onHeld.add(check);
      check();
    });
  }

  /** Pushes the agent's current snapshot to every subscriber every `ms` (a build pushes at 10 Hz). */
  pump(ms = 100): void {
    clearInterval(this.#pump);
    this.#pump = setInterval(() => {
      void this.#agent.call('snapshot', {}).then((snapshot) => {
        for (const fn of this.#listeners) fn({ type: 'snapshot', snapshot });
      });
    }, ms);
  }

  stop(): void {
    clearInterval(this.#pump);
    this.#pump = undefined;
  }

  async call<M extends AgentMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    const gate = this.#gates.get(method);
    if (gate) {
      const refusal = await new Promise<Error | undefined>((go) => {
        gate.push(go);
        for (const check of [...this.#onHeld]) check();
      });
      if (refusal) throw refusal;
    }
    return this.#agent.call(method, params);
  }

  attachConsole(...args: Parameters<AgentPort['attachConsole']>): ReturnType<AgentPort['attachConsole']> {
    return this.#agent.attachConsole(...args);
  }

  subscribe(fn: (ev: AgentEvent) => void, opts?: SubscribeOptions): () => void {
    this.#listeners.add(fn);
    const off = this.#agent.subscribe(fn, opts);
    return () => {
      this.#listeners.delete(fn);
      off();
    };
  }
}
