/**
 * Helpers for tests that drive the vfkit simulator: where it is, a fake NixOS closure for it to
 * "boot", a REST call over its socket, and a spawn that keeps its output and exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { VmSpec } from '../../src/api/types.ts';

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

/** One HTTP request to vfkit's REST API on a unix socket (or `tcp:host:port`). */
export function restCall(socket: string, method: string, urlPath: string, body?: string): Promise<RestReply> {
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
    req.on('error', reject);
    req.end(body);
  });
}

export interface SimProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
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
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, pid: child.pid!, exited, stdout: () => out, stderr: () => err };
}

/** Poll `fn` until it returns a truthy value (or throw after `timeoutMs`). */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The VM's state string from GET /vm/state, or null while the socket is not up. */
export async function simState(socket: string): Promise<string | null> {
  try {
    const r = await restCall(socket, 'GET', '/vm/state');
    return (JSON.parse(r.body) as { state: string }).state;
  } catch {
    return null;
  }
}
