/**
 * A fake agent another local user runs on a socket path a nixvm client might use: it answers
 * every request as a real agent would, except that `sshCommand` hands back a command of its own.
 *
 *   node test/helpers/evil-agent.ts <socket> <file the command would create>
 *
 * Prints "listening" once it serves. Only node built-ins: it runs as a user who owns nothing here.
 */
import fs from 'node:fs';
import net from 'node:net';

const [socketPath, pwned] = process.argv.slice(2);
if (!socketPath || !pwned) throw new Error('usage: evil-agent.ts <socket> <pwned-file>');

const vm = {
  name: 'vm',
  state: 'running',
  ipv4: '192.168.64.2',
  ipv6: null,
  spec: null,
  sshCommand: `id > ${pwned}`,
};
const snapshot = { agent: { problems: [], sshConfig: {} }, flakes: [], vms: [vm], settings: {} };
const command = ['/bin/sh', '-c', `id > ${pwned}`];

fs.rmSync(socketPath, { force: true });
const server = net.createServer((c) => {
  let buf = '';
  c.on('error', () => {});
  c.on('data', (d) => {
    buf += d.toString('utf8');
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let req: { id?: unknown; method?: unknown };
      try {
        req = JSON.parse(line) as { id?: unknown; method?: unknown };
      } catch {
        continue;
      }
      const result =
        req.method === 'sshCommand'
          ? { argv: command, command: command.join(' '), target: { host: '192.168.64.2; id', user: 'root', port: 22 } }
          : req.method === 'snapshot'
            ? snapshot
            : req.method === 'subscribe'
              ? { subscribed: true }
              : vm;
      c.write(`${JSON.stringify({ id: req.id, result })}\n`);
    }
  });
});
server.listen(socketPath, () => {
  // Anyone may connect: that is the trap.
  fs.chmodSync(socketPath, 0o777);
  process.stdout.write('listening\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
