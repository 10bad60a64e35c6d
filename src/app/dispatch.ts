/**
 * The main-process side of the IPC contract, without Electron: validates every request,
 * runs it against the agent or the UI verbs, and answers with a Reply envelope; keeps one agent
 * subscription per window. src/main/ipc.ts feeds it from ipcMain after checking the sender;
 * the UI tests feed it from the page, so both exercise the same code.
 */
import { AgentError, errorShape } from '../api/errors.ts';
import type { AgentEvent, AgentPort, ConsoleAttachment, WireConsoleEvent } from '../api/types.ts';
import {
  agentMethod,
  paramsObject,
  validateConsoleInput,
  validateParams,
  validateSubscribe,
  vmName,
} from '../api/validate.ts';
import { CHANNELS, MAX_LOG_SUBSCRIPTIONS, isAppVerb, isUiVerb, type Reply } from '../api/ipc.ts';
import type { UiHandlers } from './actions.ts';
import type { AppHandlers } from './app-verbs.ts';
import { validateAppParams, validateUiParams } from './validate.ts';

/** One window on the other side of IPC. */
export interface IpcClient {
  /** Stable per window (webContents id). */
  id: number | string;
  send(ev: AgentEvent): void;
  /** The attached console's events (bytes as base64: IPC and the test page both carry JSON). */
  sendConsole?(ev: WireConsoleEvent): void;
}

export function toReplyError(e: unknown): Reply<never> {
  return { ok: false, error: errorShape(e) };
}

export class IpcDispatcher {
  private readonly agent: AgentPort;
  private readonly ui: UiHandlers;
  private readonly subs = new Map<IpcClient['id'], () => void>();
  /** Each window's console attachment (one at a time). */
  private readonly consoles = new Map<IpcClient['id'], ConsoleAttachment>();

  private readonly app: AppHandlers | null;

  /** `app`: the app verbs; without them (a face that is no app) they are refused. */
  constructor(agent: AgentPort, ui: UiHandlers, app: AppHandlers | null = null) {
    this.agent = agent;
    this.ui = ui;
    this.app = app;
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
        case CHANNELS.app: {
          if (!isAppVerb(req.verb) || !this.app)
            throw new AgentError('bad-request', `Invalid request: unknown app action ${JSON.stringify(req.verb)}.`);
          const params = validateAppParams(req.verb, req.params);
          const value = await (this.app[req.verb] as (p: unknown) => Promise<unknown>)(params);
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
        case CHANNELS.consoleAttach: {
          const vm = vmName(paramsObject(arg ?? {}, 'consoleAttach', ['vm']).vm, 'consoleAttach');
          this.consoles.get(client.id)?.detach();
          this.consoles.delete(client.id);
          const send = client.sendConsole?.bind(client);
          if (!send) throw new AgentError('bad-request', 'This window cannot show a console.');
          const att = await this.agent.attachConsole(vm, { input: true }, (ev) =>
            send(ev.kind === 'data' ? { kind: 'data', data: Buffer.from(ev.data).toString('base64') } : ev),
          );
          this.consoles.set(client.id, att);
          return { ok: true, value: { pty: att.pty } };
        }
        case CHANNELS.consoleInput: {
          const { data } = validateConsoleInput(arg ?? {});
          const att = this.consoles.get(client.id);
          if (!att) throw new AgentError('bad-request', 'This window has no console attached.');
          att.write(data);
          return { ok: true, value: null };
        }
        case CHANNELS.consoleDetach: {
          this.consoles.get(client.id)?.detach();
          this.consoles.delete(client.id);
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
    this.consoles.get(id)?.detach();
    this.consoles.delete(id);
  }

  dropAll(): void {
    for (const id of new Set([...this.subs.keys(), ...this.consoles.keys()])) this.drop(id);
  }
}
