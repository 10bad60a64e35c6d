/**
 * What the app's own verbs do (copy, Terminal, Finder, windows, quit), written against the
 * AgentPort and a small `UiHost` so the logic runs and is tested without Electron: src/main wires
 * the host to clipboard/shell/dialog, the UI tests wire it to recorders.
 */
import { cpSync, existsSync } from 'node:fs';
import { SETUP_COMMANDS } from '../api/checklist.ts';
import path from 'node:path';
import type { AgentPort, LogKind, RegistrationPlan, VmSnapshot } from '../api/types.ts';
import { AgentError } from '../api/errors.ts';
import type { Action, UiParamsOf, UiResultOf, UiVerb } from '../api/ipc.ts';
import { checkRoute, checkSshDestination, sshArgv, sshCommandLine, sshTargetFor } from '../core/net/ssh.ts';
import { shellLine } from '../host/shell.ts';

/** The side effects the UI verbs need; everything else is computed here. */
export interface UiHost {
  writeClipboard(text: string): void;
  /** Write `body` to `file` (executable) and open it with the terminal app. */
  openTerminal(file: string, body: string, terminalApp: string): Promise<void>;
  /** The argv that runs the nixvm CLI from a terminal (the checkout's in development, else the launcher NixVM.app carries). */
  nixvmCommand(): string[];
  openFolder(dir: string): Promise<void>;
  revealPath(p: string): void;
  openLogWindow(vm: string, kind: LogKind): void;
  /** The log window on a flake's evaluation error. */
  openFlakeErrorWindow(dir: string): void;
  openConsoleApp(file: string): Promise<void>;
  chooseFolder(): Promise<string | null>;
  openSettings(): void;
  getLaunchAtLogin(): Promise<boolean>;
  /** Returns the state afterwards. */
  setLaunchAtLogin(enabled: boolean): Promise<boolean>;
  quit(): void;
  /** Resize the dropdown to fit its content (clamped by the host). */
  fitDropdown(height: number): void;
  /** The example flake the app carries, and the folder of the user's it goes to; null when there is none. */
  exampleFlake(): { source: string; dest: string } | null;
  /** Ask before a change the user must consent to (a dialog); true to go ahead. */
  confirm(consent: { message: string; detail: string; button: string }): Promise<boolean>;
}

/** The dialog text for a builder plan that needs consent: what changes, the file as it will be. */
export function builderConsent(
  plan: RegistrationPlan,
  on: boolean,
  vm: string,
): { message: string; detail: string; button: string } {
  const detail = [
    ...plan.changes.map((c) => `• ${c}`),
    ...(plan.system ? ['', `${plan.system.file} will read:`, plan.system.contents.trimEnd()] : []),
  ].join('\n');
  return on
    ? { message: `Make ${JSON.stringify(vm)} this Mac's Linux builder?`, detail, button: 'Change nix.conf…' }
    : { message: "Stop using the builder VM and undo nixvm's change?", detail, button: 'Undo the Change…' };
}

/** The dialog before "Set Up a Linux Builder": the download, then what nix is told. */
export function setupConsent(
  sentence: string,
  plan: RegistrationPlan,
): { message: string; detail: string; button: string } {
  const reg = builderConsent(plan, true, 'linux-builder');
  return {
    message: "Set up nixpkgs' prebuilt Linux builder?",
    detail: [sentence, '', 'Then, to make it the builder:', reg.detail].join('\n'),
    button: plan.system ? 'Download and Change nix.conf…' : 'Download and Start',
  };
}

/**
 * The body of the `.command` file Terminal runs for "Open ssh in Terminal". Terminal opens
 * `.command` files without Apple Events permission; `exec` makes the window end with ssh.
 */
export function commandFileBody(argv: readonly string[], what = 'Open ssh in Terminal'): string {
  if (argv.length === 0) throw new Error('commandFileBody needs a command');
  return ['#!/bin/sh', `# Written by NixVM for "${what}"; rewritten on every use.`, `exec ${shellLine(argv)}`, ''].join(
    '\n',
  );
}

