/**
 * A real Agent for tests: a fixture flake copied to a temp dir, real nix, the vfkit simulator,
 * and a private state root (settings, logs, sockets, leases file). No fakes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, type AgentOptions } from '../../src/core/agent.ts';
import type { AgentEvent, AgentSnapshot, Settings, VmSnapshot } from '../../src/api/types.ts';
import { copyFixture, type FlakeCopy } from './fixtures.ts';
import { killVfkitsUnder } from './reap.ts';
import { settles, tail, WAIT_MS } from './wait.ts';

export const SIMULATOR = fileURLToPath(new URL('../vfkit-sim/vfkit', import.meta.url));

export interface TestAgentOptions {
  /** Fixture name under test/fixtures (default 'seed'). */
  fixture?: string;
  git?: boolean;
  /** Give the fixture fresh derivations so nix really builds. */
  salt?: boolean;
  /** Settings written before the agent starts (vfkitPath defaults to the simulator). */
  settings?: Partial<Settings>;
  /** Extra env for the simulated VMs (fault switches). */
  vmEnv?: Record<string, string>;
  agent?: Partial<AgentOptions>;
  /** Reuse a state root (to test a restarted agent). */
  root?: string;
  /** Reuse a flake copy. */
  flake?: FlakeCopy;
  /** Extra environment for the agent itself (SHARED_DIR, NIX_SSL_CERT_FILE…). */
  env?: Record<string, string>;
}

export interface TestAgent {
  agent: Agent;
  flake: FlakeCopy;
  /** NIXVM_STATE_DIR of this agent. */
  root: string;
  leasesFile: string;
  env: NodeJS.ProcessEnv;
  /**
   * Resolve with the first snapshot (current or pushed) that satisfies pred; on timeout the
   * error shows the last snapshot and what each simulated VM wrote.
   */
  waitFor(pred: (s: AgentSnapshot) => boolean, timeoutMs?: number, what?: string): Promise<AgentSnapshot>;
  vm(name: string): VmSnapshot;
  events: AgentEvent[];
  /** Close the agent (VMs keep running). */
  close(): Promise<void>;
  /** Close the agent, stop every VM it knows, remove its state root and the flake copy. */
  dispose(): Promise<void>;
}

export async function createTestAgent(opts: TestAgentOptions = {}): Promise<TestAgent> {
  const flake =
    opts.flake ?? (await copyFixture(opts.fixture ?? 'seed', { git: opts.git ?? false, salt: opts.salt ?? false }));
  const root = opts.root ?? fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-agent-')));
  const leasesFile = path.join(root, 'dhcpd_leases');
  const settingsFile = path.join(root, 'settings.json');
  if (!fs.existsSync(settingsFile)) {
    fs.writeFileSync(
      settingsFile,
      JSON.stringify({ vfkitPath: SIMULATOR, flakes: [flake.dir], ...opts.settings }, null, 2),
    );
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NIXVM_STATE_DIR: root,
    NIXVM_LEASES_FILE: leasesFile,
    ...opts.env,
  };
  const agent = await Agent.create({
    env,
    vmEnv: { NIXVM_LEASES_FILE: leasesFile, NIXVM_SIM_BOOT_MS: '200', ...opts.vmEnv },
    debounceMs: 100,
    hardStopTimeoutMs: 1000,
    termTimeoutMs: 7000,
    ...opts.agent,
  });
  const events: AgentEvent[] = [];
  const off = agent.subscribe((ev) => events.push(ev));
  await agent.ready();

  const waitFor = (
    pred: (s: AgentSnapshot) => boolean,
    timeoutMs = WAIT_MS,
    what = 'a snapshot that matches',
  ): Promise<AgentSnapshot> => {
    let unsub = () => {};
    const matched = new Promise<AgentSnapshot>((resolve) => {
      const now = agent.snapshot();
      if (pred(now)) return resolve(now);
      unsub = agent.subscribe((ev) => {
        if (ev.type === 'snapshot' && pred(ev.snapshot)) resolve(ev.snapshot);
      });
    });
    return settles(matched, { what, timeoutMs, detail: () => agentDetail(agent, root) }).finally(() => unsub());
  };

  const close = async () => {
    off();
    await agent.close({ stopVms: false });
  };
  return {
    agent,
    flake,
    root,
    leasesFile,
    env,
    waitFor,
    events,
    vm: (name) => {
      const v = agent.snapshot().vms.find((x) => x.name === name);
      if (!v) throw new Error(`no VM ${name}`);
      return v;
    },
    close,
    async dispose() {
      const running = agent.snapshot().vms.filter((v) => v.state !== 'stopped' && v.state !== 'crashed');
      await Promise.allSettled(running.map((v) => agent.call('stop', { vm: v.name })));
      await close();
      // Anything adopted but unknown to the agent: kill by pidfile so no simulator outlives the test.
      killVfkitsUnder(path.join(root, 'state', 'vms'));
      fs.rmSync(root, { recursive: true, force: true });
      flake.remove();
    },
  };
}

/** The agent's VMs as a line each, and what each simulated VM wrote (for failure messages). */
export function agentDetail(agent: Agent, root: string): string {
  const vms = agent
    .snapshot()
    .vms.map(
      (v) =>
        `  ${v.name}: ${v.state}${v.stale ? ', stale' : ''}, build ${v.build.status}${v.error ? `, error: ${v.error}` : ''}`,
    );
  const lines = [`Last snapshot:\n${vms.join('\n')}`];
  const vmsDir = path.join(root, 'state', 'vms');
  for (const d of fs.existsSync(vmsDir) ? fs.readdirSync(vmsDir) : []) {
    const log = path.join(vmsDir, d, 'vfkit.log');
    if (fs.existsSync(log)) lines.push(`${d}'s vfkit.log:\n${tail(fs.readFileSync(log, 'utf8'), 1500)}`);
  }
  return lines.join('\n');
}
