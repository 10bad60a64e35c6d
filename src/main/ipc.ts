/**
 * ipcMain wiring: every request is checked for its sender (a top frame of one of our windows,
 * loaded from our renderer directory) before the dispatcher validates and runs it.
 */
import { BrowserWindow, ipcMain, type IpcMainInvokeEvent } from 'electron';
import { AgentError } from '../api/errors.ts';
import { CHANNELS } from '../api/ipc.ts';
import { toReplyError, type IpcDispatcher } from '../app/dispatch.ts';
import { isTrustedSenderUrl } from '../app/validate.ts';

function trusted(event: IpcMainInvokeEvent, rendererBaseUrl: string): boolean {
  const frame = event.senderFrame;
  if (!frame || frame.parent !== null) return false;
  if (!BrowserWindow.fromWebContents(event.sender)) return false;
  return isTrustedSenderUrl(frame.url, rendererBaseUrl);
}

export function registerIpc(dispatcher: IpcDispatcher, rendererBaseUrl: string): () => void {
  const tracked = new Set<number>();
  const channels = [
    CHANNELS.call,
    CHANNELS.ui,
    CHANNELS.app,
    CHANNELS.subscribe,
    CHANNELS.consoleAttach,
    CHANNELS.consoleInput,
    CHANNELS.consoleDetach,
  ];
  for (const channel of channels) {
    ipcMain.handle(channel, async (event, arg: unknown) => {
      if (!trusted(event, rendererBaseUrl)) {
        return toReplyError(new AgentError('bad-request', 'Refused a request from a page that is not part of NixVM.'));
      }
      const wc = event.sender;
      if (!tracked.has(wc.id)) {
        tracked.add(wc.id);
        const id = wc.id;
        wc.once('destroyed', () => {
          tracked.delete(id);
          dispatcher.drop(id);
        });
        // A reload starts a fresh page that subscribes again.
        wc.on('did-start-navigation', (details) => {
          if (details.isMainFrame && !details.isSameDocument) dispatcher.drop(id);
        });
      }
      return dispatcher.handle(channel, arg, {
        id: wc.id,
        send: (ev) => {
          if (!wc.isDestroyed()) wc.send(CHANNELS.event, ev);
        },
        sendConsole: (ev) => {
          if (!wc.isDestroyed()) wc.send(CHANNELS.console, ev);
        },
      });
    });
  }
  return () => {
    for (const c of channels) ipcMain.removeHandler(c);
    dispatcher.dropAll();
  };
}
