/**
 * The console relay's costs, on the seed fixture's minimal-vm (the simulator's real pty, its
 * autologin shell):
 *  - throughput: `seq N` in the guest, lines per second until both of two attached clients
 *    (control-socket connections, as `nixvm console` uses) have the last line;
 *  - keystroke latency: one key typed, until its echo is back at the typing client; against the
 *    same round trip on a pty with no agent in between (a simulator the bench reads itself), so
 *    the difference is what the agent adds.
 *
 *   node bench/console.ts [--lines N] [--keys N]
 */
import fs from 'node:fs';
import tty from 'node:tty';
import type { ConsoleAttachment, ConsoleEvent } from '../src/api/types.ts';
import { startDaemon } from './_daemon.ts';
import { numberArg } from './_args.ts';

const LINES = numberArg('--lines', 100_000);
const KEYS = numberArg('--keys', 200);
const PROMPT = '[root@minimal-vm:~]# ';

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
};
const us = (x: number) => `${(x * 1000).toFixed(0)} µs`;

interface Client {
  att: ConsoleAttachment;
  text: () => string;
  wait: (ok: (t: string) => boolean) => Promise<void>;
  reset: () => void;
}

async function main(): Promise<void> {
  const bench = await startDaemon('seed');
  try {
    const ctl = await bench.connect();
    await ctl.call('start', { vm: 'minimal-vm' });
    const clients: Client[] = [];
    for (const input of [true, false]) {
      let buf = '';
      let waiter: { ok: (t: string) => boolean; done: () => void } | null = null;
      const c = await bench.connect();
      const att = await c.attachConsole('minimal-vm', { input }, (ev: ConsoleEvent) => {
        if (ev.kind !== 'data') return;
        buf += Buffer.from(ev.data).toString('latin1');
        if (waiter?.ok(buf)) {
          const w = waiter;
          waiter = null;
          w.done();
        }
      });
      clients.push({
        att,
        text: () => buf,
        reset: () => {
          buf = '';
        },
        wait: (ok) =>
          ok(buf)
            ? Promise.resolve()
            : new Promise<void>((done) => {
                waiter = { ok, done };
              }),
      });
    }
    const [typist, watcher] = clients as [Client, Client];
    await typist.wait((t) => t.includes(PROMPT));

    // Throughput: both clients get every line.
    for (const c of clients) c.reset();
    const last = `\r\n${LINES}\r\n${PROMPT}`;
    const t0 = performance.now();
    typist.att.write(Buffer.from(`seq ${LINES}\r`));
    await Promise.all(clients.map((c) => c.wait((t) => t.endsWith(last))));
    const secs = (performance.now() - t0) / 1000;
    const bytes = watcher.text().length;

    // Keystroke latency through the agent: a key, until its echo is back.
    const viaAgent: number[] = [];
    for (let i = 0; i < KEYS; i++) {
      typist.reset();
      const t = performance.now();
      typist.att.write(Buffer.from('x'));
      await typist.wait((s) => s.includes('x'));
      viaAgent.push(performance.now() - t);
    }
    typist.att.write(Buffer.from('\x03'));

    // The same round trip on a pty with no agent: a simulator this bench starts and reads itself.
    const direct = await directRoundTrips(bench.root, KEYS);

    console.log(
      `console throughput: ${LINES} lines (${(bytes / 1024 / 1024).toFixed(1)} MiB) to 2 clients in ${secs.toFixed(2)} s: ${Math.round(LINES / secs)} lines/s`,
    );
    console.log(
      `keystroke echo through the agent: median ${us(pct(viaAgent, 50))}, p99 ${us(pct(viaAgent, 99))} over ${KEYS} keys`,
    );
    if (direct.length)
      console.log(
        `keystroke echo on the pty itself: median ${us(pct(direct, 50))}, p99 ${us(pct(direct, 99))}; the agent adds ${us(pct(viaAgent, 50) - pct(direct, 50))} (median), ${us(pct(viaAgent, 99) - pct(direct, 99))} (p99)`,
      );
    for (const c of clients) c.att.detach();
    await ctl.call('stop', { vm: 'minimal-vm' });
    await ctl.close();
  } finally {
    await bench.dispose();
  }
}

/** Key-to-echo on a simulator's pty that only this bench reads (its getty asks for a login name). */
async function directRoundTrips(root: string, keys: number): Promise<number[]> {
  const { spawnSim, makeClosure, restCall, VFKIT_SIM } = await import('../test/vfkit-sim/harness.ts');
  const dir = fs.mkdtempSync(`${root}/direct-`);
  const closure = makeClosure(dir, 'direct');
  const sock = `${dir}/rest.sock`;
  const p = spawnSim(
    [
      VFKIT_SIM,
      '--kernel',
      `${closure}/kernel`,
      '--initrd',
      `${closure}/initrd`,
      '--kernel-cmdline',
      `console=hvc0 init=${closure}/init`,
      '--device',
      'virtio-serial,pty',
      '--restful-uri',
      `unix://${sock}`,
    ],
    { NIXVM_SIM_BOOT_MS: '100' },
  );
  try {
    let pty: string | undefined;
    for (let i = 0; i < 500 && !pty; i++) {
      try {
        const insp = JSON.parse((await restCall(sock, 'GET', '/vm/inspect')).body) as {
          devices: Array<{ ptyName?: string }>;
        };
        pty = insp.devices.find((d) => d.ptyName)?.ptyName;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    if (!pty) return [];
    const fd = fs.openSync(pty, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
    const wfd = fs.openSync(pty, fs.constants.O_WRONLY | fs.constants.O_NOCTTY);
    const rs = new tty.ReadStream(fd);
    rs.setRawMode(true);
    let buf = '';
    let waiter: (() => void) | null = null;
    rs.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (waiter && buf.includes('login: ')) {
        const w = waiter;
        waiter = null;
        w();
      }
    });
    await new Promise<void>((r) => {
      waiter = r;
      if (buf.includes('login: ')) r();
    });
    const out: number[] = [];
    for (let i = 0; i < keys; i++) {
      buf = '';
      const t = performance.now();
      await new Promise<void>((r) => {
        const check = (d: Buffer) => {
          if (d.includes(0x78)) {
            rs.off('data', check);
            r();
          }
        };
        rs.on('data', check);
        fs.writeSync(wfd, 'x');
      });
      out.push(performance.now() - t);
    }
    rs.destroy();
    fs.closeSync(wfd);
    return out;
  } finally {
    p.child.kill('SIGKILL');
  }
}

await main();
