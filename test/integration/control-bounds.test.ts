/**
 * What one client can make the agent hold, over the control socket and in-process (issue 16,
 * Medium and Low): subscribe filters are capped per subscription and per agent and must name VMs
 * that exist; a client that pipelines requests and never reads is no longer answered and is then
 * dropped; idle and half-sent connections give their slot back; one client too many hears "too
 * busy"; `logs` answers are bounded however long the guest's lines are. The figures (RSS under
 * the same attacks) are in bench/control-abuse.ts.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_LOG_LINE_BYTES, MAX_LOG_REPLY_BYTES } from '../../src/api/validate.ts';
import { connectControl } from '../../src/control/client.ts';
import { startControlServer, type ControlServer, type ControlServerOptions } from '../../src/control/server.ts';
import { main } from '../../src/cli/app.ts';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { collect } from '../helpers/fake-port.ts';
import { settles, waitFor } from '../helpers/wait.ts';

let t: TestAgent | null = null;
let server: ControlServer | null = null;
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.close();
  server = null;
  await t?.dispose();
  t = null;
});

async function serve(opts: ControlServerOptions = {}): Promise<string> {
  t = await createTestAgent();
  const sock = path.join(t.root, 'state', 'test-control.sock');
  server = await startControlServer(t.agent, sock, opts);
  return sock;
}

/** A raw connection that keeps what it reads (when it reads) and says when it closed. */
function raw(
  sock: string,
  opts: { read?: boolean } = {},
): { socket: net.Socket; lines: string[]; closed: Promise<void> } {
  const socket = net.createConnection(sock);
  sockets.push(socket);
  const lines: string[] = [];
  let buf = '';
  socket.on('error', () => {});
  if (opts.read !== false) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  } else socket.pause();
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return { socket, lines, closed };
}

describe('subscribe filters', () => {
  it('refuses filters for VMs that do not exist (each would cost a file follower)', async () => {
    const sock = await serve();
    const c = raw(sock);
    const logs = Array.from({ length: 64 }, (_, i) => ({ vm: `ghost-${i}`, kind: 'console' }));
    c.socket.write(`${JSON.stringify({ id: 1, method: 'subscribe', params: { logs } })}\n`);
    await waitFor(() => c.lines.length >= 1, { what: 'the answer to subscribe' });
    expect(JSON.parse(c.lines[0]!)).toMatchObject({
      id: 1,
      error: { code: 'no-such-vm', message: 'There is no VM named "ghost-0" whose log could be followed.' },
    });
  });

  it('refuses one subscription over 64 logs, and every subscription together over 1024', async () => {
    const sock = await serve();
    const c = raw(sock);
    // The 28,000 filters, short names so the line stays under the 1 MiB request cap.
    const logs = Array.from({ length: 28_000 }, (_, i) => ({ vm: String(i), kind: 'console' }));
    c.socket.write(`${JSON.stringify({ id: 1, method: 'subscribe', params: { logs } })}\n`);
    await waitFor(() => c.lines.length >= 1, { what: 'the answer to subscribe' });
    expect(JSON.parse(c.lines[0]!).error.message).toBe('subscribe: "logs" may name at most 64 logs.');

    // In-process subscribers (the app's windows) share the agent-wide cap.
    const both = [
      { vm: 'minimal-vm', kind: 'console' as const },
      { vm: 'minimal-vm', kind: 'build' as const },
      { vm: 'builder-vm', kind: 'console' as const },
      { vm: 'builder-vm', kind: 'build' as const },
    ];
    const offs: (() => void)[] = [];
    for (let i = 0; i < 256; i++) offs.push(t!.agent.subscribe(() => {}, { logs: both }));
    expect(() => t!.agent.subscribe(() => {}, { logs: both })).toThrow(
      'The nixvm agent already follows 1024 logs for its clients (at most 1024); close some log windows or `nixvm logs -f` and try again.',
    );
    offs.pop()!();
    offs.push(t!.agent.subscribe(() => {}, { logs: both }));
    for (const off of offs) off();
  });
});

