/**
 * The app's IPC contract: channel names, the UI verbs the windows may ask of the main process
 * (clipboard, Terminal, Finder, windows — things the agent does not own), the reply envelope,
 * and the `Bridge` the preload exposes as `window.nixvm`. Shared by src/main, src/preload and
 * src/renderer, so it is plain data and types only.
 */
import type { SetupCommand } from './checklist.ts';
import type { AgentErrorShape } from './errors.ts';
import type {
  AgentEvent,
  AgentMethod,
  LogKind,
  ParamsOf,
  ResultOf,
  SubscribeOptions,
  VmRef,
  WireConsoleEvent,
} from './types.ts';

/** Channel names; one prefix so nothing else on ipcMain can collide with them. */
export const CHANNELS = {
  /** invoke: { method, params } → Reply<agent result> */
  call: 'nixvm:call',
  /** invoke: { verb, params } → Reply<ui result> */
  ui: 'nixvm:ui',
  /** invoke: SubscribeOptions → Reply<null>; which live logs this window wants (replaces the last) */
  subscribe: 'nixvm:subscribe',
  /** main → renderer: AgentEvent */
  event: 'nixvm:event',
  /** invoke: { vm } → Reply<{ pty }>; attach this window to the VM's serial console (one per window) */
  consoleAttach: 'nixvm:console-attach',
  /** invoke: { data: base64 } → Reply<null>; keystrokes for the attached console */
  consoleInput: 'nixvm:console-input',
  /** invoke: {} → Reply<null> */
  consoleDetach: 'nixvm:console-detach',
  /** main → renderer: WireConsoleEvent of the attached console */
  console: 'nixvm:console',
  /** invoke: { verb, params } → Reply<app result>; about the app itself (AppMethods) */
  app: 'nixvm:app',
} as const;

/** Most log streams one window may follow at once. */
export const MAX_LOG_SUBSCRIPTIONS = 16;

export type Empty = Record<string, never>;

/** What a window may ask of the app itself (as opposed to the agent). */
export interface UiMethods {
  /** Writes the VM's ssh command to the clipboard; returns the text written. */
  copySshCommand: { params: VmRef; result: { text: string } };
  /** Writes the `Include …` line for nixvm's ssh config to the clipboard; returns it. */
  copySshInclude: { params: Empty; result: { text: string } };
  /** Writes one of the VM's addresses to the clipboard; returns the text written. */
  copyIp: { params: VmRef & { family: 'ipv6' | 'ipv4' }; result: { text: string } };
  /** Opens the ssh command in the configured terminal app; returns the .command file used. */
  openSshInTerminal: { params: VmRef; result: { file: string } };
  /** Opens `nixvm console <vm>` in the configured terminal app; returns the .command file used. */
  openConsoleInTerminal: { params: VmRef; result: { file: string } };
  revealStateDir: { params: VmRef; result: null };
  /** Opens the log window on a flake's whole evaluation error (one of the configured flakes). */
  openFlakeError: { params: { dir: string }; result: null };
  /** Opens (or focuses) the log window for a VM. */
  openLogWindow: { params: VmRef & { kind: LogKind }; result: null };
  /** Opens the log file in Console.app. */
  openInConsoleApp: { params: VmRef & { kind: LogKind }; result: { path: string } };
  /** Opens a flake folder in Finder (the first configured one when dir is omitted). */
  openFlakeFolder: { params: { dir?: string }; result: null };
  /** Asks for a folder and adds it to settings.flakes; null when the user cancelled. */
  chooseFlakeFolder: { params: Empty; result: { dir: string | null } };
  openSettings: { params: Empty; result: null };
  /** Copies one of the checklist's setup commands (by id: the text is the main process's own). */
  copySetupCommand: { params: { command: SetupCommand }; result: { text: string } };
  /**
   * Makes the VM this machine's Linux builder (`on`), or stops using the builder VM: what nix's
   * configuration needs changed is shown in a dialog first, and changed only on consent.
   */
  useAsBuilder: { params: VmRef & { on: boolean }; result: { done: boolean; changes: string[] } };
  /**
   * No builder yet: runs nixpkgs' prebuilt darwin.linux-builder-vz as the builder (`nixvm builder
   * setup`), after a dialog that says what it downloads and changes.
   */
  setUpLinuxBuilder: { params: Empty; result: { done: boolean; sentence: string } };
  /** Copies the bundled example flake into the user's folder (kept if there) and adds it to settings.flakes. */
  useExampleFlake: { params: Empty; result: { dir: string } };
  getLaunchAtLogin: { params: Empty; result: { enabled: boolean } };
  setLaunchAtLogin: { params: { enabled: boolean }; result: { enabled: boolean } };
  /** Quits the app, honouring settings.onQuit. */
  quit: { params: Empty; result: null };
  /** The dropdown's content wants this many CSS pixels of height (the app clamps it). */
  fitHeight: { params: { height: number }; result: null };
}

