/**
 * One runtime validator per agent method, used by every path a request can take into the agent:
 * the control socket, the app's IPC and the agent's own `call`. Each turns untrusted params into
 * the typed ones or throws AgentError('bad-request', one sentence). The `satisfies` clause makes
 * the compiler refuse a method without a validator. Plain code: the renderer may load it.
 */
import { AgentError } from './errors.ts';
import { validateSettingsPatch } from './settings-schema.ts';
import {
  AGENT_METHODS,
  isAgentMethod,
  type AgentMethod,
  type LogKind,
  type ParamsOf,
  type SubscribeOptions,
} from './types.ts';

export type Validator<T> = (p: unknown) => T;

/** Longest VM name a request may carry (names come from Nix attribute names). */
export const MAX_VM_NAME_BYTES = 256;
/** Most lines one `logs` request may ask for. */
export const MAX_LOG_LINES = 100_000;
/** The most bytes of lines one `logs` answer carries (the newest lines that fit). */
export const MAX_LOG_REPLY_BYTES = 8 * 1024 * 1024;
/** A console or build log line longer than this (UTF-8 bytes) is cut, in answers and live alike. */
export const MAX_LOG_LINE_BYTES = 16 * 1024;
/** Logs followed for all subscribers together (each log a file follower in the agent). */
export const MAX_AGENT_LOG_FILTERS = 1024;

export function bad(message: string): never {
  throw new AgentError('bad-request', message);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** The params object of `what` (absent = empty); refuses fields it does not know. */
export function paramsObject(p: unknown, what: string, keys: readonly string[]): Record<string, unknown> {
  if (p === undefined || p === null) return {};
  if (!isPlainObject(p)) bad(`The params of ${what} must be a JSON object.`);
  for (const k of Object.keys(p)) {
    if (!keys.includes(k)) bad(`${what} has no parameter ${JSON.stringify(k.slice(0, 100))}.`);
  }
  return p;
}

export function vmName(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '' || new TextEncoder().encode(v).length > MAX_VM_NAME_BYTES) {
    bad(`${what} needs a "vm" parameter naming the VM.`);
  }
  return v;
}

export function logKind(v: unknown, what: string): LogKind {
  if (v !== 'console' && v !== 'build') bad(`${what}: "kind" must be "console" or "build".`);
  return v;
}

function consentParam(v: unknown, what: string): { consent?: boolean } {
  if (v === undefined) return {};
  if (typeof v !== 'boolean') bad(`${what}: "consent" must be true or false.`);
  return { consent: v };
}

/** The validator of a request that takes no params. */
export const empty =
  (what: string): Validator<Record<string, never>> =>
  (p) => {
    paramsObject(p, what, []);
    return {};
  };

/** The validator of a request whose only param names a VM. */
export const vmRef =
  (what: string): Validator<{ vm: string }> =>
  (p) => ({ vm: vmName(paramsObject(p, what, ['vm']).vm, what) });

export const AGENT_VALIDATORS = {
  snapshot: empty('snapshot'),
  start: vmRef('start'),
  stop: vmRef('stop'),
  restart: vmRef('restart'),
  build: vmRef('build'),
  cancelBuild: vmRef('cancelBuild'),
  apply: vmRef('apply'),
  rebuildStale: empty('rebuildStale'),
  reevaluate: empty('reevaluate'),
  sshCommand: vmRef('sshCommand'),
  ips: vmRef('ips'),
  logs: (p) => {
    const o = paramsObject(p, 'logs', ['vm', 'kind', 'lines']);
    const vm = vmName(o.vm, 'logs');
    const kind = logKind(o.kind, 'logs');
    const lines = o.lines;
    if (typeof lines !== 'number' || !Number.isInteger(lines) || lines < 0 || lines > MAX_LOG_LINES) {
      bad(`logs: "lines" must be a whole number of lines from 0 to ${MAX_LOG_LINES}.`);
    }
    return { vm, kind, lines };
  },
  inspect: vmRef('inspect'),
  getSettings: empty('getSettings'),
  setSettings: (p) => validateSettingsPatch(p ?? {}),
  disks: empty('disks'),
  diskReset: vmRef('diskReset'),
  diskGrow: vmRef('diskGrow'),
  doctor: empty('doctor'),
  builders: empty('builders'),
  builderUse: (p) => {
    const o = paramsObject(p, 'builderUse', ['vm', 'consent']);
    return { vm: vmName(o.vm, 'builderUse'), ...consentParam(o.consent, 'builderUse') };
  },
  builderOff: (p) => consentParam(paramsObject(p, 'builderOff', ['consent']).consent, 'builderOff'),
  builderSetup: (p) => {
    const o = paramsObject(p, 'builderSetup', ['nixpkgs', 'consent']);
    if (o.nixpkgs !== undefined && (typeof o.nixpkgs !== 'string' || o.nixpkgs.length > 512))
      bad('builderSetup: "nixpkgs" must be a flake reference of at most 512 characters.');
    return {
      ...(o.nixpkgs !== undefined ? { nixpkgs: o.nixpkgs as string } : {}),
      ...consentParam(o.consent, 'builderSetup'),
    };
  },
} satisfies { [M in AgentMethod]: Validator<ParamsOf<M>> };

