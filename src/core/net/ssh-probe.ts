/**
 * Is an sshd answering there? Connect (a unix socket: the host end of a VM's vsock port; or TCP)
 * and wait for the server's identification line (`SSH-2.0-…`, RFC 4253 §4.2), which sshd sends
 * first. vfkit accepts every connection on its vsock socket and closes it when nothing listens
 * in the guest, so a connection alone proves nothing; the banner does.
 */
import net from 'node:net';

export type ProbeTarget = { path: string } | { host: string; port: number };

/** The server's identification line, or null (refused, closed, nothing within `timeoutMs`). */
export function sshBanner(target: ProbeTarget, timeoutMs = 3000): Promise<string | null> {
  return new Promise((resolve) => {
    let buf = '';
    let done = false;
    const host = 'host' in target ? target.host.replace(/%.*$/, '') : '';
    const sock =
      'path' in target
        ? net.connect({ path: target.path })
        : net.connect({
            host,
            port: target.port,
            // A link-local address needs its zone: Node takes it as the scope in the host string.
            ...(target.host.includes('%') ? { host: target.host } : {}),
          });
    const finish = (v: string | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0 || buf.length > 255) {
        const line = buf.slice(0, nl >= 0 ? nl : 255).replace(/\r$/, '');
        finish(line.startsWith('SSH-') ? line : null);
      }
    });
    sock.on('error', () => finish(null));
    sock.on('close', () => finish(null));
  });
}
