/**
 * The simulated guest's sshd: a real OpenSSH `sshd -i` per connection (inetd mode, run as the
 * user running the tests), configured from what the closure says a NixOS guest would do:
 *
 * - `etc/ssh/sshd_config`: whether sshd runs at all, its AuthorizedKeysFile entries (a path in a
 *   virtio-fs mount is read from the host directory behind that share, as the guest would; one
 *   in a directory a unit filled at boot, such as copy-builder-keys' /run/builder-keys, from the
 *   run's copy of it; any other path finds nothing, as on a guest whose root is an empty tmpfs);
 * - `etc/ssh/ssh_host_ed25519_key`: a fixed host key (nixpkgs' nix-builder-vm ships one); without
 *   it the guest makes a new one at every boot (its root is a tmpfs);
 * - `etc/systemd/system-generators/systemd-ssh-generator` (systemd ≥ 256): sshd also listens on
 *   AF_VSOCK port 22, which is what vfkit's `virtio-vsock,…,connect` device reaches; so does a
 *   socket unit accepting on a vsock port for `sshd -i` (vz-vm.nix's vzvm-ssh, guest-units.ts);
 * - a writable store disk: the guest's own Nix store (a local store beside the image, for `nix copy`);
 * - `etc/tmpfiles.d/*.conf` with an `f^ … ssh.authorized_keys.root` rule: the credential on the
 *   kernel command line (`systemd.set_credential_binary=ssh.authorized_keys.root:<base64>`)
 *   becomes root's authorized_keys.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { sshVsockPorts } from './guest-units.ts';
import { log } from './log.ts';

export interface GuestSshd {
  /** The sshd_config to run `sshd -i -f` with. */
  configFile: string;
  /** The vsock ports sshd answers on (22 from systemd-ssh-generator; socket units'). */
  vsockPorts: number[];
  /** Its TCP port on the guest's addresses (sshd_config's Port). */
  port: number;
}

/** The sshd binary (Debian's openssh-server); NIXVM_SIM_SSHD overrides it. */
export function sshdProgram(env: NodeJS.ProcessEnv = process.env): string {
  return env.NIXVM_SIM_SSHD || '/usr/sbin/sshd';
}

/**
 * The start of an unprivileged `sshd -i` config: this host key, keys only (root too), and these
 * authorized_keys files (none: every key refused). Shared with the loopback builder's sshd.
 */
export function sshdConfigHead(hostKey: string, authorizedKeysFiles: string[]): string[] {
  return [
    `HostKey "${hostKey}"`,
    'PidFile none',
    'UsePAM no',
    'StrictModes no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    `AuthorizedKeysFile ${authorizedKeysFiles.length ? authorizedKeysFiles.map((f) => `"${f}"`).join(' ') : 'none'}`,
  ];
}