export type UiVerb = keyof UiMethods;
export type UiParamsOf<V extends UiVerb> = UiMethods[V]['params'];
export type UiResultOf<V extends UiVerb> = UiMethods[V]['result'];

/** Runtime list of verbs; `satisfies` makes the compiler check it is complete. */
export const UI_VERBS = {
  copySshCommand: true,
  copyIp: true,
  copySshInclude: true,
  openSshInTerminal: true,
  openConsoleInTerminal: true,
  revealStateDir: true,
  openLogWindow: true,
  openFlakeError: true,
  openInConsoleApp: true,
  openFlakeFolder: true,
  chooseFlakeFolder: true,
  openSettings: true,
  copySetupCommand: true,
  useExampleFlake: true,
  useAsBuilder: true,
  setUpLinuxBuilder: true,
  getLaunchAtLogin: true,
  setLaunchAtLogin: true,
  quit: true,
  fitHeight: true,
} as const satisfies Record<UiVerb, true>;

export function isUiVerb(v: unknown): v is UiVerb {
  return typeof v === 'string' && Object.hasOwn(UI_VERBS, v);
}

/** Where the `nixvm` command stands: on PATH (linked to this app), installable (where), or not offered. */
export type CliToolStatus =
  | { state: 'installed'; link: string }
  | { state: 'not-installed'; link: string; admin: boolean }
  | { state: 'unavailable'; reason: string };

export interface AppInfo {
  /** A packaged NixVM.app (not Electron run from a checkout). */
  packaged: boolean;
  /** Signed with a Developer ID: without it, recent macOS shows no notifications (the tray title does). */
  signed: boolean;
  platform: string;
  cliTool: CliToolStatus;
}

/** What a window may ask about the app itself: how it was built, its command-line tool. */
export interface AppMethods {
  appInfo: { params: Empty; result: AppInfo };
  /** Asks for consent (and, if the directory needs it, an administrator), then links `nixvm` on PATH. */
  installCliTool: { params: Empty; result: { status: CliToolStatus; cancelled: boolean } };
}

export type AppVerb = keyof AppMethods;
export type AppParamsOf<V extends AppVerb> = AppMethods[V]['params'];
export type AppResultOf<V extends AppVerb> = AppMethods[V]['result'];

export const APP_VERBS = { appInfo: true, installCliTool: true } as const satisfies Record<AppVerb, true>;

export function isAppVerb(v: unknown): v is AppVerb {
  return typeof v === 'string' && Object.hasOwn(APP_VERBS, v);
}

/**
 * Every reply crosses IPC as an envelope: Electron's contextBridge copies thrown errors
 * without their custom properties, and the renderer needs the error code.
 */
export type Reply<T> = { ok: true; value: T } | { ok: false; error: AgentErrorShape };

/** One thing a click can do: an agent command or a UI verb (the native menu's items carry these). */
export type Action =
  | { [M in AgentMethod]: { kind: 'agent'; method: M; params: ParamsOf<M> } }[AgentMethod]
  | { [V in UiVerb]: { kind: 'ui'; verb: V; params: UiParamsOf<V> } }[UiVerb];

/**
 * What the preload exposes as `window.nixvm`: the typed contract and nothing else.
 * Replies are envelopes (see Reply); src/renderer/bridge.ts turns them back into throws.
 */
export interface Bridge {
  call<M extends AgentMethod>(method: M, params: ParamsOf<M>): Promise<Reply<ResultOf<M>>>;
  ui<V extends UiVerb>(verb: V, params: UiParamsOf<V>): Promise<Reply<UiResultOf<V>>>;
  app<V extends AppVerb>(verb: V, params: AppParamsOf<V>): Promise<Reply<AppResultOf<V>>>;
  /**
   * Agent events: snapshots and notices always, 'log' events for the logs named in opts.
   * Returns an unsubscribe function.
   */
  onEvent(fn: (ev: AgentEvent) => void, opts?: SubscribeOptions): () => void;
  /** This window's attachment to one VM's serial console (attaching again replaces it). */
  consoleAttach(vm: string, fn: (ev: WireConsoleEvent) => void): Promise<Reply<{ pty: string }>>;
  consoleInput(data: string): Promise<Reply<null>>;
  consoleDetach(): Promise<Reply<null>>;
}

export const BRIDGE_GLOBAL = 'nixvm';
