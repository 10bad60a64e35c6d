/**
 * Fuzzes a real agent's control socket: a `nixvm daemon` on the 25-VM fixture gets malformed and
 * random messages over many connections at once (random bytes and invalid UTF-8, random JSON,
 * requests with junk methods, ids and params, prototype keys, subscribe with hostile filters,
 * truncated and over-long lines, half-closes and abrupt hang-ups). Mutating methods only ever get
 * malformed params (a valid `setSettings` may legitimately change the agent). At the end the
 * agent must still be running and answering, with what it keeps 20 s later under the bound.
 *
 * Before the fuzz, on the fresh agent, the two attacks issue 16 bounds at 200 MiB run as phases of
 * their own: the 28,000-filter subscribe, then clients that pipeline snapshot requests and never
 * read. The peak RSS (VmHWM, started anew for each phase) is printed per phase, so the malformed
 * flood's transient peak is not mistaken for theirs; those two must stay under 200 MiB.
 *
 *   node bench/fuzz-control.ts [--messages N] [--connections C] [--seed S] [--pipeliners P] [--pipeline-seconds S]
 */
import net from 'node:net';
import { AGENT_METHODS } from '../src/api/types.ts';
import { ABUSE_BOUND_MIB, bigSubscribe, pipeliners, resetPeak, rss } from './_abuse.ts';
import { startDaemon } from './_daemon.ts';
import { numberArg } from './_args.ts';

const MESSAGES = numberArg('--messages', 50_000);
const CONNECTIONS = numberArg('--connections', 16);
const PIPELINERS = numberArg('--pipeliners', 8);
const PIPELINE_SECONDS = numberArg('--pipeline-seconds', 20);
let seed = numberArg('--seed', 16) >>> 0 || 1;
const BOUND_MIB = 200;

/** xorshift32: a run is repeatable from its seed. */
function rnd(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
const int = (n: number) => Math.floor(rnd() * n);

const METHODS = Object.keys(AGENT_METHODS);
const READ_ONLY = ['snapshot', 'ips', 'logs', 'inspect', 'getSettings', 'sshCommand'];
const JUNK_NAMES = [
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  '',
  ' ',
  '\u0000',
  'a'.repeat(300),
  '../../etc',
  '🙂',
  '\u202e',
];

function randomString(): string {
  const n = int(40);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCodePoint(pick([int(0x80), int(0x800), int(0x10ffff)]) || 1);
  return s;
}

function randomValue(depth = 0): unknown {
  switch (int(depth > 4 ? 6 : 9)) {
    case 0:
      return null;
    case 1:
      return rnd() < 0.5;
    case 2:
      return pick([0, -0, 1e308, -1, 2 ** 53 + 1, 0.5, 1e-300]);
    case 3:
      return randomString();
    case 4:
      return pick(JUNK_NAMES);
    case 5:
      return int(100);
    case 6:
      return Array.from({ length: int(5) }, () => randomValue(depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = int(5); i > 0; i--)
        o[pick([...JUNK_NAMES, 'vm', 'kind', 'lines', 'logs', randomString()])] = randomValue(depth + 1);
      return o;
    }
  }
}

/** One malformed (or random) line, and whether it is well-formed JSON that names a method. */
function message(): string {
  switch (int(12)) {
    case 0: {
      // Random bytes, invalid UTF-8 included.
      return Buffer.from(Array.from({ length: int(200) }, () => int(256)).filter((b) => b !== 0x0a)).toString('latin1');
    }
    case 1:
      return JSON.stringify(randomValue());
    case 2: {
      // A request cut short.
      const full = JSON.stringify({ id: int(1000), method: pick(METHODS), params: { vm: 'vm01' } });
      return full.slice(0, int(full.length));
    }
    case 3:
      return JSON.stringify({ id: randomValue(), method: pick([...METHODS, ...JUNK_NAMES]), params: randomValue() });
    case 4:
      return JSON.stringify({
        id: int(1e6),
        method: pick(METHODS),
        params: { vm: pick(JUNK_NAMES), extra: randomValue() },
      });
    case 5:
      return JSON.stringify({
        id: 1,
        method: 'subscribe',
        params: { logs: Array.from({ length: int(100) }, () => randomValue()) },
      });
    case 6:
      return JSON.stringify({
        id: 1,
        method: 'subscribe',
        params: {
          logs: Array.from({ length: int(70) }, () => ({
            vm: pick(JUNK_NAMES),
            kind: pick(['console', 'build', 'x']),
          })),
        },
      });
    case 7:
      return `{"id":1,"method":"setSettings","params":${JSON.stringify({ [pick(['autostart', 'sshUser', 'flakes', 'stopTimeoutSec', '__proto__', 'nixPath'])]: randomValue() })}}`;
    case 8:
      return `{"id":1,"__proto__":{"method":"start"},"params":{"vm":"vm01"}}`;
    case 9:
      // Deep nesting.
      return `${'['.repeat(int(5000))}${']'.repeat(int(5000))}`;
    case 10:
      // A read-only call that is well-formed (the agent does real work for it).
      return JSON.stringify({
        id: int(1e6),
        method: pick(READ_ONLY),
        params: { vm: `vm${String(1 + int(25)).padStart(2, '0')}`, kind: 'console', lines: int(50) },
      });
    default:
      return `${randomString()}\r`;
  }
}

const bench = await startDaemon('many');
const pid = bench.daemon.pid!;
const probe = await bench.connect();
const sock = probe.socketPath;
await probe.close();
const started = rss(pid);

// Phase 1: the subscribe, 28,000 log filters for VMs that do not exist, on one connection.
resetPeak(pid);
const big = await bigSubscribe(sock);
big.socket.destroy();
const subscribePeak = rss(pid).peak;

// Phase 2: clients that pipeline requests for the largest answer (a 25-VM snapshot) and never read.
resetPeak(pid);
const greedy = await pipeliners(sock, PIPELINERS, PIPELINE_SECONDS);
const pipelinePeak = rss(pid).peak;
const pipelineDropped = greedy.close();

// Phase 3: the malformed and random flood.
await new Promise((r) => setTimeout(r, 500));
resetPeak(pid);
let sent = 0;
let overLong = 0;
let replies = 0;
let hangUps = 0;
const t0 = performance.now();

/** One fuzzing connection: sends messages until its share is done, then ends one way or another. */
async function worker(share: number): Promise<void> {
  while (share > 0) {
    const s = net.createConnection(sock);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => (replies += d.toString('latin1').split('\n').length - 1));
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    await new Promise<void>((r) => {
      s.once('connect', () => r());
      s.once('close', () => r());
    });
    const burst = Math.min(share, 20 + int(300));
    let batch = '';
    for (let i = 0; i < burst; i++) {
      batch += `${message()}\n`;
      if (rnd() < 0.002) {
        batch += 'x'.repeat(1.2 * 1024 * 1024);
        overLong++;
      }
    }
    sent += burst;
    share -= burst;
    s.write(batch);
    const end = int(4);
    if (end === 0) s.destroy();
    else if (end === 1) s.end();
    else {
      await new Promise((r) => setTimeout(r, 20 + int(80)));
      s.end();
    }
    await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
    if (!s.destroyed) {
      hangUps++;
      s.destroy();
    }
  }
}

