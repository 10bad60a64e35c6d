/**
 * Argument checks for the UI verbs a window sends over IPC (agent methods are checked by the one
 * validator per method in src/api/validate.ts), and the sender check. A renderer is untrusted
 * input; the `satisfies` clause makes the compiler refuse a verb without a validator.
 */
import { SETUP_COMMANDS, type SetupCommand } from '../api/checklist.ts';
import type { AppParamsOf, AppVerb, UiParamsOf, UiVerb } from '../api/ipc.ts';
import { bad, empty, logKind, paramsObject, vmName, vmRef, type Validator } from '../api/validate.ts';

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
  if (u.username !== '' || u.password !== '') return false;
  // file: URLs have no origin to compare: compare the host (file://server/… is a network share,
  // not our bundle) and the resolved path (URL normalises `..` away before we look).
  if (u.protocol === 'file:') return u.host === base.host && u.pathname.startsWith(base.pathname);
  return u.origin === base.origin && u.pathname.startsWith(base.pathname);
}

export const uiValidators = {
  copySshCommand: vmRef('copySshCommand'),
  copyIp: (p) => {
    const o = paramsObject(p, 'copyIp', ['vm', 'family']);
    if (o.family !== 'ipv4' && o.family !== 'ipv6') bad('copyIp: "family" must be "ipv4" or "ipv6".');
    return { vm: vmName(o.vm, 'copyIp'), family: o.family };
  },
  copySshInclude: empty('copySshInclude'),
  copySetupCommand: (p) => {
    const o = paramsObject(p, 'copySetupCommand', ['command']);
    if (typeof o.command !== 'string' || !Object.hasOwn(SETUP_COMMANDS, o.command))
      bad(`copySetupCommand: "command" must be one of ${Object.keys(SETUP_COMMANDS).join(', ')}.`);
    return { command: o.command as SetupCommand };
  },
  useExampleFlake: empty('useExampleFlake'),
  setUpLinuxBuilder: empty('setUpLinuxBuilder'),
  useAsBuilder: (p) => {
    const o = paramsObject(p, 'useAsBuilder', ['vm', 'on']);
    if (typeof o.on !== 'boolean') bad('useAsBuilder: "on" must be true or false.');
    return { vm: vmName(o.vm, 'useAsBuilder'), on: o.on };
  },
  openSshInTerminal: vmRef('openSshInTerminal'),
  openConsoleInTerminal: vmRef('openConsoleInTerminal'),
  revealStateDir: vmRef('revealStateDir'),
  openFlakeError: (p) => {
    const o = paramsObject(p, 'openFlakeError', ['dir']);
    if (typeof o.dir !== 'string' || !o.dir.startsWith('/') || o.dir.length > 4096 || /[\u0000-\u001f]/.test(o.dir))
      bad('openFlakeError: "dir" must be the absolute path of a flake folder.');
    return { dir: o.dir };
  },
  openLogWindow: (p) => {
    const o = paramsObject(p, 'openLogWindow', ['vm', 'kind']);
    return { vm: vmName(o.vm, 'openLogWindow'), kind: logKind(o.kind, 'openLogWindow') };
  },
  openInConsoleApp: (p) => {
    const o = paramsObject(p, 'openInConsoleApp', ['vm', 'kind']);
    return { vm: vmName(o.vm, 'openInConsoleApp'), kind: logKind(o.kind, 'openInConsoleApp') };
  },
  openFlakeFolder: (p) => {
    const o = paramsObject(p, 'openFlakeFolder', ['dir']);
    if (o.dir === undefined) return {};
    if (typeof o.dir !== 'string' || o.dir === '' || o.dir.length > 4096)
      bad('openFlakeFolder: "dir" must be a folder path.');
    return { dir: o.dir };
  },
  chooseFlakeFolder: empty('chooseFlakeFolder'),
  openSettings: empty('openSettings'),
  getLaunchAtLogin: empty('getLaunchAtLogin'),
  setLaunchAtLogin: (p) => {
    const o = paramsObject(p, 'setLaunchAtLogin', ['enabled']);
    if (typeof o.enabled !== 'boolean') bad('setLaunchAtLogin: "enabled" must be true or false.');
    return { enabled: o.enabled };
  },
  quit: empty('quit'),
  fitHeight: (p) => {
    const o = paramsObject(p, 'fitHeight', ['height']);
    const height = o.height;
    if (typeof height !== 'number' || !Number.isFinite(height) || height < 0 || height > 10_000)
      bad('fitHeight: "height" must be a number of pixels.');
    return { height: Math.round(height) };
  },
} satisfies { [V in UiVerb]: Validator<UiParamsOf<V>> };

export function validateUiParams<V extends UiVerb>(verb: V, params: unknown): UiParamsOf<V> {
  return (uiValidators[verb] as Validator<UiParamsOf<V>>)(params);
}

export const appValidators = {
  appInfo: empty('appInfo'),
  installCliTool: empty('installCliTool'),
} satisfies { [V in AppVerb]: Validator<AppParamsOf<V>> };

export function validateAppParams<V extends AppVerb>(verb: V, params: unknown): AppParamsOf<V> {
  return (appValidators[verb] as Validator<AppParamsOf<V>>)(params);
}
