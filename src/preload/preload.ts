/**
 * The sandboxed preload: exposes `window.nixvm` (the typed contract in src/api/ipc.ts) and
 * nothing else. ipcRenderer itself never reaches the page. Bundled as CommonJS (sandboxed
 * preloads cannot load ES modules).
 */
import { contextBridge, ipcRenderer } from 'electron';
import { BRIDGE_GLOBAL, CHANNELS } from '../api/ipc.ts';
import type { AgentEvent, WireConsoleEvent } from '../api/types.ts';
import { createBridge } from '../app/bridge-core.ts';

const bridge = createBridge({
  invoke: (channel, arg) => ipcRenderer.invoke(channel, arg),
  listen(fn) {
    ipcRenderer.on(CHANNELS.event, (_e, ev: AgentEvent) => fn(ev));
  },
  listenConsole(fn) {
    ipcRenderer.on(CHANNELS.console, (_e, ev: WireConsoleEvent) => fn(ev));
  },
});

// Functions only: contextBridge copies them as proxies; the page cannot reach ipcRenderer.
contextBridge.exposeInMainWorld(BRIDGE_GLOBAL, {
  call: bridge.call,
  ui: bridge.ui,
  app: bridge.app,
  onEvent: bridge.onEvent,
  consoleAttach: bridge.consoleAttach,
  consoleInput: bridge.consoleInput,
  consoleDetach: bridge.consoleDetach,
});
