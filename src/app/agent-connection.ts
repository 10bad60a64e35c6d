/**
 * The app's agent: in-process when this app takes the per-user lock (then the app, a face, serves
 * it on the control socket for the CLI), or a client of the headless agent that holds the lock.
 */
import type { AgentPort } from '../api/types.ts';

export interface AppAgent extends AgentPort {
  close(): Promise<void>;
  /** A control-socket client has it: the headless agent it talks to went away. */
  onClose?(fn: (err: Error | null) => void): () => void;
}

export async function connectAppAgent(
  log: (line: string) => void = () => {},
  nixvmCommand?: string[],
): Promise<{ agent: AppAgent; owned: boolean }> {
  const { Agent } = await import('../core/agent.ts');
  let core: Awaited<ReturnType<typeof Agent.create>>;
  try {
    core = await Agent.create(nixvmCommand ? { nixvmCommand } : {});
  } catch (e) {
    if (!(e instanceof Error) || e.name !== 'AlreadyRunningError') throw e;
    const { connectControl } = await import('../control/client.ts');
    return { agent: await connectControl(), owned: false };
  }
  const [{ startControlServer }, { placeControlSocket }] = await Promise.all([
    import('../control/server.ts'),
    import('../host/socket-path.ts'),
  ]);
  let server: Awaited<ReturnType<typeof startControlServer>>;
  try {
    // A short socket directory that is not ours is passed over (and said), never used.
    const placed = placeControlSocket(core.paths.stateDir);
    for (const p of placed.problems) core.reportProblem(p);
    server = await startControlServer(core, placed.path, { onProblem: log });
  } catch (e) {
    await core.close({ stopVms: false });
    throw e;
  }
  // The state dir deleted under the app takes the lock and socket with it: make them again.
  let busy = false;
  const watchdog = setInterval(() => {
    if (busy) return;
    busy = true;
    void (async () => {
      const state = await core.checkState().catch(() => 'ok' as const);
      const sock = state === 'taken' ? 'taken' : await server.check();
      if (state === 'taken' || sock === 'taken') {
        clearInterval(watchdog);
        core.reportProblem(
          'Another nixvm agent took over while the state folder was gone; quit NixVM and open it again to use that one.',
        );
      }
    })().finally(() => {
      busy = false;
    });
  }, 2000);
  watchdog.unref();
  const agent: AppAgent = {
    call: (method, params) => core.call(method, params),
    subscribe: (fn, opts) => core.subscribe(fn, opts),
    attachConsole: (vm, opts, fn) => core.attachConsole(vm, opts, fn),
    async close() {
      clearInterval(watchdog);
      await server.close();
      await core.close();
    },
  };
  return { agent, owned: true };
}
