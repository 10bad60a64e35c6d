/**
 * Argument checks for everything a window sends over IPC. A renderer is untrusted input: each
 * agent method and UI verb has a validator, and the `satisfies` clauses make the compiler refuse
 * a contract entry without one. Pure (no electron) so it is unit-tested directly.
 */
import { AgentError, type AgentMethod, type ParamsOf, type Settings } from '../api/types.ts';
import type { UiParamsOf, UiVerb } from '../api/ipc.ts';

type Validator<T> = (p: unknown) => T;

/** The sender check: only frames loaded from our own renderer directory may talk to us. */
export function isTrustedSenderUrl(url: string | undefined | null, rendererBaseUrl: string): boolean {
  if (!url) return false;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  const base = new URL(rendererBaseUrl.endsWith('/') ? rendererBaseUrl : `${rendererBaseUrl}/`);
  if (u.protocol !== base.protocol) return false;
  // file: URLs have no origin to compare; compare the resolved path instead (rejects `..` tricks
  // because URL normalises them away before we look).
  if (u.protocol === 'file:') return u.pathname.startsWith(base.pathname);
  return u.origin === base.origin && u.pathname.startsWith(base.pathname);
}

function bad(what: string): never {
  throw new AgentError('bad-request', `Invalid request: ${what}.`);
}

function obj(p: unknown, what: string): Record<string, unknown> {
  if (p === undefined || p === null) return {};
  if (typeof p !== 'object' || Array.isArray(p)) bad(`${what} must be an object`);
  return p as Record<string, unknown>;
}

function str(v: unknown, what: string, max = 4096): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) bad(`${what} must be a non-empty string`);
  return v;
}

function onlyKeys(o: Record<string, unknown>, keys: readonly string[], what: string): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) bad(`${what} has an unknown field "${k}"`);
}

const empty: Validator<Record<string, never>> = (p) => {
  const o = obj(p, 'params');
  onlyKeys(o, [], 'params');
  return {};
};

const vmRef: Validator<{ vm: string }> = (p) => {
  const o = obj(p, 'params');
  onlyKeys(o, ['vm'], 'params');
  return { vm: str(o.vm, 'vm', 256) };
};

function logKind(v: unknown): 'console' | 'build' {
  if (v !== 'console' && v !== 'build') bad('kind must be "console" or "build"');
  return v;
}

function stringRecord<T>(v: unknown, what: string, item: (x: unknown, k: string) => T): Record<string, T> {
  const o = obj(v, what);
  const out: Record<string, T> = {};
  for (const [k, x] of Object.entries(o)) out[k] = item(x, `${what}.${k}`);
  return out;
}

function nullableStr(v: unknown, what: string): string | null {
  return v === null ? null : str(v, what);
}

/** Field-by-field check of a settings patch; unknown fields are refused, not dropped. */
export function validateSettingsPatch(p: unknown): Partial<Settings> {
  const o = obj(p, 'settings');
  const out: Partial<Settings> = {};
  for (const [k, v] of Object.entries(o)) {
    switch (k) {
      case 'flakes':
        if (!Array.isArray(v)) bad('flakes must be a list of folders');
        out.flakes = v.map((d, i) => {
          const s = str(d, `flakes[${i}]`);
          if (!s.startsWith('/')) bad(`flake folder "${s}" must be an absolute path`);
          return s;
        });
        break;
      case 'autoRebuild':
        if (v !== 'off' && v !== 'build' && v !== 'restart') bad('autoRebuild must be off, build or restart');
        out.autoRebuild = v;
        break;
      case 'onQuit':
        if (v !== 'keep' && v !== 'stop') bad('onQuit must be keep or stop');
        out.onQuit = v;
        break;
      case 'autostart':
        out.autostart = stringRecord(v, 'autostart', (x, w) => {
          if (typeof x !== 'boolean') bad(`${w} must be true or false`);
          return x;
        });
        break;
      case 'sshUser':
        out.sshUser = stringRecord(v, 'sshUser', (x, w) => {
          const s = str(x, w, 64);
          if (!/^[A-Za-z0-9_.-][A-Za-z0-9_.@-]*$/.test(s)) bad(`${w} "${s}" is not a valid user name`);
          return s;
        });
        break;
      case 'stopTimeoutSec':
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 1 || v > 3600)
          bad('stopTimeoutSec must be between 1 and 3600');
        out.stopTimeoutSec = v;
        break;
      case 'bridgeInterface':
        out.bridgeInterface = nullableStr(v, 'bridgeInterface');
        break;
      case 'nixPath':
        out.nixPath = nullableStr(v, 'nixPath');
        break;
      case 'vfkitPath':
        out.vfkitPath = nullableStr(v, 'vfkitPath');
        break;
      case 'terminalApp':
        out.terminalApp = str(v, 'terminalApp', 256);
        break;
      default:
        bad(`settings has an unknown field "${k}"`);
    }
  }
  return out;
}