/** Where that file lives: inside the VM's state folder, so it goes away with the VM. */
export function commandFilePath(vm: Pick<VmSnapshot, 'stateDir'>, name: 'ssh' | 'console' = 'ssh'): string {
  return path.join(vm.stateDir, `${name}.command`);
}

/** `nixvm console <vm>`; `--` first, so that no VM name is read as an option. */
export function consoleArgv(nixvm: readonly string[], vm: string): string[] {
  return [...nixvm, 'console', '--', vm];
}

/** `open -a <app> <file>`: the app name as the user set it, Terminal by default. */
export function terminalOpenArgv(terminalApp: string, file: string): string[] {
  const app = terminalApp.trim() || 'Terminal';
  return ['open', '-a', app, file];
}

export function consoleAppArgv(file: string): string[] {
  return ['open', '-a', 'Console', file];
}

/**
 * Why `dir` must not be handed to shell.openPath, or null. openPath *opens*: on a folder that is
 * an application bundle (`Foo.app`, or anything holding Contents/Info.plist) that means running
 * the app, not showing a folder.
 */
export function notAPlainFolder(dir: string, exists: (p: string) => boolean = existsSync): string | null {
  const clean = dir.replace(/\/+$/, '');
  if (/\.app$/i.test(clean) || exists(path.join(clean, 'Contents', 'Info.plist'))) {
    return `${dir} is an application bundle, which opening would run; NixVM only opens plain folders (show it in Finder instead).`;
  }
  return null;
}

/** The text "Copy IP" puts on the clipboard, or a sentence saying why there is none. */
export function ipClipboardText(vm: Pick<VmSnapshot, 'name' | 'ipv4' | 'ipv6'>, family: 'ipv4' | 'ipv6'): string {
  if (family === 'ipv4') {
    if (vm.ipv4) return vm.ipv4;
    throw new AgentError(
      'not-running',
      `${JSON.stringify(vm.name)} has no IPv4 address yet (no DHCP lease): wait until it has booted, or copy its IPv6 address.`,
    );
  }
  if (vm.ipv6) return vm.ipv6;
  throw new AgentError('not-running', `${JSON.stringify(vm.name)} has no IPv6 address yet: start it first.`);
}

/**
 * The ssh argv for a VM, rebuilt from the destination the agent named (checked) with the app's own
 * program and options: an answer on the socket is data, never a command to run in Terminal.
 */
async function sshArgvOf(agent: AgentPort, vm: string, nixvm: readonly string[]): Promise<string[]> {
  const { target, route } = await agent.call('sshCommand', { vm });
  try {
    const d = checkSshDestination(vm, target);
    return sshArgv(sshTargetFor(d, { nixvm, program: 'ssh', route: checkRoute(d, route) }));
  } catch (err) {
    throw new AgentError('failed', err instanceof Error ? err.message : String(err));
  }
}

async function findVm(agent: AgentPort, name: string): Promise<VmSnapshot> {
  const snap = await agent.call('snapshot', {});
  const vm = snap.vms.find((v) => v.name === name);
  if (!vm)
    throw new AgentError(
      'no-such-vm',
      `There is no VM named ${JSON.stringify(name)}; check the flake's nixosConfigurations.`,
    );
  return vm;
}

export type UiHandlers = { [V in UiVerb]: (params: UiParamsOf<V>) => Promise<UiResultOf<V>> };