function readOr(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** The credential's value from the kernel command line, decoded. */
export function credentialFromCmdline(cmdline: string, name: string): string | null {
  for (const word of cmdline.split(/\s+/)) {
    const m = /^systemd\.set_credential_binary=([^:]+):(.*)$/.exec(word);
    if (m && m[1] === name) return Buffer.from(m[2]!, 'base64').toString('utf8');
    const p = /^systemd\.set_credential=([^:]+):(.*)$/.exec(word);
    if (p && p[1] === name) return p[2]!;
  }
  return null;
}

/**
 * The guest's sshd at boot, or null when the closure runs none. `mounts` maps each guest directory
 * whose files sshd can read to the host directory holding them: the mount point of each virtio-fs
 * share (the directory vfkit shares there) and what units filled at boot (the run's copy). The
 * deepest one holding a path is the one read. `workDir` is the guest's private state (made
 * 0700): its host key when it has no fixed one, the credential file.
 */
export function bootSshd(
  toplevel: string,
  mounts: Map<string, string>,
  cmdline: string,
  workDir: string,
  guestStore: string | null = null,
): GuestSshd | null {
  const config = readOr(path.join(toplevel, 'etc', 'ssh', 'sshd_config'));
  if (config === null) return null;
  fs.mkdirSync(workDir, { recursive: true, mode: 0o700 });
  const hostKey = path.join(workDir, 'ssh_host_ed25519_key');
  fs.rmSync(hostKey, { force: true });
  fs.rmSync(`${hostKey}.pub`, { force: true });
  const fixed = readOr(path.join(toplevel, 'etc', 'ssh', 'ssh_host_ed25519_key'));
  if (fixed !== null) {
    // The store copy is world-readable; sshd insists on a private key file.
    fs.writeFileSync(hostKey, fixed, { mode: 0o600 });
  } else {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'root@guest', '-f', hostKey]);
    if (r.status !== 0) log('warning', `guest sshd: ssh-keygen failed: ${String(r.stderr)}`);
  }
  const files: string[] = [];
  for (const line of config.split('\n')) {
    const m = /^\s*AuthorizedKeysFile\s+(.*)$/.exec(line);
    if (!m) continue;
    for (const entry of m[1]!.trim().split(/\s+/)) {
      // A path under a mount (or a directory filled at boot): the host directory behind it.
      const at = [...mounts.keys()]
        .filter((target) => entry.startsWith(`${target}/`))
        .sort((a, b) => b.length - a.length)[0];
      if (at !== undefined) files.push(path.join(mounts.get(at)!, entry.slice(at.length + 1)));
    }
  }
  const tmpfiles = (() => {
    try {
      const dir = path.join(toplevel, 'etc', 'tmpfiles.d');
      return fs
        .readdirSync(dir)
        .map((f) => readOr(path.join(dir, f)) ?? '')
        .join('\n');
    } catch {
      return '';
    }
  })();
  const lines = sshdConfigHead(hostKey, files);
  // A guest with a writable store disk has a Nix store of its own, kept beside that disk image.
  // Its nix (`nix-daemon --stdio`: what ssh-ng reaches, for `nix copy` and remote builds) runs
  // with that store mounted over /nix in a mount namespace of its own, as a guest's /nix is its
  // own; it reads the closure's etc/nix/nix.conf (nix.settings: extra-platforms, features).
  // Every other command runs as before, with NIX_REMOTE naming that store as a chroot store.
  if (guestStore) {
    const nixConfDir = path.join(workDir, 'nix');
    fs.mkdirSync(nixConfDir, { recursive: true });
    fs.mkdirSync(path.join(guestStore, 'nix'), { recursive: true });
    const own = readOr(path.join(toplevel, 'etc', 'nix', 'nix.conf')) ?? '';
    fs.writeFileSync(
      path.join(nixConfDir, 'nix.conf'),
      // Offline (no substituters), and no sandbox or build users: this host's, not a guest's.
      `${own}\nexperimental-features = nix-command\nsandbox = false\nsubstituters =\nbuild-users-group =\n`,
    );
    const command = path.join(workDir, 'guest-command.sh');
    fs.writeFileSync(command, guestCommandScript(path.join(guestStore, 'nix')), { mode: 0o700 });
    // Quoted: the state folder may have spaces ("Application Support").
    // sshd gives sessions a clean environment: what the command script needs is set here.
    const mounts = process.env.NIXVM_SIM_PRIVATE_MOUNTS ? ' "NIXVM_SIM_PRIVATE_MOUNTS=1"' : '';
    lines.push(
      `SetEnv "NIX_REMOTE=local?root=${guestStore}" "NIX_CONF_DIR=${nixConfDir}"${mounts}`,
      `ForceCommand "${command}"`,
    );
  }
  const credential = credentialFromCmdline(cmdline, 'ssh.authorized_keys.root');
  if (credential !== null && /^f\^?\s+\/root\/\.ssh\/authorized_keys\s.*ssh\.authorized_keys\.root/m.test(tmpfiles)) {
    const file = path.join(workDir, 'root_authorized_keys');
    fs.writeFileSync(file, credential, { mode: 0o600 });
    lines.push('Match User root', `  AuthorizedKeysFile "${file}" ${files.map((f) => `"${f}"`).join(' ')}`);
  }
  const configFile = path.join(workDir, 'sshd_config');
  fs.writeFileSync(configFile, `${lines.join('\n')}\n`, { mode: 0o600 });
  const generator = fs.existsSync(path.join(toplevel, 'etc', 'systemd', 'system-generators', 'systemd-ssh-generator'));
  const vsockPorts = [...new Set([...(generator ? [22] : []), ...sshVsockPorts(toplevel)])];
  const port = Number(/^\s*Port\s+(\d+)/m.exec(config)?.[1] ?? 22);
  return { configFile, vsockPorts, port };
}

