import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  MAX_SOCKET_PATH_BYTES,
  placeRuntimePaths,
  prepareRuntimeDirs,
  runtimePaths,
  usesShortSocketDir,
  vsockPathUsable,
} from '../../src/core/vm/runtime-paths.ts';
import { vmDirName } from '../../src/host/names.ts';

const uid = process.getuid!();
const cleanup: string[] = [];
afterEach(() => {
  for (const p of cleanup.splice(0)) fs.rmSync(p, { recursive: true, force: true });
});

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-rp-'));
  cleanup.push(d);
  return d;
}

describe('runtimePaths', () => {
  it('keeps everything in the per-VM state and log dirs when the socket path is short', () => {
    const root = tmp();
    const p = runtimePaths(path.join(root, 'state'), path.join(root, 'logs'), 'web');
    expect(p).toEqual({
      dir: path.join(root, 'state/vms/web'),
      pidfile: path.join(root, 'state/vms/web/vfkit.pid'),
      restSocket: path.join(root, 'state/vms/web/rest.sock'),
      // The vsock socket for ssh goes beside the REST socket.
      sshSocket: path.join(root, 'state/vms/web/ssh.sock'),
      logDir: path.join(root, 'logs/vms/web'),
      consoleLog: path.join(root, 'logs/vms/web/console.log'),
      bootRecord: path.join(root, 'state/vms/web/boot.json'),
    });
    expect(usesShortSocketDir(p)).toBe(false);
  });

  it('moves the socket to a private 0700 dir under a long home, with a short stable name', () => {
    const home = path.join(tmp(), 'Users', 'a-very-long-user-name-'.repeat(3));
    const state = path.join(home, 'Library', 'Application Support', 'NixVM');
    const p = runtimePaths(state, path.join(home, 'Library', 'Logs', 'NixVM'), 'builder-vm');
    expect(Buffer.byteLength(path.join(p.dir, 'rest.sock'))).toBeGreaterThan(MAX_SOCKET_PATH_BYTES);
    expect(p.dir).toBe(path.join(state, 'vms', 'builder-vm'));
    expect(path.dirname(p.restSocket)).toBe(`/tmp/nixvm-${uid}`);
    expect(Buffer.byteLength(p.restSocket)).toBeLessThanOrEqual(MAX_SOCKET_PATH_BYTES);
    expect(usesShortSocketDir(p)).toBe(true);
    const st = fs.lstatSync(`/tmp/nixvm-${uid}`);
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o777).toBe(0o700);
    expect(st.uid).toBe(uid);
    // Same VM, same path (an agent restart finds it again); another VM or state dir, another path.
    expect(runtimePaths(state, '/logs', 'builder-vm').restSocket).toBe(p.restSocket);
    expect(runtimePaths(state, '/logs', 'other-vm').restSocket).not.toBe(p.restSocket);
    expect(runtimePaths(`${state}2`, '/logs', 'builder-vm').restSocket).not.toBe(p.restSocket);
  });

  it('moves the socket when the state dir has characters vfkit’s URL parser would misread', () => {
    const p = runtimePaths(path.join(tmp(), '100%'), '/logs', 'web');
    expect(path.dirname(p.restSocket)).toBe(`/tmp/nixvm-${uid}`);
  });

  it('never uses a fallback dir that is a symlink or belongs to someone else, and says why when nothing else works', () => {
    const longState = path.join(tmp(), 'x'.repeat(120));
    // A uid of our choosing stands in for "us" so the planted dirs can be ours to make; one per
    // test process, as suites running at the same time share /tmp.
    const planted = 3_000_000_000 + process.pid * 2;
    const target = tmp();
    fs.rmSync(`/tmp/nixvm-${planted}`, { recursive: true, force: true });
    fs.symlinkSync(target, `/tmp/nixvm-${planted}`);
    cleanup.push(`/tmp/nixvm-${planted}`);
    const viaLink = placeRuntimePaths(longState, '/logs', 'web', { uid: planted });
    expect(viaLink.problem).toMatch(/^VM "web" cannot start: .*not a plain directory/);
    expect(path.dirname(viaLink.paths.restSocket)).not.toBe(`/tmp/nixvm-${planted}`);

    const foreign = planted + 1;
    fs.rmSync(`/tmp/nixvm-${foreign}`, { recursive: true, force: true });
    fs.mkdirSync(`/tmp/nixvm-${foreign}`, { mode: 0o700 });
    cleanup.push(`/tmp/nixvm-${foreign}`);
    const foreignPaths = placeRuntimePaths(longState, '/logs', 'web', { uid: foreign });
    expect(foreignPaths.problem).toMatch(/belongs to another user/);
    expect(path.dirname(foreignPaths.paths.restSocket)).not.toBe(`/tmp/nixvm-${foreign}`);
  });

  it('gives VM names that are not plain file names their own safe directory', () => {
    expect(vmDirName('web-1.dev')).toBe('web-1.dev');
    const odd = ['a/b', '..', '.hidden', 'a b', 'ä', 'x'.repeat(300)].map(vmDirName);
    for (const n of odd) {
      expect(n).toMatch(/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/);
      expect(Buffer.byteLength(n)).toBeLessThan(64);
    }
    expect(new Set(odd).size).toBe(odd.length);
    expect(vmDirName('a/b')).not.toBe(vmDirName('a_b'));
  });
});

describe('the ssh vsock socket', () => {
  it('sits beside the REST socket when vfkit reads its path as written, else in a short private place', () => {
    const root = tmp();
    expect(runtimePaths(path.join(root, 'state'), path.join(root, 'logs'), 'web').sshSocket).toBe(
      path.join(root, 'state/vms/web/ssh.sock'),
    );
    // macOS's own state folder has a space, which vfkit's url.Parse(…).EscapedPath() turns into %20.
    const spaced = path.join(root, 'Application Support', 'NixVM');
    const p = runtimePaths(spaced, path.join(root, 'logs'), 'web', { tmpdir: root });
    expect(p.restSocket).toBe(path.join(spaced, 'vms/web/rest.sock'));
    expect(p.sshSocket).toBeDefined();
    expect(p.sshSocket).not.toContain(' ');
    expect(vsockPathUsable(p.sshSocket!)).toBe(true);
    expect(path.basename(p.sshSocket!)).toMatch(/^[0-9a-f]{12}-ssh\.sock$/);
  });

  it('is usable only with the characters Go leaves alone in a URL path, and no comma', () => {
    expect(vsockPathUsable('/Users/me/.local/state/nixvm/vms/web/ssh.sock')).toBe(true);
    for (const bad of [
      '/a b/ssh.sock',
      '/a,b/ssh.sock',
      '/100%/ssh.sock',
      "/o'b/ssh.sock",
      '/ü/ssh.sock',
      '/a(b)/s.sock',
    ])
      expect(vsockPathUsable(bad), bad).toBe(false);
    expect(vsockPathUsable(`/${'x'.repeat(110)}`)).toBe(false);
  });
});

describe('prepareRuntimeDirs', () => {
  it('creates the state dir 0700 and the log dir', () => {
    const root = tmp();
    const p = runtimePaths(path.join(root, 'state'), path.join(root, 'logs'), 'web');
    prepareRuntimeDirs(p);
    expect(fs.statSync(p.dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(p.logDir).isDirectory()).toBe(true);
    // Idempotent, and tightens a dir someone loosened.
    fs.chmodSync(p.dir, 0o755);
    prepareRuntimeDirs(p);
    expect(fs.statSync(p.dir).mode & 0o777).toBe(0o700);
  });
});
