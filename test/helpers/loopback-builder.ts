/**
 * A remote builder on a loopback address, for provoking nix's remote-build failures for real: a
 * real OpenSSH `sshd -i` per connection on <ip>:22 (port 22, so that the host key nixvm pins in
 * the machine line is the one ssh checks), logging root in with a key of its own, and behind it a
 * real `nix-daemon --stdio` on a store of its own (an empty directory mounted over /nix in a
 * private mount namespace, as a builder's /nix is its own). Each behaviour is one failure a user
 * meets: nothing listening, the wrong host key, the key refused, no nix there, a builder whose
 * nix refuses to build, and a connection that drops in the middle of a build.
 *
 * Needs root (port 22, sshd logging root in, mount namespaces): CI and the Debian roots are.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { renderMachine } from '../../src/core/builders/machines.ts';
import { sshdConfigHead, sshdProgram } from '../vfkit-sim/sshd.ts';
import { loopbackIp } from './builder-fixture.ts';

export type BuilderBehaviour =
  /** Nothing listens on its address. */
  | 'absent'
  /** Its sshd shows another host key than the one the machine line pins. */
  | 'other-host-key'
  /** Its sshd accepts no key for root. */
  | 'key-refused'
  /** ssh works, but there is no nix on its PATH. */
  | 'no-nix'
  /** Its nix refuses every build (a build-users-group that does not exist). */
  | 'broken-nix'
  /** Builds run, but the connection drops once the build prints DROP_MARKER. */
  | 'drops'
  /** The connection drops after the first megabyte nix sends (in the middle of copying inputs there). */
  | 'drops-uploading';

/** The system the builder builds that this machine does not: the build must go there. */
export const BUILDER_SYSTEM = 'riscv64-linux';
/** A build log line that makes a 'drops' builder cut the connection. */
export const DROP_MARKER = 'nixvm-test: the builder drops here';

const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

export function rootNeeded(): string | null {
  return process.getuid?.() === 0 ? null : 'a loopback builder needs root (sshd on port 22, root login, /nix mounted)';
}

export class LoopbackBuilder {
  readonly ip = loopbackIp();
  readonly #dir: string;
  readonly #behaviour: BuilderBehaviour;
  #server: net.Server | null = null;
  #sessions = new Set<{ conn: net.Socket; child: ChildProcess }>();
  #dropped = false;
  /** The client's key (what nixvm's machine line names as ssh-key). */
  readonly key: string;
  /** The base64 host key the machine line pins. */
  readonly pinnedHostKey: string;

  readonly scheme: 'ssh-ng' | 'ssh';

