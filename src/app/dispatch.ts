/**
 * The main-process side of the IPC contract, without Electron: validates every request,
 * runs it against the agent or the UI verbs, and answers with a Reply envelope; keeps one agent
 * subscription per window. src/main/ipc.ts feeds it from ipcMain after checking the sender;
 * the UI tests feed it from the page, so both exercise the same code.
 */
import { AgentError, errorShape } from '../api/errors.ts';
import type { AgentEvent, AgentPort } from '../api/types.ts';
import { agentMethod, validateParams, validateSubscribe } from '../api/validate.ts';
import { CHANNELS, MAX_LOG_SUBSCRIPTIONS, isUiVerb, type Reply } from '../api/ipc.ts';
import type { UiHandlers } from './actions.ts';
import { validateUiParams } from './validate.ts';

/** One window on the other side of IPC. */
export interface IpcClient {
  /** Stable per window (webContents id). */
  id: number | string;
  send(ev: AgentEvent): void;
}

export function toReplyError(e: unknown): Reply<never> {
  return { ok: false, error: errorShape(e) };
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
          const method = agentMethod(req.method);
          const params = validateParams(method, req.params);
          const value = await (this.agent.call as (m: string, p: unknown) => Promise<unknown>)(method, params);
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
          const opts = validateSubscribe(arg ?? {}, MAX_LOG_SUBSCRIPTIONS);
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
