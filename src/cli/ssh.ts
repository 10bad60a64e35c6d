/**
 * `nixvm ssh <vm>` (like `limactl shell`): start the VM unless `--no-start`, wait — saying for
 * what — until its sshd answers on vsock or on an address, up to `--timeout`, then run ssh with
 * nixvm's key and the VM's own known_hosts; a command after `--` runs there and its exit code is
 * ours. And `nixvm proxy`, ssh's ProxyCommand for the vsock route: stdin and stdout joined to
 * the VM's vsock socket, no `nc` needed.
 */
import net from 'node:net';
import type { AgentSnapshot, SshDestination, SshRoute, VmSnapshot } from '../api/types.ts';
import { untrustedSocket } from '../host/socket-path.ts';
import { shellWord } from '../host/shell.ts';
import { sshBanner } from '../core/net/ssh-probe.ts';
import { checkSshDestination, sshArgv, sshRoutes, sshTargetFor, SshTargetError } from '../core/net/ssh.ts';
import { CliError, EXIT } from './errors.ts';
import { commandName, visibleName } from './format.ts';
import type { CliIo, CliPort } from './io.ts';

export interface SshRun {
  vm: string;
  cmd: string[];
  io: CliIo;
  port: CliPort;
  /** Start the VM when it is not running (false: refuse). */
  start: boolean;
  timeoutMs: number;
  verbose: boolean;
  /** Starts the VM the way `nixvm start` does (progress included); resolves with its exit code. */
  startVm(): Promise<number>;
  /** Done with the agent (ssh may run for hours). */
  close(): Promise<void>;
  noSuchVm(snap: AgentSnapshot): CliError;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** What a VM is waiting for before ssh can work, in words. */
export function waitingFor(v: VmSnapshot | undefined, d: SshDestination | null): string {
  const name = visibleName(v?.name ?? '');
  if (!v || v.state === 'starting') return `${name} to boot`;
  if (!d) return `${name} to get an address`;
  const parts = [];
  if (d.vsock) parts.push('sshd on vsock');
  if (!d.ipv4) parts.push('a DHCP lease');
  else parts.push(`sshd on ${d.ipv4}`);
  return parts.join(' or ');
}

/** The first route whose sshd sends its banner now. */
export async function answeringRoute(d: SshDestination): Promise<SshRoute | null> {
  for (const route of sshRoutes(d)) {
    if (route === 'vsock') {
      const path = d.vsock as string;
      if (untrustedSocket(path)) continue;
      if (await sshBanner({ path }, 1500)) return route;
    } else if (await sshBanner({ host: (route === 'ipv4' ? d.ipv4 : d.ipv6) as string, port: d.port }, 1500)) {
      return route;
    }
  }
  return null;
}

function routeWords(route: SshRoute, d: SshDestination): string {
  if (route === 'vsock') return `vsock (${d.vsock})`;
  return route === 'ipv4' ? `IPv4 ${d.ipv4}` : `IPv6 link-local ${d.ipv6}`;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

export async function runSsh(r: SshRun): Promise<number> {
  const { io, vm } = r;
  const vis = visibleName(vm);
  const snap = await r.port.call('snapshot', {});
  const v = snap.vms.find((x) => x.name === vm);
  if (!v) throw r.noSuchVm(snap);
  if (v.spec && !v.spec.ssh.enabled) {
    throw new CliError(
      EXIT.failed,
      `${vis} does not run an ssh server; set services.openssh.enable = true in its configuration and apply it, or use \`nixvm console ${commandName(vm)}\`.`,
    );
  }
  if (v.state !== 'running' && v.state !== 'starting') {
    if (!r.start) {
      throw new CliError(
        EXIT.failed,
        `${vis} is ${v.state}; start it with \`nixvm start ${commandName(vm)}\` (or drop --no-start).`,
      );
    }
    const code = await r.startVm();
    if (code !== EXIT.ok) return code;
  }
  const deadline = io.now() + r.timeoutMs;
  const spin = io.stderr.isTTY;
  let frame = 0;
  let shown = '';
  const show = (text: string): void => {
    if (!spin) {
      if (text !== shown) io.stderr.write(`nixvm: waiting for ${text}…\n`);
    } else io.stderr.write(`\r\x1b[2K${FRAMES[frame++ % FRAMES.length]} waiting for ${text}…`);
    shown = text;
  };
  const clear = (): void => {
    if (spin && shown) io.stderr.write('\r\x1b[2K');
  };
  let dest: SshDestination | null = null;
  let route: SshRoute | null = null;
  let last: VmSnapshot | undefined = v;
  while (!route) {
    if (io.signal.aborted) {
      clear();
      throw new CliError(EXIT.interrupted, 'Interrupted.');
    }
    const now = (await r.port.call('snapshot', {})).vms.find((x) => x.name === vm);
    last = now;
    if (!now || (now.state !== 'running' && now.state !== 'starting')) {
      clear();
      throw new CliError(
        EXIT.failed,
        `${vis} is ${now?.state ?? 'gone'} while nixvm waited for its sshd; see \`nixvm logs ${commandName(vm)}\`.`,
      );
    }
    dest = null;
    if (now.state === 'running') {
      try {
        dest = checkSshDestination(vm, (await r.port.call('sshCommand', { vm })).target);
      } catch (err) {
        if (err instanceof SshTargetError) throw new CliError(EXIT.failed, err.message);
        // Not running yet, or no address yet: keep waiting.
      }
    }
    if (dest) route = await (io.probeSsh ?? answeringRoute)(dest);
    if (route) break;
    if (io.now() >= deadline) {
      clear();
      throw new CliError(
        EXIT.failed,
        `${vis} did not answer ssh within ${Math.round(r.timeoutMs / 1000)} s (nixvm waited for ${waitingFor(last, dest)}); see its console with \`nixvm console ${commandName(vm)}\`, or wait longer with --timeout.`,
      );
    }
    show(waitingFor(last, dest));
    await sleep(500, io.signal);
  }
  clear();
  const d = dest as SshDestination;
  if (r.verbose) io.stderr.write(`nixvm: ssh to ${vis} over ${routeWords(route, d)} as ${d.user}\n`);
  const argv = sshArgv(sshTargetFor(d, { nixvm: io.selfArgv, route, connectTimeout: 10 }));
  await r.close();
  let stderrTail = '';
  const code = await io.exec([...argv, ...r.cmd], {
    onStderr: (chunk) => {
      stderrTail = (stderrTail + chunk).slice(-4096);
    },
  });
  if (code === 255 && /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/.test(stderrTail)) {
    const forget = d.knownHostsFile
      ? `ssh-keygen -R ${d.alias} -f ${shellWord(d.knownHostsFile)}`
      : `ssh-keygen -R ${d.alias}`;
    io.stderr.write(
      `nixvm: the host key of ${vis} is not the one nixvm saw before (a rebuild or a new disk makes new keys); if you expected that, forget the old key with \`${forget}\` and connect again.\n`,
    );
  }
  return code;
}

export interface ProxyRun {
  io: CliIo;
  /** The unix socket (the host end of the VM's vsock port). */
  socket: string;
}

/** stdin → socket, socket → stdout, until either side ends; exit 0 on a clean end. */
export function runProxy(p: ProxyRun): Promise<number> {
  const bad = untrustedSocket(p.socket);
  if (bad) return Promise.reject(new CliError(EXIT.failed, bad));
  return new Promise((resolve, reject) => {
    const sock = net.connect({ path: p.socket });
    const stdin = process.stdin;
    const stdout = process.stdout;
    let connected = false;
    sock.once('connect', () => {
      connected = true;
      stdin.pipe(sock);
      sock.pipe(stdout);
    });
    stdin.once('end', () => sock.end());
    sock.once('close', () => {
      stdin.unpipe(sock);
      stdin.pause();
      resolve(EXIT.ok);
    });
    sock.once('error', (err) => {
      if (connected) return resolve(EXIT.failed);
      reject(
        new CliError(
          EXIT.failed,
          `Could not connect to ${p.socket} (${(err as NodeJS.ErrnoException).code ?? err.message}); is the VM running? (\`nixvm ls\`)`,
        ),
      );
    });
  });
}
