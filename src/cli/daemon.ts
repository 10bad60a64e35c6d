/**
 * `nixvm daemon`: a headless agent in the foreground, serving the control socket, until Ctrl-C or
 * SIGTERM. The agent and the server load only here (dynamic imports), so other commands stay a
 * thin client. VMs keep running when it stops unless settings say otherwise; the agent's close()
 * decides that.
 */
import type { AgentEvent, AgentPort } from '../api/types.ts';
import { formatNotice, visibleText } from './format.ts';
import type { CliIo } from './io.ts';
import { trimWhenIdle } from '../host/idle-trim.ts';
import { BUNDLE_ID, resolvePaths } from '../host/paths.ts';
import { placeControlSocket } from '../host/socket-path.ts';
import type { ControlServer } from '../control/server.ts';

/** What the daemon needs of the agent: the port it serves, and a clean shutdown. */
export interface DaemonAgent extends AgentPort {
  /** `stopVms: false` leaves the VMs running whatever the settings say (another agent took over). */
  close(opts?: { stopVms?: boolean }): Promise<void>;
  /** Resolves once every flake was evaluated once (the real Agent has it). */
  ready?(): Promise<void>;
  /** Is the state dir (and our lock in it) still there? (the real Agent has it) */
  checkState?(): Promise<'ok' | 'restored' | 'taken'>;
  /** Show a problem with the agent's own (the real Agent has it). */
  reportProblem?(sentence: string): void;
}

export interface DaemonOptions {
  /** Flake directories (absolute); omitted = the ones in settings. */
  flakes?: string[];
  /** Omitted: the first private place for it under the state dir (socket-path.ts). */
  socketPath?: string;
  /** How often the state dir, lock and socket are checked (default 2 s). */
  stateCheckMs?: number;
  io: CliIo;
  /** Default: `Agent.create` from src/core/agent.ts. */
  createAgent?: (opts: { flakes?: string[]; nixvmCommand?: string[] }) => Promise<DaemonAgent>;
}

async function createRealAgent(opts: { flakes?: string[]; nixvmCommand?: string[] }): Promise<DaemonAgent> {
  const { Agent } = await import('../core/agent.ts');
  return Agent.create(opts);
}

function stamp(now: number): string {
  return new Date(now).toISOString().slice(11, 19);
}

/** A headless agent's console line for an event worth a line (notices; not every snapshot). */
function eventLine(ev: AgentEvent): string | null {
  return ev.type === 'notice' ? formatNotice(ev.notice) : null;
}

/** Run the agent and its control socket until `io.signal` aborts; resolves with the exit code. */
export async function runDaemon(opts: DaemonOptions): Promise<number> {
  const { io } = opts;
  const say = (s: string): void => void io.stdout.write(`${stamp(io.now())} ${visibleText(s)}\n`);
  const complain = (s: string): void => void io.stderr.write(`nixvm daemon: ${visibleText(s)}\n`);

  const createAgent = opts.createAgent ?? createRealAgent;
  let agent: DaemonAgent;
  try {
    // A second agent fails here: the lock names the process that holds it.
    // ssh's ProxyCommand in the ssh config this agent writes runs this same nixvm.
    agent = await createAgent({ ...(opts.flakes ? { flakes: opts.flakes } : {}), nixvmCommand: io.selfArgv });
  } catch (err) {
    complain(err instanceof Error ? err.message : String(err));
    // Under launchd (KeepAlive on crash), a non-zero exit would respawn us every 10 s while the
    // other agent lives: an agent that is already running is a fine outcome there.
    if (err instanceof Error && err.name === 'AlreadyRunningError' && io.env.XPC_SERVICE_NAME === BUNDLE_ID) return 0;
    return 1;
  }

  const { startControlServer } = await import('../control/server.ts');
  let server: ControlServer;
  let socketPath: string;
  try {
    if (opts.socketPath) socketPath = opts.socketPath;
    else {
      // A short socket directory that is not ours is passed over (and said), never used.
      const placed = placeControlSocket(resolvePaths(io.env).stateDir);
      socketPath = placed.path;
      for (const p of placed.problems) agent.reportProblem?.(p);
    }
    server = await startControlServer(agent, socketPath, {
      onProblem: (m) => say(`control socket: ${m}`),
    });
  } catch (err) {
    complain(err instanceof Error ? err.message : String(err));
    await agent.close().catch(() => {});
    return 1;
  }

  const trim = trimWhenIdle();
  const unsubscribe = agent.subscribe((ev) => {
    trim.activity();
    const line = eventLine(ev);
    if (line) say(line);
  });

  try {
    // Say what we serve once the flakes are known, not "0 VMs" while nix still evaluates.
    await agent.ready?.();
    const snap = await agent.call('snapshot', {});
    // A --flake is for this run only; say so, so a login item without it is no surprise.
    const flakes = snap.flakes.map((f) => (f.source === 'command-line' ? `${f.dir} (--flake: this run only)` : f.dir));
    say(
      `nixvm agent (pid ${process.pid}) listening on ${socketPath}; ` +
        (flakes.length
          ? `flakes: ${flakes.join(', ')}`
          : 'no flake configured (`nixvm flake add DIR` keeps one; --flake DIR is for one run)') +
        `; ${snap.vms.length} VM${snap.vms.length === 1 ? '' : 's'}. Ctrl-C stops the agent` +
        (snap.settings.onQuit === 'stop' ? ' and its VMs.' : '; VMs keep running.'),
    );
    for (const p of snap.agent.problems) say(`problem: ${p}`);
    for (const f of snap.flakes) if (f.error) say(f.error.split('\n', 1)[0]!);
    if (snap.flakes.some((f) => f.source === 'command-line'))
      say('`nixvm flake add DIR` keeps a --flake folder for later runs and the login item.');
  } catch (err) {
    say(`listening on ${socketPath} (the first snapshot failed: ${err instanceof Error ? err.message : String(err)})`);
  }

  // The state dir deleted under us takes the lock and socket with it: make them again (a second
  // agent would otherwise start beside this one), or step down if another agent already took over.
  let supplanted = false;
  let watchdog: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve) => {
    if (io.signal.aborted) return resolve();
    io.signal.addEventListener('abort', () => resolve(), { once: true });
    let busy = false;
    watchdog = setInterval(() => {
      if (busy) return;
      busy = true;
      void (async () => {
        const state = (await agent.checkState?.().catch(() => 'ok' as const)) ?? 'ok';
        const sock = state === 'taken' ? 'taken' : await server.check();
        if (state === 'restored' || sock === 'restored')
          say(`the state dir was deleted; its lock and ${socketPath} were made again.`);
        if (state === 'taken' || sock === 'taken') {
          supplanted = true;
          say('another nixvm agent took over this state dir; this one stops and leaves the VMs running for it.');
          resolve();
        }
      })().finally(() => {
        busy = false;
      });
    }, opts.stateCheckMs ?? 2000);
    watchdog.unref();
  });
  clearInterval(watchdog);

  say('stopping…');
  unsubscribe();
  trim.stop();
  let code = 0;
  try {
    await server.close();
  } catch (err) {
    complain(`closing the control socket failed: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  }
  try {
    await agent.close(supplanted ? { stopVms: false } : undefined);
  } catch (err) {
    complain(`the agent did not shut down cleanly: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  }
  say('stopped.');
  return code;
}