export function createUiHandlers(agent: AgentPort, host: UiHost): UiHandlers {
  return {
    async copySshCommand({ vm }) {
      const command = sshCommandLine(await sshArgvOf(agent, vm, host.nixvmCommand()));
      host.writeClipboard(command);
      return { text: command };
    },
    async copyIp({ vm, family }) {
      const ips = await agent.call('ips', { vm });
      const text = ipClipboardText({ name: vm, ...ips }, family);
      host.writeClipboard(text);
      return { text };
    },
    async copySshInclude() {
      const { includeLine } = (await agent.call('snapshot', {})).agent.sshConfig;
      host.writeClipboard(includeLine);
      return { text: includeLine };
    },
    async openSshInTerminal({ vm }) {
      const [argv, snap] = await Promise.all([sshArgvOf(agent, vm, host.nixvmCommand()), agent.call('snapshot', {})]);
      const v = snap.vms.find((x) => x.name === vm);
      if (!v) throw new AgentError('no-such-vm', `There is no VM named ${JSON.stringify(vm)}.`);
      const file = commandFilePath(v);
      await host.openTerminal(file, commandFileBody(argv), snap.settings.terminalApp);
      return { file };
    },
    async openConsoleInTerminal({ vm }) {
      const v = await findVm(agent, vm);
      const file = commandFilePath(v, 'console');
      const snap = await agent.call('snapshot', {});
      await host.openTerminal(
        file,
        commandFileBody(consoleArgv(host.nixvmCommand(), vm), 'Open Serial Console in Terminal'),
        snap.settings.terminalApp,
      );
      return { file };
    },
    async revealStateDir({ vm }) {
      host.revealPath((await findVm(agent, vm)).stateDir);
      return null;
    },
    async openFlakeError({ dir }) {
      // Only a flake the agent runs, and only while it has an error: the page asks for nothing else.
      const f = (await agent.call('snapshot', {})).flakes.find((x) => x.dir === dir);
      if (!f) throw new AgentError('failed', `No flake at ${dir} is configured; nothing to show.`);
      if (!f.error) throw new AgentError('failed', `The flake at ${dir} evaluates now; there is no error to show.`);
      host.openFlakeErrorWindow(dir);
      return null;
    },
    async openLogWindow({ vm, kind }) {
      await findVm(agent, vm);
      host.openLogWindow(vm, kind);
      return null;
    },
    async openInConsoleApp({ vm, kind }) {
      const { path: file } = await agent.call('logs', { vm, kind, lines: 1 });
      if (!file) {
        throw new AgentError(
          'failed',
          kind === 'build'
            ? `${JSON.stringify(vm)} has no build log yet: build it first.`
            : `${JSON.stringify(vm)} has no console log yet: start it first.`,
        );
      }
      await host.openConsoleApp(file);
      return { path: file };
    },
    async openFlakeFolder({ dir }) {
      const snap = await agent.call('snapshot', {});
      // shell.openPath would run an app or a .command file: open only folders the agent runs.
      if (dir !== undefined && !snap.flakes.some((f) => f.dir === dir) && !snap.vms.some((v) => v.flake === dir)) {
        throw new AgentError(
          'bad-request',
          `${dir} is not one of NixVM's flake folders; only those can be opened from here.`,
        );
      }
      // The first flake the agent runs (a headless daemon's --flake counts, not only settings').
      const target = dir ?? snap.flakes[0]?.dir;
      if (!target) throw new AgentError('failed', 'No flake folder is configured: choose one in Settings.');
      const bundle = notAPlainFolder(target);
      if (bundle) throw new AgentError('bad-request', bundle);
      await host.openFolder(target);
      return null;
    },
    async chooseFlakeFolder() {
      const dir = await host.chooseFolder();
      if (dir) {
        if (!existsSync(path.join(dir, 'flake.nix'))) {
          throw new AgentError(
            'failed',
            `${dir} has no flake.nix: choose the folder that holds your flake (the one defining nixosConfigurations).`,
          );
        }
        const { flakes } = await agent.call('getSettings', {});
        if (!flakes.includes(dir)) await agent.call('setSettings', { flakes: [...flakes, dir] });
      }
      return { dir };
    },
    async openSettings() {
      host.openSettings();
      return null;
    },
    async copySetupCommand({ command }) {
      const text = SETUP_COMMANDS[command];
      host.writeClipboard(text);
      return { text };
    },
    async useAsBuilder({ vm, on }) {
      const ask = () => (on ? agent.call('builderUse', { vm }) : agent.call('builderOff', {}));
      const first = await ask();
      if (first.done) return { done: true, changes: first.plan.changes };
      if (!(await host.confirm(builderConsent(first.plan, on, vm))))
        return { done: false, changes: first.plan.changes };
      const r = on
        ? await agent.call('builderUse', { vm, consent: true })
        : await agent.call('builderOff', { consent: true });
      return { done: r.done, changes: r.plan.changes };
    },
    async setUpLinuxBuilder() {
      const first = await agent.call('builderSetup', {});
      if (!(await host.confirm(setupConsent(first.sentence, first.plan))))
        return { done: false, sentence: first.sentence };
      const r = await agent.call('builderSetup', { consent: true });
      return { done: r.done, sentence: r.sentence };
    },
    async useExampleFlake() {
      const ex = host.exampleFlake();
      if (!ex || !existsSync(path.join(ex.source, 'flake.nix'))) {
        throw new AgentError(
          'failed',
          'This NixVM carries no example flake; choose a folder with your own flake.nix instead.',
        );
      }
      // A copy of the user's own (the bundle is read-only, and its `$PWD/persistent` share must be writable); an earlier copy is kept.
      if (!existsSync(path.join(ex.dest, 'flake.nix'))) {
        try {
          cpSync(ex.source, ex.dest, { recursive: true, errorOnExist: false, force: false });
        } catch (err) {
          throw new AgentError(
            'failed',
            `Could not copy the example flake to ${ex.dest} (${err instanceof Error ? err.message : String(err)}); choose a folder of your own instead.`,
          );
        }
      }
      const { flakes } = await agent.call('getSettings', {});
      if (!flakes.includes(ex.dest)) await agent.call('setSettings', { flakes: [...flakes, ex.dest] });
      return { dir: ex.dest };
    },
    async getLaunchAtLogin() {
      return { enabled: await host.getLaunchAtLogin() };
    },
    async setLaunchAtLogin({ enabled }) {
      return { enabled: await host.setLaunchAtLogin(enabled) };
    },
    async quit() {
      host.quit();
      return null;
    },
    async fitHeight({ height }) {
      host.fitDropdown(height);
      return null;
    },
  };
}

