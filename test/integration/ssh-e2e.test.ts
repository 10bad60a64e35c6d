/**
 * `nixvm ssh` end to end, with real programs everywhere but the hypervisor: a real daemon, the
 * seed's builder-vm (nixpkgs' nix-builder-vm profile: sshd reading `/var/keys/%u_ed25519.pub`, a
 * fixed host key in its closure) on the simulator, whose vsock socket hands each connection to a
 * real OpenSSH `sshd -i`; real ssh with nixvm's generated key, its known_hosts and `nixvm proxy`
 * as the ProxyCommand (also by the VM's name). No IP is involved until the last test: the
 * simulator's leases point nowhere, then, for a guest whose sshd is not on vsock, at a loopback
 * address of its own where that sshd listens (the IPv4 fallback).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFixture, seedWithOlderSystemd, type FlakeCopy } from '../helpers/fixtures.ts';
import { SIMULATOR } from '../helpers/agent.ts';
import { loopbackIp } from '../helpers/builder-fixture.ts';
import { killVfkitsUnder } from '../helpers/reap.ts';
import { settles, waitFor, watchChild, type Watched } from '../helpers/wait.ts';
import { rootOnly } from '../helpers/users.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));
const VM = 'builder-vm';
// sshd -i runs as the user running the tests and can only log that user in.
const noApply = rootOnly(
  'ssh-e2e.test.ts',
  'the in-place apply (nix copy into the guest, then switch, as root)',
  'sshd -i runs as the user running the tests and logs root in only when that is root',
);
const USER = os.userInfo().username;
const SSHD = '/usr/sbin/sshd';

let flake: FlakeCopy;
let root: string;
let env: NodeJS.ProcessEnv;
let daemon: ChildProcess | null = null;
let daemonW: Watched;

const nixvm = (args: string[], opts: { timeout?: number } = {}) =>
  execa(process.execPath, [BIN, ...args], { env, reject: false, timeout: opts.timeout ?? 120_000, stdin: 'ignore' });
const vmDir = () => path.join(root, 'state', 'vms', VM);

async function startDaemon(extra: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'daemon', '--flake', flake.dir], {
    env: { ...env, ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  daemonW = watchChild(child, 'the daemon', { stdout: true });
  await waitFor(() => daemonW.output().includes('listening on'), { what: 'the daemon to listen', process: daemonW });
  return child;
}
const said = (r: { stdout: string; stderr: string; exitCode?: number }) =>
  `exit ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\ndaemon: ${daemonW.output().slice(-3000)}`;

beforeAll(async () => {
  if (!fs.existsSync(SSHD)) throw new Error(`${SSHD} is missing: install openssh-server (npm test's pretest does).`);
  // sshd run as root wants its privilege-separation directory, which its service unit would make.
  if (process.getuid?.() === 0) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  flake = await copyFixture('seed-exact');
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-ssh-')));
  // The builder sets useHostCerts; a minimal machine (CI's Debian roots) has no CA bundle of its own.
  const certs = path.join(root, 'host-ca-bundle.crt');
  fs.writeFileSync(certs, '-----BEGIN CERTIFICATE-----\nnixvm test bundle\n-----END CERTIFICATE-----\n');
  env = {
    ...process.env,
    NIX_SSL_CERT_FILE: certs,
    NIXVM_STATE_DIR: root,
    NIXVM_VFKIT: SIMULATOR,
    NIXVM_LEASES_FILE: path.join(root, 'dhcpd_leases'),
    NIXVM_SIM_BOOT_MS: '200',
  };
  daemon = await startDaemon();
  const set = await nixvm(['config', 'set', `sshUser.${VM}`, USER]);
  expect(set.exitCode, said(set)).toBe(0);
}, 180_000);

afterAll(async () => {
  await nixvm(['stop', VM]);
  daemon?.kill('SIGTERM');
  killVfkitsUnder(path.join(root, 'state', 'vms'));
  fs.rmSync(root, { recursive: true, force: true });
  flake.remove();
});

describe('nixvm ssh into the seed builder, over vsock', () => {
  it('starts the stopped VM, waits for its sshd, runs the command with the key nixvm made, and says the route', async () => {
    const r = await nixvm(['ssh', '-v', VM, '--', 'echo', 'ok', 'from', '$(hostname)']);
    expect(r.exitCode, said(r)).toBe(0);
    // The remote shell ran the command; this host's name, since the "guest" sshd runs here.
    expect(r.stdout.trim()).toBe(`ok from ${os.hostname()}`);
    expect(r.stderr).toContain(`nixvm: ssh to ${VM} over vsock (${path.join(vmDir(), 'ssh.sock')}) as ${USER}`);
    // nix-builder-vm reads /var/keys/%u_ed25519.pub from the $KEYS share: nixvm's key is there,
    // for the profile's own user and for the one the setting names.
    const keys = path.join(vmDir(), 'keys');
    const pub = fs.readFileSync(path.join(keys, 'nixvm_ed25519.pub'), 'utf8');
    expect(pub).toMatch(/^ssh-ed25519 \S+ nixvm@builder-vm\n$/);
    expect(fs.readFileSync(path.join(keys, 'builder_ed25519.pub'), 'utf8')).toBe(pub);
    expect(fs.readFileSync(path.join(keys, `${USER}_ed25519.pub`), 'utf8')).toBe(pub);
    expect(fs.statSync(path.join(keys, 'nixvm_ed25519')).mode & 0o777).toBe(0o600);
    // The closure's fixed host key is pinned under the VM's alias.
    const hostPub = fs.readFileSync(flake.file('keys/ssh_host_ed25519_key.pub'), 'utf8').split(' ');
    expect(fs.readFileSync(path.join(vmDir(), 'known_hosts'), 'utf8')).toBe(
      `nixvm-builder-vm ${hostPub[0]} ${hostPub[1]}\n`,
    );
  }, 180_000);

  it("passes the remote command's exit code on", async () => {
    const r = await nixvm(['ssh', VM, '--', 'exit', '7']);
    expect(r.exitCode, said(r)).toBe(7);
  });

  it('works through the ssh config nixvm writes and through the command it prints, with plain ssh', async () => {
    const config = path.join(root, 'state', 'ssh_config');
    await waitFor(() => fs.existsSync(config) && fs.readFileSync(config, 'utf8').includes('ProxyCommand'), {
      what: 'the ssh config to name the vsock route',
      process: daemonW,
    });
    const viaConfig = await execa('ssh', ['-F', config, 'nixvm-builder-vm', 'echo', 'via-config'], {
      reject: false,
      timeout: 60_000,
      stdin: 'ignore',
    });
    expect(viaConfig.exitCode, said(viaConfig)).toBe(0);
    expect(viaConfig.stdout.trim()).toBe('via-config');
    const cmd = await nixvm(['ssh-command', VM]);
    expect(cmd.exitCode, said(cmd)).toBe(0);
    expect(cmd.stdout).not.toContain('StrictHostKeyChecking=no');
    const pasted = await execa('/bin/sh', ['-c', `${cmd.stdout.trim()} echo pasted`], {
      reject: false,
      timeout: 60_000,
      stdin: 'ignore',
    });
    expect(pasted.exitCode, said(pasted)).toBe(0);
    expect(pasted.stdout.trim()).toBe('pasted');
  });

  it('nixvm proxy <vm> finds the vsock socket by the VM’s name: plain ssh through it, and a wrong port said', async () => {
    const keys = path.join(vmDir(), 'keys');
    const r = await execa(
      'ssh',
      [
        '-F',
        '/dev/null',
        '-o',
        `ProxyCommand=${process.execPath} ${BIN} proxy ${VM}`,
        '-o',
        'HostKeyAlias=nixvm-builder-vm',
        '-o',
        `UserKnownHostsFile=${path.join(vmDir(), 'known_hosts')}`,
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        `IdentityFile=${path.join(keys, 'nixvm_ed25519')}`,
        '-o',
        'BatchMode=yes',
        '-l',
        USER,
        'nixvm-builder-vm',
        'echo',
        'by-name',
      ],
      { env, reject: false, timeout: 60_000, stdin: 'ignore' },
    );
    expect(r.exitCode, said(r)).toBe(0);
    expect(r.stdout.trim()).toBe('by-name');
    const port = await nixvm(['proxy', VM, '2222']);
    expect(port.exitCode, said(port)).toBe(2);
    expect(port.stderr).toContain(`nixvm attaches only the guest's vsock port 22 (for sshd), not "2222".`);
    const none = await nixvm(['proxy', 'no-such-vm']);
    expect(none.exitCode, said(none)).toBe(4);
  });

  it('explains a host key that is not the pinned one, with the command that forgets it', async () => {
    const file = path.join(vmDir(), 'known_hosts');
    const pinned = fs.readFileSync(file, 'utf8');
    // Another key under the alias: what a rebuilt VM with new keys looks like from here.
    fs.writeFileSync(
      file,
      'nixvm-builder-vm ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJBWcxb/Blaqt1auOtE+F8QUWrUotiC5qBJ+UuEWdVCb\n',
    );
    try {
      const r = await nixvm(['ssh', VM, '--', 'true']);
      expect(r.exitCode, said(r)).toBe(255);
      expect(r.stderr).toContain(`the host key of ${VM} is not the one nixvm saw before`);
      expect(r.stderr).toContain(`ssh-keygen -R nixvm-builder-vm -f ${file}`);
    } finally {
      fs.writeFileSync(file, pinned);
    }
  });

  it.skipIf(noApply !== null)(
    'applies a closure-only change in place: the closure copied into its own store (nix copy over the channel), then switched',
    async () => {
      const host = flake.file('hosts/builder-vm.nix');
      // The fixture's switch records its call and whether the closure was in the guest's own store then.
      const switchLog = path.join(root, 'switch.log');
      const guestStore = `${path.join(vmDir(), 'store-writable.img')}.sim-store`;
      fs.writeFileSync(
        host,
        fs
          .readFileSync(host, 'utf8')
          .replace('  environment.etc = {', '  environment.etc = {\n    "motd".text = "applied";')
          .replace(
            '  system.stateVersion',
            `  nixvmTest = { switchLog = ${JSON.stringify(switchLog)}; switchStore = ${JSON.stringify(guestStore)}; };\n  system.stateVersion`,
          ),
      );
      const ls = () => nixvm(['status', VM, '--json']);
      await waitFor(async () => JSON.parse((await ls()).stdout).stale === true, {
        what: 'the builder to be stale after the edit',
        process: daemonW,
      });
      const before = JSON.parse((await ls()).stdout);
      const r = await nixvm(['apply', VM]);
      expect(r.exitCode, said(r)).toBe(0);
      expect(r.stdout).toMatch(/^builder-vm: switched in place/m);
      const after = JSON.parse((await ls()).stdout);
      expect(after).toMatchObject({ state: 'running', stale: false, pid: before.pid });
      expect(after.switchedOutPath).toBe(after.builtOutPath);
      // The copy came first: when the switch ran, its closure was in the guest's store already.
      expect(fs.readFileSync(switchLog, 'utf8')).toBe(
        `${after.switchedOutPath} switch\nthe closure was in the guest store\n`,
      );
      // apply.log and the command's own output: nix copy's lines, then the switch's, as they came.
      // (2.8 and 2.34 name the store `ssh-ng://nixvm-builder-vm`; 2.26 prints `ssh-ng://`, no host.)
      const copied = (l: string) =>
        l === `copying path '${after.switchedOutPath}' to 'ssh-ng://nixvm-builder-vm'...` ||
        l === `copying path '${after.switchedOutPath}' to 'ssh-ng://'...`;
      const applyLog = fs.readFileSync(path.join(root, 'logs', 'vms', VM, 'apply.log'), 'utf8').split('\n');
      const copiedAt = applyLog.findIndex(copied);
      expect(copiedAt, applyLog.join('\n')).toBeGreaterThan(0);
      expect(applyLog.indexOf('activating the configuration...')).toBeGreaterThan(copiedAt);
      const out = r.stdout.split('\n');
      const at = (l: string) => out.indexOf(l);
      const copiedOut = out.findIndex((l) => l.startsWith(`${VM} | `) && copied(l.slice(`${VM} | `.length)));
      expect(copiedOut, said(r)).toBeGreaterThanOrEqual(0);
      expect(at(`${VM} | activating the configuration...`), said(r)).toBeGreaterThan(copiedOut);
      expect(out.findIndex((l) => l.startsWith(`${VM}: switched in place`))).toBeGreaterThan(
        at(`${VM} | activating the configuration...`),
      );
      // The guest's store (the simulator keeps it beside the writable store image) has the closure.
      const info = await execa('nix', ['path-info', '--store', `local?root=${guestStore}`, after.switchedOutPath], {
        reject: false,
        env: {
          ...process.env,
          NIX_CONFIG: `${process.env.NIX_CONFIG ?? ''}\nexperimental-features = nix-command flakes`,
        },
      });
      expect(info.exitCode, info.stderr).toBe(0);
      expect(info.stdout.trim()).toBe(after.switchedOutPath);
    },
    180_000,
  );

  it('refuses with --no-start, and tells a VM without sshd to use the console', async () => {
    const stop = await nixvm(['stop', VM]);
    expect(stop.exitCode, said(stop)).toBe(0);
    const r = await nixvm(['ssh', '--no-start', VM, '--', 'true']);
    expect(r.exitCode, said(r)).toBe(1);
    expect(r.stderr).toContain(`${VM} is stopped; start it with \`nixvm start ${VM}\` (or drop --no-start).`);
    const m = await nixvm(['ssh', 'minimal-vm']);
    expect(m.exitCode, said(m)).toBe(1);
    expect(m.stderr).toContain('minimal-vm does not run an ssh server');
    expect(m.stderr).toContain('use `nixvm console minimal-vm`');
  });

  it('waits no longer than --timeout for a guest whose sshd is not on vsock (systemd older than 256), and says for what', async () => {
    // The same builder on systemd 255: no systemd-ssh-generator, so nothing listens on vsock, and
    // the simulator's addresses lead nowhere.
    seedWithOlderSystemd(flake.dir);
    const re = await nixvm(['reevaluate']);
    expect(re.exitCode, said(re)).toBe(0);
    const started = Date.now();
    const r = await nixvm(['ssh', VM, '--timeout', '3', '--', 'true']);
    expect(r.exitCode, said(r)).toBe(1);
    expect(r.stderr).toMatch(/builder-vm did not answer ssh within 3 s \(nixvm waited for sshd on vsock or /);
    expect(r.stderr).toContain('see its console with `nixvm console builder-vm`, or wait longer with --timeout');
    // The deadline counts from the VM running, not from the start (the build and boot come first).
    expect(Date.now() - started).toBeGreaterThan(3000);
  }, 180_000);

  it('falls back to the IPv4 lease when nothing answers on vsock, and -v says which way it went', async () => {
    // Still the builder on systemd 255 (the test before): no sshd on vsock. Now the simulator
    // leases it a loopback address of its own, where its sshd listens.
    const stop = await nixvm(['stop', VM]);
    expect(stop.exitCode, said(stop)).toBe(0);
    daemon!.kill('SIGTERM');
    await settles(daemonW.exited, { what: 'the daemon to stop' });
    const ip = loopbackIp();
    daemon = await startDaemon({ NIXVM_SIM_IP: ip });
    const r = await nixvm(['ssh', '-v', VM, '--', 'echo', 'over', 'ip']);
    expect(r.exitCode, said(r)).toBe(0);
    expect(r.stdout.trim()).toBe('over ip');
    expect(r.stderr).toContain(`nixvm: ssh to ${VM} over IPv4 ${ip} as ${USER}`);
    expect(r.stderr).not.toContain('over vsock');
    // The pinned host key holds whichever way: one alias in one known_hosts.
    const hostPub = fs.readFileSync(flake.file('keys/ssh_host_ed25519_key.pub'), 'utf8').split(' ');
    expect(fs.readFileSync(path.join(vmDir(), 'known_hosts'), 'utf8')).toBe(
      `nixvm-builder-vm ${hostPub[0]} ${hostPub[1]}\n`,
    );
  }, 180_000);
});