export const agentValidators = {
  snapshot: empty,
  start: vmRef,
  stop: vmRef,
  restart: vmRef,
  build: vmRef,
  cancelBuild: vmRef,
  apply: vmRef,
  rebuildStale: empty,
  reevaluate: empty,
  sshCommand: vmRef,
  ips: vmRef,
  logs: (p) => {
    const o = obj(p, 'params');
    onlyKeys(o, ['vm', 'kind', 'lines'], 'params');
    const lines = o.lines;
    if (typeof lines !== 'number' || !Number.isInteger(lines) || lines < 1 || lines > 100_000) {
      bad('lines must be a whole number from 1 to 100000');
    }
    return { vm: str(o.vm, 'vm', 256), kind: logKind(o.kind), lines };
  },
  inspect: vmRef,
  getSettings: empty,
  setSettings: validateSettingsPatch,
} satisfies { [M in AgentMethod]: Validator<ParamsOf<M>> };

export const uiValidators = {
  copySshCommand: vmRef,
  copyIp: (p) => {
    const o = obj(p, 'params');
    onlyKeys(o, ['vm', 'family'], 'params');
    if (o.family !== 'ipv4' && o.family !== 'ipv6') bad('family must be ipv4 or ipv6');
    return { vm: str(o.vm, 'vm', 256), family: o.family };
  },
  copySshInclude: empty,
  openSshInTerminal: vmRef,
  revealStateDir: vmRef,
  openLogWindow: (p) => {
    const o = obj(p, 'params');
    onlyKeys(o, ['vm', 'kind'], 'params');
    return { vm: str(o.vm, 'vm', 256), kind: logKind(o.kind) };
  },
  openInConsoleApp: (p) => {
    const o = obj(p, 'params');
    onlyKeys(o, ['vm', 'kind'], 'params');
    return { vm: str(o.vm, 'vm', 256), kind: logKind(o.kind) };
  },
  openFlakeFolder: (p) => {
    const o = obj(p, 'params');
    onlyKeys(o, ['dir'], 'params');
    return o.dir === undefined ? {} : { dir: str(o.dir, 'dir') };
  },
  chooseFlakeFolder: empty,
  openSettings: empty,
  getLaunchAtLogin: empty,
  setLaunchAtLogin: (p) => {
    const o = obj(p, 'params');
    onlyKeys(o, ['enabled'], 'params');
    if (typeof o.enabled !== 'boolean') bad('enabled must be true or false');
    return { enabled: o.enabled };
  },
  quit: empty,
  fitHeight: (p) => {
    const o = obj(p, 'params');
    onlyKeys(o, ['height'], 'params');
    const height = o.height;
    if (typeof height !== 'number' || !Number.isFinite(height) || height < 0 || height > 10_000)
      bad('height must be a number of pixels');
    return { height: Math.round(height) };
  },
} satisfies { [V in UiVerb]: Validator<UiParamsOf<V>> };

export function validateAgentParams<M extends AgentMethod>(method: M, params: unknown): ParamsOf<M> {
  return (agentValidators[method] as Validator<ParamsOf<M>>)(params);
}

export function validateUiParams<V extends UiVerb>(verb: V, params: unknown): UiParamsOf<V> {
  return (uiValidators[verb] as Validator<UiParamsOf<V>>)(params);
}
