/**
 * The main-process side of the IPC contract, without Electron: validates every request,
 * runs it against the agent or the UI verbs, and answers with a Reply envelope; keeps one agent
 * subscription per window. src/main/ipc.ts feeds it from ipcMain after checking the sender;
 * the UI tests feed it from the page, so both exercise the same code.
 */
import { AgentError, isAgentMethod, type AgentEvent, type AgentPort, type SubscribeOptions } from '../api/types.ts';
import { CHANNELS, MAX_LOG_SUBSCRIPTIONS, isUiVerb, type Reply } from '../api/ipc.ts';
import type { UiHandlers } from './actions.ts';
import { validateAgentParams, validateUiParams } from './validate.ts';

/** One window on the other side of IPC. */
export interface IpcClient {
  /** Stable per window (webContents id). */
  id: number | string;
  send(ev: AgentEvent): void;
}

export function toReplyError(e: unknown): Reply<never> {
  if (e instanceof AgentError) return { ok: false, error: e.toJSON() };
  const message = e instanceof Error ? e.message : String(e);
  return { ok: false, error: { code: 'failed', message } };
}

function validateSubscribe(arg: unknown): SubscribeOptions {
  if (arg === null || typeof arg !== 'object' || Array.isArray(arg))
    throw new AgentError('bad-request', 'Invalid request: subscribe options must be an object.');
  const logs = (arg as { logs?: unknown }).logs ?? [];
  if (!Array.isArray(logs) || logs.length > MAX_LOG_SUBSCRIPTIONS) {
    throw new AgentError(
      'bad-request',
      `Invalid request: logs must be a list of at most ${MAX_LOG_SUBSCRIPTIONS} entries.`,
    );
  }
  return {
    logs: logs.map((l: unknown) => {
      const r = validateAgentParams('logs', { ...(l as object), lines: 1 });
      return { vm: r.vm, kind: r.kind };
    }),
  };
}

export class IpcDispatcher {
  private readonly agent: AgentPort;
  private readonly ui: UiHandlers;
  private readonly subs = new Map<IpcClient['id'], () => void>();

  constructor(agent: AgentPort, ui: UiHandlers) {
    this.agent = agent;
    this.ui = ui;
  }

  /** Answers one invoke on one of our channels; never throws. */
  async handle(channel: string, arg: unknown, client: IpcClient): Promise<Reply<unknown>> {
    try {
      const req = (arg ?? {}) as { method?: unknown; verb?: unknown; params?: unknown };
      switch (channel) {
        case CHANNELS.call: {
          if (!isAgentMethod(req.method))
            throw new AgentError('bad-request', `Invalid request: unknown method ${JSON.stringify(req.method)}.`);
          const params = validateAgentParams(req.method, req.params);
          const value = await (this.agent.call as (m: string, p: unknown) => Promise<unknown>)(req.method, params);
          return { ok: true, value };
        }
        case CHANNELS.ui: {
          if (!isUiVerb(req.verb))
            throw new AgentError('bad-request', `Invalid request: unknown action ${JSON.stringify(req.verb)}.`);
          const params = validateUiParams(req.verb, req.params);
          const value = await (this.ui[req.verb] as (p: unknown) => Promise<unknown>)(params);
          return { ok: true, value };
        }
        case CHANNELS.subscribe: {
          const opts = validateSubscribe(arg);
          this.subs.get(client.id)?.();
          this.subs.set(
            client.id,
            this.agent.subscribe((ev) => client.send(ev), opts),
          );
          return { ok: true, value: null };
        }
        default:
          throw new AgentError('bad-request', `Invalid request: unknown channel ${JSON.stringify(channel)}.`);
      }
    } catch (e) {
      return toReplyError(e);
    }
  }

  /** The window went away: stop its subscription. */
  drop(id: IpcClient['id']): void {
    this.subs.get(id)?.();
    this.subs.delete(id);
  }

  dropAll(): void {
    for (const id of Array.from(this.subs.keys())) this.drop(id);
  }
}