/**
 * What sshd runs for each session of a guest with a store of its own: nix's daemon on that store
 * (mounted over /nix in a private mount namespace), anything else as asked. Propagation must be
 * private, or the mount would reach the host's /nix; a chroot's root cannot be made private, so
 * there (CI's Debian roots, whose namespace is private already) NIXVM_SIM_PRIVATE_MOUNTS says so.
 */
function guestCommandScript(guestNix: string): string {
  const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  return [
    '#!/bin/sh',
    'case "$SSH_ORIGINAL_COMMAND" in',
    '  nix-daemon*|"nix-store --serve"*)',
    '    if [ -n "$NIXVM_SIM_PRIVATE_MOUNTS" ]; then prop=unchanged; else prop=private; fi',
    `    exec unshare --mount --propagation "$prop" sh -c 'mount --bind "$0" /nix && exec env -u NIX_REMOTE sh -c "$1"' ${q(guestNix)} "$SSH_ORIGINAL_COMMAND"`,
    '    ;;',
    'esac',
    'if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec sh -c "$SSH_ORIGINAL_COMMAND"; fi',
    'exec "${SHELL:-/bin/sh}" -l',
    '',
  ].join('\n');
}

/** One guest connection: sshd in inetd mode on the socket, its log on the simulator's stderr. */
export function serveSsh(conn: net.Socket, sshd: GuestSshd): void {
  const child = spawn(sshdProgram(), ['-i', '-e', '-f', sshd.configFile], { stdio: ['pipe', 'pipe', 'pipe'] });
  conn.pipe(child.stdin);
  child.stdout.pipe(conn);
  child.stderr.on('data', (d: Buffer) => process.stderr.write(`guest sshd: ${d}`));
  child.on('error', (e) => {
    log('warning', `guest sshd could not run: ${e.message}`);
    conn.destroy();
  });
  child.on('exit', () => conn.end());
  conn.on('error', () => child.kill());
  conn.on('close', () => child.kill());
}

/**
 * The guest's sshd on its IPv4 address, for a simulated guest leased a loopback address
 * (NIXVM_SIM_IP=127.0.0.x): the IP path nixvm falls back to when vsock has no sshd.
 */
export function listenTcp(host: string, sshd: GuestSshd): net.Server {
  const server = net.createServer((conn) => serveSsh(conn, sshd));
  server.on('error', (e) => log('warning', `guest sshd could not listen on ${host}:${sshd.port}: ${e.message}`));
  server.listen(sshd.port, host);
  return server;
}

/**
 * Where vfkit really listens: `url.Parse("unix://:" + socketURL).EscapedPath()` (pkg/vf/vsock.go),
 * so a byte Go escapes in a URL path (a space, a quote, `!`, non-ASCII…) names another file.
 * Approximated: `%XX` kept as written; a `%` that starts no escape is a parse error.
 */
export function vsockListenPath(socketURL: string): string {
  const bad = /%(?![0-9A-Fa-f]{2})(.{0,2})/.exec(socketURL);
  if (bad) throw new Error(`parse "unix://:${socketURL}": invalid URL escape "%${bad[1]}"`);
  let out = '';
  for (const b of Buffer.from(socketURL, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-_.~$&+,/:;=@%]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * vfkit's `virtio-vsock,port=…,socketURL=…,connect`: a unix listener on the host; each connection
 * goes to the guest's vsock port, and is closed at once when nothing listens there.
 */
export function exposeVsock(socketPath: string, port: number, listener: () => GuestSshd | null): net.Server | null {
  let where: string;
  try {
    where = vsockListenPath(socketPath);
  } catch (e) {
    log('warning', `error exposing vsock port ${port}: ${(e as Error).message}`);
    return null;
  }
  const server = net.createServer((conn) => {
    const sshd = listener();
    if (!sshd?.vsockPorts.includes(port)) {
      conn.destroy();
      return;
    }
    serveSsh(conn, sshd);
  });
  server.on('error', (e: NodeJS.ErrnoException) => {
    // Go's words for the usual ones (net.ListenUnix).
    const why =
      e.code === 'EADDRINUSE'
        ? 'bind: address already in use'
        : e.code === 'ENOENT'
          ? 'bind: no such file or directory'
          : e.message;
    log('warning', `error exposing vsock port ${port}: listen unix ${where}: ${why}`);
  });
  server.listen(where);
  return server;
}
