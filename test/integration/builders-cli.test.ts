/**
 * `nixvm builder` as a user runs it, against a real daemon: what builds where, `builder use`
 * waiting until nix reaches the builder VM, `ls` and `doctor` saying it, and `builder off` after
 * the agent was killed (SIGKILL): the VM runs on, a new agent checks it again, and off undoes
 * exactly what nixvm did.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIMULATOR } from '../helpers/agent.ts';
import {
  caBundle,
  FOREIGN,
  linuxBuilderStandIn,
  loopbackIp,
  nixConfigWithCache,
  publishToCache,
  seedWithForeignVm,
  sshdReady,
} from '../helpers/builder-fixture.ts';
import type { FlakeCopy } from '../helpers/fixtures.ts';
import { killVfkitsUnder } from '../helpers/reap.ts';
import { waitFor, watchChild, type Watched } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));

let flake: FlakeCopy;
let standIn: FlakeCopy;
let cache: string;
let root: string;
let env: NodeJS.ProcessEnv;
let daemon: ChildProcess | null = null;
let daemonW: Watched;

const nixvm = (args: string[]) =>
  execa(process.execPath, [BIN, ...args], { env, reject: false, timeout: 180_000, stdin: 'ignore' });
const said = (r: { stdout: string; stderr: string; exitCode?: number }) =>
  `exit ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\ndaemon: ${daemonW.output().slice(-3000)}`;
const machinesFile = () => path.join(root, 'state', 'builders', 'machines');

async function startDaemon(): Promise<void> {
  daemon = spawn(process.execPath, [BIN, 'daemon', '--flake', flake.dir], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  daemonW = watchChild(daemon, 'the daemon', { stdout: true });
  await waitFor(() => daemonW.output().includes('listening on'), { what: 'the daemon to listen', process: daemonW });
}

beforeAll(async () => {
  sshdReady();
  flake = await seedWithForeignVm();
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-builder-cli-')));
  // nixpkgs' prebuilt Linux builder (its stand-in) in a binary cache, for `builder setup`.
  standIn = await linuxBuilderStandIn(`${process.pid}-${Date.now()}-cli`);
  cache = path.join(root, 'binary-cache');
  publishToCache(standIn, cache);
  env = {
    ...process.env,
    NIX_CONFIG: nixConfigWithCache(cache),
    HOME: root,
    NIX_SSL_CERT_FILE: caBundle(root),
    NIXVM_STATE_DIR: root,
    NIXVM_VFKIT: SIMULATOR,
    NIXVM_LEASES_FILE: path.join(root, 'dhcpd_leases'),
    NIXVM_SIM_BOOT_MS: '200',
    NIXVM_SIM_IP: loopbackIp(),
  };
  await startDaemon();
}, 180_000);

afterAll(async () => {
  await nixvm(['stop', 'builder-vm']);
  await nixvm(['stop', 'linux-builder']);
  daemon?.kill('SIGTERM');
  killVfkitsUnder(path.join(root, 'state', 'vms'));
  fs.rmSync(root, { recursive: true, force: true });
  flake.remove();
  standIn?.remove();
});

describe('nixvm builder', () => {
  it('says what builds here and that nothing builds the foreign VM, in builder, ls and doctor', async () => {
    const b = await nixvm(['builder']);
    expect(b.exitCode, said(b)).toBe(0);
    expect(b.stdout).toMatch(/^This machine builds: x86_64-linux/);
    expect(b.stdout).toContain(
      "No VM is this machine's builder; `nixvm builder use <vm>` makes one, or `nixvm builder setup` runs nixpkgs' prebuilt one.",
    );
    const ls = await nixvm(['ls']);
    expect(ls.stdout).toMatch(new RegExp(`minimal-vm [^\\n]*nothing here builds ${FOREIGN}`));
    const doc = await nixvm(['doctor', '--json']);
    const check = (JSON.parse(doc.stdout) as { checks: { id: string; status: string; fix: string }[] }).checks.find(
      (c) => c.id === 'builder',
    )!;
    expect(check.status).toBe('fail');
    expect(check.fix).toContain('nixvm builder use <vm>');
  });

  it('`builder use` shows what changes, starts the VM and waits until nix reaches it', async () => {
    const r = await nixvm(['builder', 'use', 'builder-vm', '--timeout', '150']);
    expect(r.exitCode, said(r)).toBe(0);
    expect(r.stdout).toContain("nixvm's own builds pass the builder VM to nix on `--option builders`");
    expect(r.stdout).toContain('For your own `nix build` to use it too, add this line to ~/.config/nix/nix.conf');
    expect(r.stdout).toMatch(
      /Builder VM: "builder-vm", ready: nix builds aarch64-linux, riscv64-linux on "builder-vm"/,
    );
    expect(r.stdout).toMatch(
      /builder ssh-ng:\/\/root@127\.[\d.]+\?ssh-key=\S+ \(nixvm's builder VM "builder-vm"\): aarch64-linux, riscv64-linux, 8 jobs/,
    );
    const ls = await nixvm(['ls']);
    expect(ls.stdout).not.toContain(`nothing here builds ${FOREIGN}`);
    const status = await nixvm(['status', 'minimal-vm']);
    expect(status.stdout).toMatch(/builds on: +ssh-ng:\/\/root@127\./);
  });

  it('after the agent is killed, the VM runs on; `builder off` from a new agent undoes it', async () => {
    const line = fs.readFileSync(machinesFile(), 'utf8');
    expect(line).toContain('ssh-ng://root@');
    daemon!.kill('SIGKILL');
    await daemonW.exited;
    // Nix may go on using it meanwhile: the VM still runs and the line stays.
    expect(fs.readFileSync(machinesFile(), 'utf8')).toBe(line);
    await startDaemon();
    const off = await nixvm(['builder', 'off']);
    expect(off.exitCode, said(off)).toBe(0);
    expect(off.stdout).toContain("No VM is this machine's builder now.");
    expect(fs.readFileSync(machinesFile(), 'utf8')).not.toContain('ssh-ng://root@');
    const s = await nixvm(['builder', '--json']);
    expect(JSON.parse(s.stdout)).toMatchObject({ vm: null, status: 'off' });
    const ls = await nixvm(['ls']);
    expect(ls.stdout).toMatch(/builder-vm +running/);
    expect(ls.stdout).toContain(`nothing here builds ${FOREIGN}`);
  });

  it('`builder setup` says what it downloads and asks; with --yes the prebuilt builder is the builder', async () => {
    // builder-vm leased the same loopback address: stop it, as a second builder would be refused anyway.
    await nixvm(['stop', 'builder-vm']);
    const ask = await nixvm(['builder', 'setup', '--nixpkgs', standIn.dir]);
    expect(ask.exitCode, said(ask)).toBe(2);
    expect(ask.stdout).toMatch(
      /^Setting up the Linux builder downloads \d+ store paths? of nixpkgs' darwin.linux-builder-vz/m,
    );
    expect(ask.stdout).toContain(`from file://${cache}`);
    expect(ask.stderr).toContain('This downloads the builder; run it in a terminal to be asked, or pass --yes.');
    const r = await nixvm(['builder', 'setup', '--nixpkgs', standIn.dir, '--yes']);
    expect(r.exitCode, said(r)).toBe(0);
    expect(r.stdout).toMatch(/Builder VM: "linux-builder", ready/);
    const ls = await nixvm(['ls']);
    expect(ls.stdout).toMatch(/linux-builder +running/);
    expect(ls.stdout).not.toContain(`nothing here builds ${FOREIGN}`);
  });
});
