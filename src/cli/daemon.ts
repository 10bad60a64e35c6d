/**
 * `nixvm daemon`: a headless agent in the foreground, serving the control socket, until Ctrl-C or
 * SIGTERM. The agent and the server load only here (dynamic imports), so other commands stay a
 * thin client. VMs keep running when it stops unless settings say otherwise; the agent's close()
 * decides that.
 */
import type { AgentEvent, AgentPort } from '../api/types.ts';
import type { CliIo } from './io.ts';
import { trimWhenIdle } from '../host/idle-trim.ts';
import { BUNDLE_ID } from '../host/paths.ts';

/** What the daemon needs of the agent: the port it serves, and a clean shutdown. */
export interface DaemonAgent extends AgentPort {
  close(): Promise<void>;
  /** Resolves once every flake was evaluated once (the real Agent has it). */
  ready?(): Promise<void>;
}

export interface DaemonOptions {
  /** Flake directories (absolute); omitted = the ones in settings. */
  flakes?: string[];
  socketPath: string;
  io: CliIo;
  /** Default: `Agent.create` from src/core/agent.ts. */
  createAgent?: (opts: { flakes?: string[] }) => Promise<DaemonAgent>;
}

async function createRealAgent(opts: { flakes?: string[] }): Promise<DaemonAgent> {
  const { Agent } = await import('../core/agent.ts');
  return Agent.create(opts);
}

function stamp(now: number): string {
  return new Date(now).toISOString().slice(11, 19);
}

/** A headless agent's console line for an event worth a line (notices; not every snapshot). */
function eventLine(ev: AgentEvent): string | null {
  if (ev.type !== 'notice') return null;
  const n = ev.notice;
  return `${n.level === 'error' ? 'error' : 'notice'}: ${n.vm ? `${n.vm}: ` : ''}${n.title}${n.body ? ` — ${n.body}` : ''}`;
}

/** Run the agent and its control socket until `io.signal` aborts; resolves with the exit code. */
export async function runDaemon(opts: DaemonOptions): Promise<number> {
  const { io, socketPath } = opts;
  const say = (s: string): void => void io.stdout.write(`${stamp(io.now())} ${s}\n`);
  const complain = (s: string): void => void io.stderr.write(`nixvm daemon: ${s}\n`);

  const createAgent = opts.createAgent ?? createRealAgent;
  let agent: DaemonAgent;
  try {
    // A second agent fails here: the lock names the process that holds it.
    agent = await createAgent(opts.flakes ? { flakes: opts.flakes } : {});
  } catch (err) {
    complain(err instanceof Error ? err.message : String(err));
    // Under launchd (KeepAlive on crash), a non-zero exit would respawn us every 10 s while the
    // other agent lives: an agent that is already running is a fine outcome there.
    if (err instanceof Error && err.name === 'AlreadyRunningError' && io.env.XPC_SERVICE_NAME === BUNDLE_ID) return 0;
    return 1;
  }

  const { startControlServer } = await import('../control/server.ts');
  let server: { close(): Promise<void> };
  try {
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

  await new Promise<void>((resolve) => {
    if (io.signal.aborted) resolve();
    else io.signal.addEventListener('abort', () => resolve(), { once: true });
  });

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
    await agent.close();
  } catch (err) {
    complain(`the agent did not shut down cleanly: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  }
  say('stopped.');
  return code;
}
