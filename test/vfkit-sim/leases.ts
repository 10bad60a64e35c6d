/**
 * The DHCP lease macOS's bootpd records when a NAT guest asks for an address, written to the file
 * NIXVM_LEASES_FILE names (the agent reads the same file). Format as bootpd writes
 * /var/db/dhcpd_leases: one brace block per client, tab-indented, `hw_address=1,<mac>` with the
 * leading zeros of each octet dropped, `lease=` a hex Unix time (the expiry, one day out).
 * Several simulators may write at once: an exclusive lock file serialises them and the new
 * contents replace the old by rename, so a reader never sees half a file.
 */
import fs from 'node:fs';

const LEASE_SECONDS = 86400;
const SUBNET = '192.168.64.';

/** `52:54:00:0a:bc:01` → `52:54:0:a:bc:1`, as bootpd writes it. */
export function bootpdMac(mac: string): string {
  return mac
    .toLowerCase()
    .split(':')
    .map((o) => o.replace(/^0+(?=.)/, ''))
    .join(':');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function withLock<T>(file: string, fn: () => T): Promise<T> {
  const lock = `${file}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      fs.closeSync(fs.openSync(lock, 'wx'));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      try {
        // A writer killed mid-update leaves its lock; nobody holds one for seconds.
        if (Date.now() - fs.statSync(lock).mtimeMs > 5000) fs.rmSync(lock, { force: true });
      } catch {
        /* gone meanwhile */
      }
      if (attempt > 2000) throw new Error(`could not lock ${lock}`);
      await sleep(2 + Math.random() * 8);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

interface Block {
  raw: string;
  hw: string | null;
  ip: string | null;
}

function parseBlocks(text: string): Block[] {
  const blocks: Block[] = [];
  const re = /\{[^{}]*\}/g;
  for (const m of text.matchAll(re)) {
    const raw = m[0];
    blocks.push({
      raw,
      hw: /^\s*hw_address=1,(\S+)\s*$/m.exec(raw)?.[1]?.toLowerCase() ?? null,
      ip: /^\s*ip_address=(\S+)\s*$/m.exec(raw)?.[1] ?? null,
    });
  }
  return blocks;
}

/**
 * Record (or renew) the lease for `mac`: the same address as before for a known MAC, else
 * `forcedIp`, else the lowest free 192.168.64.N (N ≥ 2). The newest lease goes first. Returns the IP.
 */
export async function recordLease(file: string, hostname: string, mac: string, forcedIp?: string): Promise<string> {
  const hw = bootpdMac(mac);
  return withLock(file, () => {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const blocks = parseBlocks(text);
    const mine = blocks.find((b) => b.hw === hw);
    const others = blocks.filter((b) => b.hw !== hw);
    let ip = forcedIp ?? mine?.ip ?? null;
    if (!ip) {
      const used = new Set(others.map((b) => b.ip));
      for (let n = 2; n < 255 && !ip; n++) if (!used.has(SUBNET + n)) ip = SUBNET + n;
      ip ??= `${SUBNET}254`;
    }
    const expiry = Math.floor(Date.now() / 1000) + LEASE_SECONDS;
    const entry = `{\n\tname=${hostname}\n\tip_address=${ip}\n\thw_address=1,${hw}\n\tidentifier=1,${hw}\n\tlease=0x${expiry.toString(16)}\n}`;
    const out = `${[entry, ...others.map((b) => b.raw)].join('\n')}\n`;
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, out, { mode: 0o644 });
    fs.renameSync(tmp, file);
    return ip;
  });
}
