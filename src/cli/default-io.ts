/**
 * The real world behind CliIo: this process's streams and environment, the control socket
 * client, ssh on our terminal, the daemon and launchd. Heavy or optional modules load on first
 * use, so `nixvm ls` never loads the agent and tests that inject their own port load none of it.
 */
import { execInteractive, outputOf, type CliIo, type CliPort, type LoginItemApi } from './io.ts';

const PASSED_ENV = ['NIXVM_STATE_DIR', 'NIXVM_NIX', 'NIXVM_VFKIT', 'NIXVM_LEASES_FILE'] as const;

const neverAborted = new AbortController().signal;

export function defaultIo(): CliIo {
  return {
    stdout: outputOf(process.stdout),
    stderr: outputOf(process.stderr),
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
    confirm: async (question: string): Promise<boolean | null> => {
      if (!process.stdin.isTTY || !process.stderr.isTTY) return null;
      const { createInterface } = await import('node:readline/promises');
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      try {
        return /^y(es)?$/i.test((await rl.question(question)).trim());
      } finally {
        rl.close();
      }
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
        install: () => launchd.installLoginItem({ environment }),
        remove: () => launchd.removeLoginItem(),
        status: () => launchd.loginItemStatus(),
      };
    },
  };
}