try {
  const per = Math.ceil(MESSAGES / CONNECTIONS);
  await Promise.all(Array.from({ length: CONNECTIONS }, () => worker(per)));
  const secs = (performance.now() - t0) / 1000;
  const alive = bench.daemon.exitCode === null && bench.daemon.signalCode === null;
  const c = await bench.connect();
  const snap = await c.call('snapshot', {});
  await c.close();
  const mem = rss(pid);
  // The daemon gives a burst's heap slack back once it has been quiet for 15 s (host/idle-trim.ts):
  // what is left then is what the fuzz made it keep.
  await new Promise((r) => setTimeout(r, 20_000));
  const rest = rss(pid);
  const f = (n: number) => `${n.toFixed(1)} MiB`;
  console.log(
    `control socket fuzz: a nixvm daemon (25-VM flake), ${CONNECTIONS} connections at a time, seed ${numberArg('--seed', 16)}`,
  );
  console.log(`  agent RSS at the start:           ${f(started.now)}`);
  console.log(
    `  1. 28,000-filter subscribe:       ${big.refused ? 'refused' : 'ACCEPTED'}; peak RSS ${f(subscribePeak)} (bound ${ABUSE_BOUND_MIB} MiB)`,
  );
  console.log(
    `  2. ${PIPELINERS} non-reading pipeliners, ${PIPELINE_SECONDS} s: ${greedy.sent.toLocaleString('en')} requests written, ${pipelineDropped} dropped by the agent; peak RSS ${f(pipelinePeak)} (bound ${ABUSE_BOUND_MIB} MiB)`,
  );
  console.log('  3. the malformed and random flood:');
  console.log(
    `  malformed or random inputs sent:  ${sent.toLocaleString('en')} in ${secs.toFixed(1)} s (${overLong} lines over 1 MiB)`,
  );
  console.log(
    `  reply lines read:                 ${replies.toLocaleString('en')}; connections we had to cut: ${hangUps}`,
  );
  console.log(`  agent afterwards:                 ${alive ? 'running' : 'DEAD'}, answers with ${snap.vms.length} VMs`);
  console.log(
    `  agent RSS right after / peak:     ${mem.now.toFixed(1)} / ${mem.peak.toFixed(1)} MiB (the flood's own peak)`,
  );
  console.log(`  agent RSS 20 s later (kept):      ${rest.now.toFixed(1)} MiB (bound ${BOUND_MIB} MiB)`);
  const abused = !big.refused || subscribePeak >= ABUSE_BOUND_MIB || pipelinePeak >= ABUSE_BOUND_MIB;
  if (!alive || snap.vms.length !== 25 || rest.now >= BOUND_MIB || abused) process.exitCode = 1;
} finally {
  await bench.dispose();
}
