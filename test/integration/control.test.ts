/**
 * The control socket end to end: real unix sockets, the real server and client, and a small
 * AgentPort written here (the control layer is generic over AgentPort, so no agent is needed).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type {
  AgentEvent,
  AgentMethod,
  AgentPort,
  ConsoleAttachment,
  ConsoleAttachOptions,
  ConsoleEvent,
  ParamsOf,
  ResultOf,
  SubscribeOptions,
} from '../../src/api/types.ts';
import { AgentError } from '../../src/api/errors.ts';
import { connectControl, type ControlClient } from '../../src/control/client.ts';
import { startControlServer, type ControlServer, type ControlServerOptions } from '../../src/control/server.ts';
import { controlSocketPath, shortSocketDir } from '../../src/host/socket-path.ts';
import { agentSnapshot, vmSnapshot } from '../helpers/fake-port.ts';
import { settles, WAIT_MS, waitFor, watchChild } from '../helpers/wait.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read reply shapes of every kind
type Msg = Record<string, any>;

class TestPort implements AgentPort {
  readonly calls: { method: AgentMethod; params: unknown }[] = [];
  readonly subs = new Map<(ev: AgentEvent) => void, SubscribeOptions | undefined>();
  inFlight = 0;
  maxInFlight = 0;
  /** Held open by tests that need a call to be in progress. */
  gate: Promise<void> = Promise.resolve();
  finished = 0;

  async call<M extends AgentMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    this.calls.push({ method, params });
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      return (await this.#answer(method, params as Record<string, unknown>)) as ResultOf<M>;
    } finally {
      this.inFlight--;
      this.finished++;
    }
  }

  async #answer(method: AgentMethod, params: Record<string, unknown>): Promise<unknown> {
    switch (method) {
      case 'snapshot':
        return agentSnapshot([vmSnapshot({ name: 'web' })]);
      case 'start':
        if (params.vm !== 'web')
          throw new AgentError('no-such-vm', `There is no VM named ${String(params.vm)}; \`nixvm ls\` lists them.`);
        return vmSnapshot({ name: 'web', state: 'starting' });
      case 'build':
        throw new Error('nix build exploded');
      case 'stop':
        throw 'bare string';
      case 'ips':
        await this.gate;
        return { ipv6: 'fe80::1%bridge100', ipv4: '192.168.64.2' };
      case 'reevaluate':
        // Yield so that many calls overlap.
        await new Promise((r) => setImmediate(r));
        return [];
      case 'getSettings':
        return undefined;
      default:
        throw new AgentError('failed', `${method} is not in this test port.`);
    }
  }

  /** A console that echoes what is typed, upper-cased, to every attachment. */
  readonly consoles = new Set<(ev: ConsoleEvent) => void>();
  async attachConsole(
    vm: string,
    opts: ConsoleAttachOptions,
    fn: (ev: ConsoleEvent) => void,
  ): Promise<ConsoleAttachment> {
    if (vm !== 'web') throw new AgentError('no-such-vm', `There is no VM named ${JSON.stringify(vm)}.`);
    fn({ kind: 'data', data: Buffer.from('web login: ') });
    fn({ kind: 'input', writer: opts.input });
    this.consoles.add(fn);
    return {
      vm,
      pty: '/dev/ttys003',
      write: (data) => {
        for (const f of this.consoles)
          f({ kind: 'data', data: Buffer.from(Buffer.from(data).toString().toUpperCase()) });
      },
      detach: () => this.consoles.delete(fn),
    };
  }

  subscribe(fn: (ev: AgentEvent) => void, opts?: SubscribeOptions): () => void {
    this.subs.set(fn, opts);
    return () => this.subs.delete(fn);
  }

  emit(ev: AgentEvent): void {
    for (const fn of [...this.subs.keys()]) fn(ev);
  }
}

/** A client speaking the wire format by hand. */
class Raw {
  readonly socket: net.Socket;
  readonly lines: string[] = [];
  readonly #closed: Promise<void>;
  #buf = '';