/** Runs one Action (a native menu click) against the agent or the UI verbs. */
export async function runAction(action: Action, agent: AgentPort, ui: UiHandlers): Promise<unknown> {
  if (action.kind === 'agent') {
    return (agent.call as (m: string, p: unknown) => Promise<unknown>)(action.method, action.params);
  }
  return (ui[action.verb] as (p: unknown) => Promise<unknown>)(action.params);
}

/**
 * The on-quit policy: with `stop`, every VM that is up is stopped (in parallel, each with the
 * agent's own escalation) before the app exits; with `keep` they keep running. Returns the VMs
 * it stopped and the ones that failed to stop, so the caller can say so.
 */
export async function stopForQuit(
  agent: AgentPort,
): Promise<{ stopped: string[]; failed: { vm: string; error: string }[] }> {
  const snap = await agent.call('snapshot', {});
  if (snap.settings.onQuit !== 'stop') return { stopped: [], failed: [] };
  const up = snap.vms.filter((v) => v.state === 'running' || v.state === 'starting' || v.state === 'stopping');
  const results = await Promise.allSettled(up.map((v) => agent.call('stop', { vm: v.name })));
  const stopped: string[] = [];
  const failed: { vm: string; error: string }[] = [];
  results.forEach((r, i) => {
    const vm = up[i]!.name;
    if (r.status === 'fulfilled') stopped.push(vm);
    else failed.push({ vm, error: r.reason instanceof Error ? r.reason.message : String(r.reason) });
  });
  return { stopped, failed };
}
