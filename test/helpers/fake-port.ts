/**
 * A scripted AgentPort for testing faces (the CLI) without an agent: it answers calls from
 * handlers the test gives, refuses unknown VMs like the agent does, records every call and
 * subscription, and lets the test push events. Plus builders for snapshots and an in-memory
 * output that collects what the CLI writes.
 */
import type {
  AgentEvent,
  AgentMethod,
  AgentPort,
  AgentSnapshot,
  BuildInfo,
  FlakeSnapshot,
  ParamsOf,
  ResultOf,
  SubscribeOptions,
  VmSnapshot,
} from '../../src/api/types.ts';
import { AgentError } from '../../src/api/errors.ts';
import type { CliOutput, CliPort } from '../../src/cli/io.ts';
import { defaultSettings } from '../../src/api/settings-schema.ts';
import { VM_METHODS } from '../../src/api/validate.ts';

export function buildInfo(over: Partial<BuildInfo> = {}): BuildInfo {
  return {
    status: 'idle',
    progress: null,
    error: null,
    detail: null,
    logPath: null,
    again: false,
    startedAt: null,
    finishedAt: null,
    ...over,
  };
}

export function vmSnapshot(over: Partial<VmSnapshot> & { name: string }): VmSnapshot {
  return {
    flake: '/flakes/demo',
    spec: null,
    state: 'stopped',
    stale: false,
    drvPath: `/nix/store/${'a'.repeat(32)}-nixos-system-${over.name}.drv`,
    builtDrvPath: null,
    builtOutPath: null,
    bootedDrvPath: null,
    bootedOutPath: null,
    cpus: 2,
    memoryMiB: 2048,
    mac: '5a:94:ef:e4:0c:ee',
    ipv6: null,
    ipv4: null,
    shares: [],
    error: null,
    build: buildInfo(),
    pid: null,
    startedAt: null,
    exit: null,
    sshCommand: null,
    autostart: false,
    consoleLog: `/state/logs/${over.name}/console.log`,
    stateDir: `/state/vms/${over.name}`,
    ...over,
  };
}

/** A flake that evaluated fine, with `over` on top. */
export function flakeSnapshot(over: Partial<FlakeSnapshot> & { dir: string }): FlakeSnapshot {
  return {
    evaluating: false,
    error: null,
    warnings: [],
    lastEvalAt: 0,
    state: over.error ? 'failed' : 'ok',
    evaluatingSince: null,
    errorKind: null,
    source: 'settings',
    hidden: [],
    ...over,
  };
}

export function agentSnapshot(vms: VmSnapshot[], over: Partial<AgentSnapshot> = {}): AgentSnapshot {
  return {
    agent: {
      pid: 4242,
      startedAt: 0,
      version: '0.1.0',
      nix: '/usr/bin/nix',
      vfkit: null,
      problems: [],
      sshConfig: { path: '/state/ssh_config', includeLine: 'Include /state/ssh_config', status: 'not-included' },
    },
    flakes: [flakeSnapshot({ dir: '/flakes/demo' })],
    vms,
    settings: { ...defaultSettings(), flakes: ['/flakes/demo'] },
    ...over,
  };
}

type Handler<M extends AgentMethod> = (params: ParamsOf<M>, port: FakePort) => ResultOf<M> | Promise<ResultOf<M>>;
export type Handlers = { [M in AgentMethod]?: Handler<M> };

export class FakePort implements CliPort {
  snapshot: AgentSnapshot;
  readonly handlers: Handlers;
  readonly calls: { method: AgentMethod; params: unknown }[] = [];
  readonly subscriptions: (SubscribeOptions | undefined)[] = [];
  readonly #listeners = new Set<(ev: AgentEvent) => void>();
  readonly #closeListeners = new Set<(err: Error | null) => void>();
  /** close() was called (the CLI is done with the connection); the port still answers. */
  closed = false;
  /** The agent went away: calls fail with not-running. */
  dropped = false;

  constructor(snapshot: AgentSnapshot, handlers: Handlers = {}) {
    this.snapshot = snapshot;
    this.handlers = handlers;
  }

  async call<M extends AgentMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    this.calls.push({ method, params });
    if (this.dropped) throw new AgentError('not-running', 'The nixvm agent closed the control connection.');
    if (VM_METHODS.has(method)) {
      const vm = (params as { vm: string }).vm;
      if (!this.snapshot.vms.some((v) => v.name === vm)) throw new AgentError('no-such-vm', `No VM named ${vm}.`);
    }
    const h = this.handlers[method] as Handler<M> | undefined;
    if (h) return h(params, this);
    if (method === 'snapshot') return structuredClone(this.snapshot) as ResultOf<M>;
    throw new AgentError('failed', `The fake port has no handler for ${method}.`);
  }

  /** Answers attachConsole; none: every VM is "not running". */
  consoleHandler: AgentPort['attachConsole'] | null = null;

  attachConsole(...args: Parameters<AgentPort['attachConsole']>): ReturnType<AgentPort['attachConsole']> {
    if (this.consoleHandler) return this.consoleHandler(...args);
    return Promise.reject(new AgentError('failed', `VM "${args[0]}" is not running, so it has no console.`));
  }

  subscribe(fn: (ev: AgentEvent) => void, opts?: SubscribeOptions): () => void {
    this.subscriptions.push(opts);
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  onClose(fn: (err: Error | null) => void): () => void {
    this.#closeListeners.add(fn);
    return () => this.#closeListeners.delete(fn);
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }

  emit(ev: AgentEvent): void {
    for (const fn of [...this.#listeners]) fn(ev);
  }

  /** Replace one VM in the snapshot and push the new snapshot to subscribers. */
  setVm(vm: VmSnapshot): void {
    this.snapshot = { ...this.snapshot, vms: this.snapshot.vms.map((v) => (v.name === vm.name ? vm : v)) };
    this.emit({ type: 'snapshot', snapshot: structuredClone(this.snapshot) });
  }

  vm(name: string): VmSnapshot {
    const vm = this.snapshot.vms.find((v) => v.name === name);
    if (!vm) throw new Error(`no ${name} in the fake snapshot`);
    return vm;
  }

  /** The agent went away. */
  drop(): void {
    this.dropped = true;
    for (const fn of this.#closeListeners)
      fn(new AgentError('not-running', 'The nixvm agent closed the control connection.'));
  }

  close(): void {
    this.closed = true;
  }
}

export interface Collected extends CliOutput {
  text(): string;
}

export function collect(opts: { isTTY?: boolean; columns?: number } = {}): Collected {
  let buf = '';
  return {
    write(s: string) {
      buf += s;
      return true;
    },
    isTTY: opts.isTTY ?? false,
    ...(opts.columns !== undefined ? { columns: opts.columns } : {}),
    text: () => buf,
  };
}