  private constructor(dir: string, behaviour: BuilderBehaviour, scheme: 'ssh-ng' | 'ssh') {
    this.#dir = dir;
    this.scheme = scheme;
    this.#behaviour = behaviour;
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const keygen = (file: string) =>
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'nixvm-test', '-f', file]);
    this.key = path.join(dir, 'client_key');
    keygen(this.key);
    const hostKey = path.join(dir, 'host_key');
    keygen(hostKey);
    const pinned = behaviour === 'other-host-key' ? path.join(dir, 'other_host_key') : hostKey;
    if (pinned !== hostKey) keygen(pinned);
    // The machine line pins "<type> <key>", base64, as nixvm's does.
    const pub = fs.readFileSync(`${pinned}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
    this.pinnedHostKey = Buffer.from(pub).toString('base64');

    const store = path.join(dir, 'store', 'nix');
    fs.mkdirSync(store, { recursive: true });
    const confDir = path.join(dir, 'nix-conf');
    fs.mkdirSync(confDir, { recursive: true });
    fs.writeFileSync(
      path.join(confDir, 'nix.conf'),
      [
        'experimental-features = nix-command',
        `extra-platforms = ${BUILDER_SYSTEM}`,
        'sandbox = false',
        'substituters =',
        // The builder whose nix is broken: every build it is asked for fails before it starts.
        `build-users-group = ${behaviour === 'broken-nix' ? 'nixvm-test-no-such-group' : ''}`,
        '',
      ].join('\n'),
    );
    // sshd gives the session a clean environment: the script sets what nix needs. Propagation must
    // be private or the mount would reach this machine's /nix; a chroot's root cannot be made
    // private, so there (CI's Debian roots, private already) NIXVM_SIM_PRIVATE_MOUNTS says so.
    const prop = process.env.NIXVM_SIM_PRIVATE_MOUNTS ? 'unchanged' : 'private';
    const command = path.join(dir, 'command.sh');
    fs.writeFileSync(
      command,
      [
        '#!/bin/sh',
        `echo $$ >>${q(path.join(dir, 'pids'))}`,
        ...(behaviour === 'no-nix'
          ? ['PATH=/nonexistent exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"']
          : [
              `export NIX_CONF_DIR=${q(confDir)} PATH=/usr/local/bin:/usr/bin:/bin`,
              `exec unshare --mount --propagation ${prop} sh -c 'mkdir -p /nix && mount --bind "$0" /nix && exec sh -c "$1"' ${q(store)} "$SSH_ORIGINAL_COMMAND"`,
            ]),
        '',
      ].join('\n'),
      { mode: 0o700 },
    );
    fs.writeFileSync(
      path.join(dir, 'sshd_config'),
      [
        ...sshdConfigHead(hostKey, behaviour === 'key-refused' ? [] : [`${this.key}.pub`]),
        `ForceCommand "${command}"`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
  }

  /** A builder that behaves so, its files in `dir` (emptied first), listening unless 'absent'. */
  static async start(
    dir: string,
    behaviour: BuilderBehaviour,
    scheme: 'ssh-ng' | 'ssh' = 'ssh-ng',
  ): Promise<LoopbackBuilder> {
    const b = new LoopbackBuilder(dir, behaviour, scheme);
    if (behaviour !== 'absent') await b.#listen();
    return b;
  }

  #listen(): Promise<void> {
    const server = net.createServer((conn) => {
      const child = spawn(sshdProgram(), ['-i', '-e', '-f', path.join(this.#dir, 'sshd_config')], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const s = { conn, child };
      this.#sessions.add(s);
      let sent = 0;
      conn.on('data', (d: Buffer) => {
        sent += d.length;
        if (this.#behaviour === 'drops-uploading' && sent > 1 << 20 && !this.#dropped) {
          this.#dropped = true;
          this.#cut();
        }
      });
      // Writes racing the cut find the pipe closed: nothing to report.
      child.stdin!.on('error', () => {});
      conn.pipe(child.stdin!);
      child.stdout!.pipe(conn);
      child.stderr!.on('data', (d: Buffer) => {
        // A session's last words can come after its test ended and removed the builder's folder.
        try {
          fs.appendFileSync(path.join(this.#dir, 'sshd.log'), d);
        } catch {}
      });
      child.on('error', () => conn.destroy());
      child.on('exit', () => {
        this.#sessions.delete(s);
        conn.end();
      });
      conn.on('error', () => child.kill('SIGKILL'));
      conn.on('close', () => child.kill('SIGKILL'));
    });
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new Error(
            `the loopback builder cannot listen on ${this.ip}:22 (${e.code ?? e.message})${e.code === 'EADDRINUSE' ? ': something listens on port 22 of every address' : ''}`,
          ),
        ),
      );
      server.listen(22, this.ip, () => resolve());
    });
  }

  /** nix's name for it, as a machine line and `--store` name it. */
  get uri(): string {
    return `${this.scheme}://root@${this.ip}`;
  }

  /** Its line for nix's `builders`, as nixvm writes the builder VM's. */
  machineLine(): string {
    return renderMachine({
      uri: this.uri,
      systems: [BUILDER_SYSTEM],
      sshKey: this.key,
      maxJobs: 1,
      speedFactor: 1,
      supportedFeatures: [],
      mandatoryFeatures: [],
      publicHostKey: this.pinnedHostKey,
    });
  }

  /** What nixvm's probe names with `nix store ping --store` (src/core/builders/builders.ts). */
  storeUri(): string {
    return `${this.uri}?ssh-key=${this.key}&base64-ssh-public-host-key=${this.pinnedHostKey}`;
  }

  /** nix's output, a line at a time: a 'drops' builder cuts every connection at DROP_MARKER. */
  onLine = (line: string): void => {
    if (this.#behaviour !== 'drops' || this.#dropped || !line.includes(DROP_MARKER)) return;
    this.#dropped = true;
    this.#cut();
  };

  /** As a builder VM that stops: every session and what it runs, gone at once. */
  #cut(): void {
    for (const s of this.#sessions) {
      s.child.kill('SIGKILL');
      s.conn.destroy();
    }
    for (const pid of this.#pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  }

  /** The sessions' commands (nix's daemon) and the builds it ran, which write their pid too. */
  #pids(): number[] {
    try {
      return fs
        .readFileSync(path.join(this.#dir, 'pids'), 'utf8')
        .split('\n')
        .map(Number)
        .filter((n) => n > 1);
    } catch {
      return [];
    }
  }

  /** Where a build on it writes its pid (so that stop() ends it as well). */
  get pidFile(): string {
    return path.join(this.#dir, 'pids');
  }

  async stop(): Promise<void> {
    this.#cut();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    this.#server = null;
  }
}