/** Methods whose params name one VM. */
export const VM_METHODS: ReadonlySet<AgentMethod> = new Set<AgentMethod>([
  'start',
  'stop',
  'restart',
  'build',
  'cancelBuild',
  'apply',
  'sshCommand',
  'ips',
  'logs',
  'inspect',
  'diskReset',
  'diskGrow',
  'builderUse',
]);

/** The method name, checked. */
export function agentMethod(m: unknown): AgentMethod {
  if (typeof m !== 'string') bad('The request has no "method" string.');
  if (!isAgentMethod(m)) {
    bad(
      `Unknown method ${JSON.stringify(m.slice(0, 100))}; known methods are ${Object.keys(AGENT_METHODS).join(', ')}.`,
    );
  }
  return m;
}

export function validateParams<M extends AgentMethod>(method: M, params: unknown): ParamsOf<M> {
  return (AGENT_VALIDATORS[method] as Validator<ParamsOf<M>>)(params);
}

/** Subscribe options: which live logs to follow, at most `maxLogs` of them. */
export function validateSubscribe(p: unknown, maxLogs: number): SubscribeOptions {
  const o = paramsObject(p, 'subscribe', ['logs', 'usage']);
  if (o.usage !== undefined && typeof o.usage !== 'boolean') bad('subscribe: "usage" must be true or false.');
  const usage = o.usage === true ? { usage: true } : {};
  if (o.logs === undefined) return usage;
  if (!Array.isArray(o.logs)) bad('subscribe: "logs" must be a list of {"vm","kind"} objects.');
  if (o.logs.length > maxLogs) bad(`subscribe: "logs" may name at most ${maxLogs} logs.`);
  return {
    logs: o.logs.map((f: unknown) => {
      const entry = paramsObject(f, 'subscribe', ['vm', 'kind']);
      return { vm: vmName(entry.vm, 'subscribe'), kind: logKind(entry.kind, 'subscribe') };
    }),
    ...usage,
  };
}

/** Largest console input one message may carry (decoded). */
export const MAX_CONSOLE_INPUT_BYTES = 64 * 1024;

/** `consoleAttach`'s params on the control socket. */
export function validateConsoleAttach(p: unknown): { vm: string; input: boolean } {
  const o = paramsObject(p, 'consoleAttach', ['vm', 'input']);
  const vm = vmName(o.vm, 'consoleAttach');
  if (o.input !== undefined && typeof o.input !== 'boolean') bad('consoleAttach: "input" must be true or false.');
  return { vm, input: o.input === true };
}

/** `consoleInput`'s params: base64 bytes, at most MAX_CONSOLE_INPUT_BYTES of them. */
export function validateConsoleInput(p: unknown): { data: Uint8Array } {
  const o = paramsObject(p, 'consoleInput', ['data']);
  const d = o.data;
  if (
    typeof d !== 'string' ||
    d.length === 0 ||
    d.length > Math.ceil(MAX_CONSOLE_INPUT_BYTES / 3) * 4 ||
    !/^[A-Za-z0-9+/]*={0,2}$/.test(d)
  )
    bad(`consoleInput needs "data": base64 of 1 to ${MAX_CONSOLE_INPUT_BYTES} bytes.`);
  // atob: the renderer loads this module too, and has no Buffer.
  return { data: Uint8Array.from(atob(d), (c) => c.charCodeAt(0)) };
}