  constructor(socketPath: string) {
    this.socket = net.createConnection(socketPath);
    this.socket.setEncoding('utf8');
    this.socket.on('data', (d: string) => {
      this.#buf += d;
      let i: number;
      while ((i = this.#buf.indexOf('\n')) >= 0) {
        this.lines.push(this.#buf.slice(0, i));
        this.#buf = this.#buf.slice(i + 1);
      }
    });
    this.socket.on('error', () => {});
    this.#closed = new Promise<void>((r) => this.socket.once('close', () => r()));
  }

  /** Resolves when the connection has closed (within the wait deadline). */
  get closed(): Promise<void> {
    return settles(this.#closed, {
      what: 'the server to close the connection',
      detail: () => `Lines so far: ${this.lines.join(' | ')}`,
    });
  }

  ready(): Promise<void> {
    return settles(
      new Promise<void>((r, j) => {
        this.socket.once('connect', () => r());
        this.socket.once('error', j);
      }),
      { what: 'the control socket to accept the connection' },
    );
  }

  send(s: string | Buffer): void {
    this.socket.write(s);
  }

  messages(): Array<Msg> {
    return this.lines.map((l) => JSON.parse(l) as Msg);
  }

  async waitFor(n: number, timeoutMs = WAIT_MS): Promise<Array<Msg>> {
    await waitFor(() => this.lines.length >= n, {
      what: `${n} lines from the control socket`,
      timeoutMs,
      detail: () => `Got ${this.lines.length}: ${this.lines.slice(0, 20).join(' | ')}`,
    });
    return this.messages();
  }
}

function until(what: string, fn: () => boolean): Promise<boolean> {
  return waitFor(fn, { what });
}

let root: string;
let stateDir: string;
let sock: string;
let port: TestPort;
let server: ControlServer | null;
const clients: ControlClient[] = [];
const raws: Raw[] = [];

async function serve(opts: ControlServerOptions = {}): Promise<ControlServer> {
  server = await startControlServer(port, sock, opts);
  return server;
}

/** A control client whose calls are answered within the wait deadline (or fail saying which). */
async function client(): Promise<ControlClient> {
  const c = await connectControl(sock);
  clients.push(c);
  const call = c.call.bind(c);
  c.call = ((method: AgentMethod, params: never) =>
    settles(call(method, params), { what: `the answer to ${method}` })) as ControlClient['call'];
  return c;
}

async function raw(p = sock): Promise<Raw> {
  const r = new Raw(p);
  raws.push(r);
  await r.ready();
  return r;
}

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'ctl-'));
  stateDir = path.join(root, 'state');
  sock = controlSocketPath(stateDir);
  port = new TestPort();
  server = null;
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const r of raws.splice(0)) r.socket.destroy();
  await server?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('control socket', () => {
  it('round-trips calls and keeps AgentError codes; other exceptions become "failed"', async () => {
    await serve();
    const c = await client();
    const snap = await c.call('snapshot', {});
    expect(snap.vms.map((v) => v.name)).toEqual(['web']);
    expect((await c.call('start', { vm: 'web' })).state).toBe('starting');

    const noVm = await c.call('start', { vm: 'db' }).catch((e: unknown) => e);
    expect(noVm).toBeInstanceOf(AgentError);
    expect(noVm).toMatchObject({ code: 'no-such-vm', message: 'There is no VM named db; `nixvm ls` lists them.' });

    await expect(c.call('build', { vm: 'web' })).rejects.toMatchObject({
      code: 'failed',
      message: 'nix build exploded',
    });
    await expect(c.call('stop', { vm: 'web' })).rejects.toMatchObject({ code: 'failed', message: 'bare string' });
    // A result of undefined travels as null rather than vanishing.
    expect(await c.call('getSettings', {})).toBeNull();
  });

  it('creates the socket 0600 inside a 0700 directory', async () => {
    await serve();
    expect(path.dirname(sock)).toBe(stateDir);
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(fs.statSync(stateDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(sock).isSocket()).toBe(true);
  });

  it('checks methods and params before the agent sees them', async () => {
    await serve();
    const r = await raw();
    r.send('{"id":1,"method":"start","params":{}}\n');
    r.send('{"id":2,"method":"start","params":{"vm":7}}\n');
    r.send('{"id":3,"method":"start","params":["web"]}\n');
    r.send('{"id":4,"method":"format-disk","params":{}}\n');
    r.send('{"id":5,"method":"logs","params":{"vm":"web","kind":"syslog","lines":5}}\n');
    r.send('{"id":6,"method":"__proto__"}\n');
    r.send('{"id":7,"method":"subscribe","params":{"logs":[{"vm":"web"}]}}\n');
    const msgs = await r.waitFor(7);
    for (const m of msgs) expect(m.error.code).toBe('bad-request');
    expect(msgs.map((m) => m.id)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(msgs[0]?.error.message).toBe('start needs a "vm" parameter naming the VM.');
    expect(msgs[3]?.error.message).toContain('Unknown method "format-disk"');
    expect(port.calls).toEqual([]);
  });

  it('answers garbage, binary and non-objects with errors and keeps serving the same connection', async () => {
    await serve();
    const r = await raw();
    r.send('hello\n');
    r.send(Buffer.concat([Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80]), Buffer.from('\n')]));
    r.send('[1,2,3]\n');
    r.send('null\n');
    r.send('{"method":"snapshot"}\n');
    r.send('\n\r\n   \n'); // Blank lines are ignored.
    r.send('{"id":9,"method":"snapshot","params":{}}\r\n');
    const msgs = await r.waitFor(6);
    expect(msgs.slice(0, 5).map((m) => [m.id, m.error?.code])).toEqual([
      [null, 'bad-request'],
      [null, 'bad-request'],
      [null, 'bad-request'],
      [null, 'bad-request'],
      [null, 'bad-request'],
    ]);
    expect(msgs[0]?.error.message).toContain('not valid JSON');
    expect(msgs[2]?.error.message).toContain('not a JSON object');
    expect(msgs[4]?.error.message).toContain('"id"');
    expect(msgs[5]).toMatchObject({ id: 9, result: { vms: [{ name: 'web' }] } });
  });

  it('drops a connection that keeps sending garbage, after telling it why', async () => {
    await serve({ maxBadMessages: 5 });
    const r = await raw();
    r.send('x\n'.repeat(100));
    await r.closed;
    const msgs = r.messages();
    expect(msgs).toHaveLength(6);
    expect(msgs.at(-1)?.error.message).toContain('Too many malformed messages');
    expect((await (await client()).call('snapshot', {})).vms).toHaveLength(1);
  });

  it('refuses a 10 MiB line with an error, closes that connection, and serves others', async () => {
    await serve();
    const r = await raw();
    r.send('{"id":1,"method":"snapshot"}\n');
    const big = Buffer.alloc(10 * 1024 * 1024, 0x61);
    r.send(big);
    await r.closed;
    const msgs = r.messages();
    expect(msgs[0]).toMatchObject({ id: 1, result: { vms: [{ name: 'web' }] } });
    expect(msgs.at(-1)).toMatchObject({ id: null, error: { code: 'bad-request' } });
    expect(msgs.at(-1)?.error.message).toContain('longer than 1 MiB');
    const c = await client();
    expect((await c.call('snapshot', {})).vms).toHaveLength(1);
  });

  it('answers a client that half-closes after its request (with or without the final newline)', async () => {
    await serve();
    for (const req of ['{"id":1,"method":"snapshot"}\n', '{"id":1,"method":"snapshot"}']) {
      const r = await raw();
      r.socket.end(req);
      await r.closed;
      expect(r.messages()).toHaveLength(1);
      expect(r.messages()[0]).toMatchObject({ id: 1, result: { vms: [{ name: 'web' }] } });
    }
  });

  it('survives clients that vanish mid-call and mid-stream', async () => {
    await serve();
    let open!: () => void;
    port.gate = new Promise((r) => (open = r));
    const r = await raw();
    r.send('{"id":1,"method":"ips","params":{"vm":"web"}}\n{"id":2,"method":"subscribe"}\n');
    await until('the call to start', () => port.inFlight === 1 && port.subs.size === 1);
    r.socket.destroy();
    await until('the subscription to end', () => port.subs.size === 0);
    open();
    await until('the call to finish', () => port.finished === 1);
    port.emit({ type: 'notice', notice: { level: 'info', title: 'after', body: '' } });
    const c = await client();
    expect(await c.call('ips', { vm: 'web' })).toEqual({ ipv6: 'fe80::1%bridge100', ipv4: '192.168.64.2' });
    expect(server?.connectionCount()).toBe(1);
  });

  it('streams events to subscribers, log lines only for the logs they asked for', async () => {
    await serve();
    const c = await client();
    const all: AgentEvent[] = [];
    const webLogs: AgentEvent[] = [];
    c.subscribe((ev) => all.push(ev));
    const stop = c.subscribe((ev) => webLogs.push(ev), { logs: [{ vm: 'web', kind: 'console' }] });
    await c.whenSubscribed();
    // The agent is told which logs are wanted, so it can tail only those.
    expect([...port.subs.values()]).toEqual([{ logs: [{ vm: 'web', kind: 'console' }] }]);

    port.emit({ type: 'snapshot', snapshot: agentSnapshot([]) });
    port.emit({ type: 'log', vm: 'web', kind: 'console', lines: ['[ OK ] Reached target Multi-User System.'] });
    port.emit({ type: 'log', vm: 'web', kind: 'build', lines: ['building…'] });
    port.emit({ type: 'log', vm: 'db', kind: 'console', lines: ['db boot'] });
    port.emit({ type: 'notice', notice: { level: 'error', title: 'web crashed', body: 'exit 1', vm: 'web' } });
    await until('events', () => all.length === 2 && webLogs.length === 3);
    expect(all.map((e) => e.type)).toEqual(['snapshot', 'notice']);
    expect(webLogs.map((e) => e.type)).toEqual(['snapshot', 'log', 'notice']);
    expect(webLogs[1]).toEqual({
      type: 'log',
      vm: 'web',
      kind: 'console',
      lines: ['[ OK ] Reached target Multi-User System.'],
    });

    // Dropping the log listener narrows the agent-side subscription; dropping all ends it.
    stop();
    await c.whenSubscribed();
    expect([...port.subs.values()]).toEqual([{}]);
    await c.close();
    await until('unsubscribed', () => port.subs.size === 0);
  });

  it("carries a listener's wish for the VMs' usage to the agent while any listener of the connection has it", async () => {
    await serve();
    const c = await client();
    const plain = c.subscribe(() => {});
    await c.whenSubscribed();
    expect([...port.subs.values()]).toEqual([{}]);
    const open = c.subscribe(() => {}, { usage: true });
    await c.whenSubscribed();
    expect([...port.subs.values()]).toEqual([{ usage: true }]);
    open();
    await c.whenSubscribed();
    expect([...port.subs.values()]).toEqual([{}]);
    plain();
    // Anything but true or false is refused with a sentence.
    const r = await raw();
    r.send('{"id":3,"method":"subscribe","params":{"usage":"yes"}}\n');
    const [reply] = await r.waitFor(1);
    expect(reply).toMatchObject({
      id: 3,
      error: { code: 'bad-request', message: 'subscribe: "usage" must be true or false.' },
    });
    await c.close();
  });

  it('ends a subscription on "unsubscribe" and keeps the connection for calls', async () => {
    await serve();
    const r = await raw();
    r.send('{"id":1,"method":"subscribe","params":{}}\n');
    await r.waitFor(1);
    port.emit({ type: 'notice', notice: { level: 'info', title: 'one', body: '' } });
    await r.waitFor(2);
    r.send('{"id":2,"method":"unsubscribe"}\n');
    await r.waitFor(3);
    expect(port.subs.size).toBe(0);
    port.emit({ type: 'notice', notice: { level: 'info', title: 'two', body: '' } });
    r.send('{"id":3,"method":"snapshot"}\n');
    const msgs = await r.waitFor(4);
    expect(msgs.map((m) => m.id ?? m.event?.notice.title)).toEqual([1, 'one', 2, 3]);
  });

  it('drops a subscriber that stops reading instead of buffering without limit', async () => {
    const problems: string[] = [];
    await serve({ maxSubscriberBacklogBytes: 256 * 1024, onProblem: (m) => problems.push(m) });
    const r = await raw();
    r.send('{"id":1,"method":"subscribe"}\n');
    await r.waitFor(1);
    r.socket.pause(); // Never read again.
    const body = 'x'.repeat(16 * 1024);
    for (let i = 0; i < 2000 && port.subs.size > 0; i++) {
      port.emit({ type: 'notice', notice: { level: 'info', title: `n${i}`, body } });
    }
    expect(port.subs.size).toBe(0);
    expect(problems.join('\n')).toContain('stopped reading');
    await until('the connection to go', () => server?.connectionCount() === 0);
  });

  it('answers every request of a flood, never running more than the cap at once', async () => {
    await serve({ maxInFlightPerConnection: 8 });
    const r = await raw();
    const n = 5000;
    let batch = '';
    for (let i = 1; i <= n; i++) batch += `{"id":${i},"method":"reevaluate"}\n`;
    r.send(batch);
    const msgs = await r.waitFor(n, 30_000);
    expect(new Set(msgs.map((m) => m.id)).size).toBe(n);
    expect(msgs.every((m) => Array.isArray(m.result))).toBe(true);
    expect(port.maxInFlight).toBeLessThanOrEqual(8);
    expect(port.maxInFlight).toBeGreaterThan(1);
  });

  it('removes a socket file left by a crashed agent, but never a live one', async () => {
    // A real crash: another process listens, then is SIGKILLed, leaving the file behind.
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const child = spawn(
      process.execPath,
      ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const listener = watchChild(child, 'the other listener', { stdout: true });
    await waitFor(() => listener.output().includes('up'), { what: 'the other process to listen', process: listener });
    const live = await startControlServer(port, sock).catch((e: unknown) => e);
    expect(live).toBeInstanceOf(Error);
    expect((live as Error).message).toContain('already serving');
    expect(fs.existsSync(sock)).toBe(true);

    child.kill('SIGKILL');
    await settles(listener.exited, { what: 'the SIGKILLed listener to be gone' });
    expect(fs.statSync(sock).isSocket()).toBe(true);
    await expect(connectControl(sock)).rejects.toMatchObject({
      code: 'not-running',
      message: expect.stringContaining('nothing is listening'),
    });

    await serve();
    expect((await (await client()).call('snapshot', {})).vms).toHaveLength(1);
  });

  it('refuses to replace something at the socket path that is not a socket', async () => {
    fs.mkdirSync(stateDir, { recursive: true });
    fs.writeFileSync(sock, 'precious');
    await expect(startControlServer(port, sock)).rejects.toThrow('is not a socket');
    expect(fs.readFileSync(sock, 'utf8')).toBe('precious');
  });

  it('tells the CLI the agent is not running, with the hint to start it', async () => {
    const err = await connectControl(sock).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect(err).toMatchObject({
      code: 'not-running',
      message: `The nixvm agent is not running (no socket at ${sock}); start it with \`nixvm daemon\` or open NixVM.app.`,
    });
  });

  it('fails pending calls when the agent goes away, and says so to onClose', async () => {
    await serve();
    port.gate = new Promise(() => {});
    const c = await client();
    const closed = new Promise<AgentError | null>((r) => c.onClose(r));
    const pending = c.call('ips', { vm: 'web' }).catch((e: unknown) => e);
    await until('the call to arrive', () => port.inFlight === 1);
    await server?.close();
    server = null;
    expect(await pending).toMatchObject({
      code: 'not-running',
      message: expect.stringContaining('before answering ips'),
    });
    expect(await closed).toMatchObject({ code: 'not-running' });
    await expect(c.call('snapshot', {})).rejects.toMatchObject({ code: 'not-running' });
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('moves a socket whose path is too long for macOS to a private /tmp/nixvm-<uid> directory', async () => {
    const deep = path.join(root, 'a-very-long-directory-name-for-a-user'.repeat(3), 'state');
    const p = controlSocketPath(deep);
    expect(Buffer.byteLength(path.join(deep, 'control.sock'))).toBeGreaterThan(103);
    expect(path.dirname(p)).toBe(shortSocketDir());
    expect(Buffer.byteLength(p)).toBeLessThanOrEqual(103);
    // Deterministic: the CLI computes the same path as the agent.
    expect(controlSocketPath(deep)).toBe(p);
    expect(controlSocketPath(`${deep}2`)).not.toBe(p);
    const srv = await startControlServer(port, p);
    try {
      expect(fs.lstatSync(path.dirname(p)).mode & 0o777).toBe(0o700);
      expect(fs.statSync(p).mode & 0o777).toBe(0o600);
      const c = await connectControl(p);
      clients.push(c);
      expect((await c.call('snapshot', {})).vms).toHaveLength(1);
    } finally {
      await srv.close();
    }
    expect(fs.existsSync(p)).toBe(false);
  });
});