describe('connections that hold the agent', () => {
  it('stops answering a client that pipelines requests and never reads, then drops it; others are served', async () => {
    const sock = await serve({ stalledReplyTimeoutMs: 1000 });
    const greedy = raw(sock, { read: false });
    await new Promise<void>((r) => greedy.socket.once('connect', () => r()));
    const request = `${JSON.stringify({ id: 1, method: 'snapshot', params: {} })}\n`;
    const burst = request.repeat(2000);
    for (let i = 0; i < 20; i++) greedy.socket.write(burst);
    await settles(greedy.closed, { what: 'the agent to drop the client that does not read' });
    const c = await connectControl(sock);
    expect((await c.call('snapshot', {})).vms.length).toBe(2);
    await c.close();
  });

  it('closes idle and half-sent connections, but keeps a subscriber', async () => {
    const sock = await serve({ idleTimeoutMs: 300, partialLineTimeoutMs: 300 });
    const idle = raw(sock);
    const half = raw(sock);
    half.socket.write('{"id":1,"method":"snap');
    const watcher = raw(sock);
    watcher.socket.write(`${JSON.stringify({ id: 1, method: 'subscribe', params: {} })}\n`);
    await settles(idle.closed, { what: 'the idle connection to be closed' });
    await settles(half.closed, { what: 'the half-sent line to be given up on' });
    expect(JSON.parse(half.lines.at(-1)!).error.message).toMatch(
      /^A message on the control socket was not finished within/,
    );
    expect(watcher.socket.destroyed).toBe(false);
    expect(JSON.parse(watcher.lines[0]!)).toMatchObject({ id: 1, result: { subscribed: true } });
  });

  it('answers one client too many "too busy" instead of a silent hang-up that reads as "not running"', async () => {
    const sock = await serve({ maxConnections: 3, idleTimeoutMs: 60_000 });
    const held = [raw(sock), raw(sock), raw(sock)];
    await waitFor(() => server!.connectionCount() === 3, { what: 'three connections held' });
    const c = await connectControl(sock);
    const err = await c.call('snapshot', {}).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'failed',
      message: expect.stringMatching(/^The nixvm agent is too busy: 3 clients are connected to it; close some/),
    });
    // And the CLI says so, not "the agent is not running".
    const out = collect();
    const errOut = collect();
    const code = await main(['--socket', sock, 'ls'], { stdout: out, stderr: errOut });
    expect(code).toBe(1);
    expect(errOut.text()).toContain('too busy');
    for (const h of held) h.socket.destroy();
  });
});

describe('log answers', () => {
  it('cuts long console lines and bounds the whole answer (a guest writing without newlines)', async () => {
    t = await createTestAgent();
    const log = t.vm('minimal-vm').consoleLog!;
    fs.mkdirSync(path.dirname(log), { recursive: true });
    const fd = fs.openSync(log, 'w');
    // 20 MiB of 40 KiB lines, then one 3 MiB line with no newline.
    const line = `${'x'.repeat(40 * 1024)}\n`;
    for (let i = 0; i < 512; i++) fs.writeSync(fd, line);
    fs.writeSync(fd, 'y'.repeat(3 * 1024 * 1024));
    fs.closeSync(fd);
    const r = await t.agent.call('logs', { vm: 'minimal-vm', kind: 'console', lines: 100_000 });
    const bytes = r.lines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
    expect(bytes).toBeLessThanOrEqual(MAX_LOG_REPLY_BYTES + 4);
    for (const l of r.lines) expect(Buffer.byteLength(l)).toBeLessThanOrEqual(MAX_LOG_LINE_BYTES + 3);
    // The newest lines are the ones kept, the last one cut and marked.
    expect(r.lines.at(-1)).toBe(`${'y'.repeat(MAX_LOG_LINE_BYTES)}…`);
    expect(r.lines.length).toBeGreaterThan(100);
  });
});
