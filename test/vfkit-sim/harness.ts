/**
 * Helpers for tests that drive the vfkit simulator: where it is, a fake NixOS closure for it to
 * "boot", a REST call over its socket (with a deadline), and a spawn that keeps its output and
 * exit, to race waits against (test/helpers/wait.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { VmSpec } from '../../src/api/types.ts';
import { ConsoleRelay } from '../../src/core/vm/console-relay.ts';
import { tail, type Exit, type Watched } from '../helpers/wait.ts';

/** A small headless VmSpec as the inventory would report it; `over` sets what a test cares about. */
export function testSpec(over: Partial<VmSpec> = {}): VmSpec {
  const name = over.name ?? 'web';
  return {
    name,
    flake: '/Users/me/vms',
    drvPath: `/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-${name}.drv`,
    system: 'aarch64-linux',
    kernelParams: ['console=hvc0'],
    cpus: 1,
    memoryMiB: 512,
    macAddress: null,
    rosetta: false,
    shares: [],
    graphics: false,
    resolution: null,
    mountHostNixStore: false,
    ssh: { enabled: true, port: 22, user: 'root' },
    ...over,
  };
}

/** The simulator executable (the agent finds it through NIXVM_VFKIT). */
export const VFKIT_SIM = path.join(path.dirname(fileURLToPath(import.meta.url)), 'vfkit');

/**
 * A directory shaped like a NixOS toplevel (`<hash>-nixos-system-<host>-<version>`) with
 * non-empty kernel, initrd and init files, as vfkit opens the kernel and reads its first bytes.
 */
export function makeClosure(parent: string, hostname = 'web'): string {
  const dir = path.join(parent, `0123456789abcdfghijklmnpqrsvwxyz-nixos-system-${hostname}-24.05.20240601.abcdef0`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'kernel'), Buffer.alloc(4096, 1));
  fs.writeFileSync(path.join(dir, 'initrd'), Buffer.alloc(1024, 2));
  fs.writeFileSync(path.join(dir, 'init'), '#!/bin/sh\n');
  return dir;
}

export interface RestReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request to vfkit's REST API on a unix socket (or `tcp:host:port`), answered within `timeoutMs`. */
export function restCall(
  socket: string,
  method: string,
  urlPath: string,
  body?: string,
  timeoutMs = 5000,
): Promise<RestReply> {
  return new Promise((resolve, reject) => {
    const target = socket.startsWith('tcp:')
      ? { host: socket.split(':')[1], port: Number(socket.split(':')[2]) }
      : { socketPath: socket };
    const req = http.request(
      {
        ...target,
        method,
        path: urlPath,
        headers: body !== undefined ? { 'Content-Type': 'application/json' } : {},
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(new Error(`no answer to ${method} ${urlPath} on ${socket} within ${timeoutMs} ms`)),
    );
    req.on('error', reject);
    req.end(body);
  });
}

export interface SimProcess extends Watched {
  child: ChildProcess;
  pid: number;
  /** Settles once it has exited and its output is read. */
  exited: Promise<Exit>;
  stdout(): string;
  stderr(): string;
}

/** Spawn `argv` (program first) with extra environment; stdin is /dev/null like a detached vfkit's. */
export function spawnSim(argv: string[], env: Record<string, string> = {}, cwd?: string): SimProcess {
  const child = spawn(argv[0]!, argv.slice(1), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd,
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return {
    child,
    pid: child.pid!,
    name: `the vfkit simulator (pid ${child.pid})`,
    exited,
    // Its log lines are on stderr; the REST requests it served, on stdout.
    output: () => `${err}${out ? `--- stdout:\n${tail(out, 1000)}` : ''}`,
    stdout: () => out,
    stderr: () => err,
  };
}

/** The VM's state string from GET /vm/state; throws (saying why) while the socket is not up. */
export async function simState(socket: string): Promise<string> {
  const r = await restCall(socket, 'GET', '/vm/state');
  if (r.status !== 200) throw new Error(`GET /vm/state on ${socket} answered ${r.status}: ${r.body}`);
  return (JSON.parse(r.body) as { state: string }).state;
}

/**
 * Be the agent's console reader for a simulator started without an agent: once its REST API names
 * the pty, relay it into `logFile` with the agent's own ConsoleRelay. Resolves with the relay, or
 * null when the simulator ended first (a refused configuration).
 */
export async function relayConsole(p: SimProcess, restSocket: string, logFile: string): Promise<ConsoleRelay | null> {
  let gone = false;
  void p.exited.then(() => (gone = true));
  while (!gone) {
    try {
      const insp = JSON.parse((await restCall(restSocket, 'GET', '/vm/inspect')).body) as {
        devices?: Array<{ kind?: string; ptyName?: string }>;
      };
      const pty = insp.devices?.find((d) => d.kind === 'virtioserial' && d.ptyName)?.ptyName;
      if (!pty) return null;
      const relay = new ConsoleRelay('sim', pty, logFile, () => {});
      await relay.open();
      return relay;
    } catch {
      await Promise.race([p.exited, new Promise((r) => setTimeout(r, 20))]);
    }
  }
  return null;
}
