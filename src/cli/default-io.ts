/**
 * The real world behind CliIo: this process's streams and environment, the control socket
 * client, ssh on our terminal, the daemon and launchd. Heavy or optional modules load on first
 * use, so `nixvm ls` never loads the agent and tests that inject their own port load none of it.
 */
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import readline from 'node:readline';
import { loginProgram, selfCommand } from '../host/app-bundle.ts';
import { devStateDir, resolvePaths } from '../host/paths.ts';
import {
  execInteractive,
  onLaterInterrupt,
  outputOf,
  type Answer,
  type CliInput,
  type CliIo,
  type CliPort,
  type LoginItemApi,
  type SettingsFile,
} from './io.ts';

const PASSED_ENV = ['NIXVM_STATE_DIR', 'NIXVM_NIX', 'NIXVM_VFKIT', 'NIXVM_LEASES_FILE'] as const;

const neverAborted = new AbortController().signal;

export function defaultIo(): CliIo {
  return {
    stdout: outputOf(process.stdout),
    stderr: outputOf(process.stderr),
    stdin: inputOf(process.stdin),
    env: process.env,
    cwd: process.cwd(),
    now: () => Date.now(),
    connect: async (socketPath: string): Promise<CliPort> => {
      const { connectControl } = await import('../control/client.ts');
      return connectControl(socketPath);
    },
    defaultSocketPath: async (env) => {
      const { defaultControlSocketPath } = await import('../control/client.ts');
      return defaultControlSocketPath(env);
    },
    exec: execInteractive,
    signal: neverAborted,
    runDaemon: async (opts) => {
      const { runDaemon } = await import('./daemon.ts');
      return runDaemon(opts);
    },
    loginItem: async (): Promise<LoginItemApi> => {
      const launchd = await import('../host/launchd.ts');
      // The agent launchd starts must use the same state dir, nix and vfkit as this shell does.
      const environment: Record<string, string> = {};
      for (const k of PASSED_ENV) {
        const v = process.env[k];
        if (v) environment[k] = v;
      }
      return {
        install: () => {
          // The app this CLI came with, or an installed one: never this checkout's node and sources.
          const program = loginProgram({ entry: process.argv[1] ?? 'nixvm', home: os.homedir() });
          if (program.refused !== undefined) return Promise.reject(new Error(program.refused));
          return launchd.installLoginItem({ programArguments: program.programArguments, environment });
        },
        remove: () => launchd.removeLoginItem(),
        status: () => launchd.loginItemStatus(),
      };
    },
    devSocketPath: async () => {
      const { controlSocketPath } = await import('../host/socket-path.ts');
      const dir = devStateDir();
      // Only a dir this user made for itself: another user's /tmp entry must not point us anywhere.
      try {
        const st = fs.lstatSync(dir);
        const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
        if (!st.isDirectory() || st.isSymbolicLink() || st.uid !== uid || (st.mode & 0o077) !== 0) return null;
      } catch {
        return null;
      }
      return controlSocketPath(path.join(dir, 'state'));
    },
    confirm: (question) => confirmOnTerminal(question),
    onInterrupt: onLaterInterrupt,
    settingsFile: async (env): Promise<SettingsFile> => {
      const { SettingsStore } = await import('../core/settings.ts');
      const store = new SettingsStore({ dir: resolvePaths(env).configDir, watch: false });
      return { path: store.path, get: () => store.get(), update: (p) => store.update(p), close: () => store.close() };
    },
    doctorHere: async (env) => {
      const { doctorHere } = await import('../core/doctor.ts');
      const paths = resolvePaths(env);
      // Read the paths to nix and vfkit from settings.json as they are; a broken file is the agent's to report.
      let nixPath: string | null = null;
      let vfkitPath: string | null = null;
      try {
        const raw = JSON.parse(fs.readFileSync(path.join(paths.configDir, 'settings.json'), 'utf8')) as Record<
          string,
          unknown
        >;
        if (typeof raw.nixPath === 'string') nixPath = raw.nixPath;
        if (typeof raw.vfkitPath === 'string') vfkitPath = raw.vfkitPath;
      } catch {
        // No settings yet: defaults.
      }
      return doctorHere({ nixPath, vfkitPath, stateDir: paths.stateDir, systems: null, rosettaVms: [] });
    },
    // The app's launcher when this is NixVM.app's CLI: its Electron binary runs as Node only with
    // ELECTRON_RUN_AS_NODE, which ssh's ProxyCommand and Terminal would not set.
    selfArgv: selfCommand(process.execPath, process.argv[1] ?? 'nixvm'),
  };
}

/**
 * A yes/no question on the terminal (stdin and stderr both TTYs); null without one. Ctrl-C while
 * it waits is an answer too ('interrupt'): readline gets it as a key, not as a signal.
 */
function confirmOnTerminal(question: string): Promise<Answer | null> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) return Promise.resolve(null);
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    let done = false;
    const finish = (a: Answer): void => {
      if (done) return;
      done = true;
      rl.close();
      process.stdin.pause();
      resolve(a);
    };
    rl.on('SIGINT', () => {
      process.stderr.write('\n');
      finish('interrupt');
    });
    rl.on('close', () => finish('no'));
    rl.question(question, (answer) => finish(/^\s*y(es)?\s*$/i.test(answer) ? 'yes' : 'no'));
  });
}

/** process.stdin as a CliInput; it starts flowing only when someone listens. */
function inputOf(stdin: NodeJS.ReadStream): CliInput {
  return {
    isTTY: !!stdin.isTTY,
    setRaw(on) {
      if (stdin.isTTY) stdin.setRawMode(on);
    },
    onData(fn) {
      stdin.on('data', fn);
      stdin.resume();
      return () => {
        stdin.off('data', fn);
        stdin.pause();
      };
    },
    onEnd(fn) {
      stdin.on('end', fn);
      return () => stdin.off('end', fn);
    },
  };
}
