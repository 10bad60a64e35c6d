/**
 * A VM's serial console log: the file vfkit's `virtio-serial,logFilePath=…` writes, one per run.
 * Rotated before each boot (keep the last runs, cap their total size), read from the end for
 * "last lines" (constant memory, however large the file), and followed live for the log window.
 */
import { watch, type FSWatcher } from 'node:fs';
import { open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { runStartOf } from '../../api/log-lines.ts';

/** Runs kept besides the current one. */
export const DEFAULT_CONSOLE_KEEP = 5;
/** Total bytes the rotated logs of one VM may take. */
export const DEFAULT_CONSOLE_MAX_BYTES = 256 * 1024 * 1024;

const CHUNK = 64 * 1024;
const NL = 0x0a;

function isNotFound(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function sizeOf(file: string): Promise<number | null> {
  try {
    return (await stat(file)).size;
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

async function renameIfExists(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
}

/** Index of the first byte at or after `i` that starts a UTF-8 character. */
function charStart(buf: Buffer, i: number): number {
  while (i < buf.length && (buf[i]! & 0xc0) === 0x80) i++;
  return i;
}

/**
 * Keep only the last `maxBytes` of a file, starting at a line boundary, with a note saying so.
 * Streams through a temp file: constant memory.
 */
export async function keepTail(file: string, maxBytes: number): Promise<void> {
  const src = await open(file, 'r');
  const tmp = `${file}.trim-${process.pid}`;
  try {
    const { size } = await src.stat();
    if (size <= maxBytes) return;
    let from = size - maxBytes;
    // Start on a whole line when one begins within the first chunk; else on a whole character.
    const probe = Buffer.alloc(Math.min(CHUNK, size - from));
    const { bytesRead } = await src.read(probe, 0, probe.length, from);
    const nl = probe.subarray(0, bytesRead).indexOf(NL);
    from += nl >= 0 ? nl + 1 : charStart(probe.subarray(0, bytesRead), 0);
    const dst = await open(tmp, 'w', 0o644);
    try {
      await dst.write(
        `[nixvm: the first ${from} bytes of this run's console were dropped to keep logs under ${maxBytes} bytes]\n`,
      );
      const buf = Buffer.alloc(CHUNK);
      for (let pos = from; pos < size; ) {
        const r = await src.read(buf, 0, Math.min(CHUNK, size - pos), pos);
        if (r.bytesRead === 0) break;
        await dst.write(buf.subarray(0, r.bytesRead));
        pos += r.bytesRead;
      }
    } finally {
      await dst.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  } finally {
    await src.close();
  }
}

/**
 * Call before each boot: `log` → `log.1` → `log.2` … → `log.<keep>`, the oldest dropped, so
 * the new run starts a fresh file. Then cap the rotated files' total at `maxBytes`: older runs
 * go first; if the last run alone is larger, its beginning is cut (its end is what explains a
 * crash). Missing files (first boot, gaps) are fine.
 */
export async function rotateConsoleLog(
  file: string,
  keep = DEFAULT_CONSOLE_KEEP,
  maxBytes = DEFAULT_CONSOLE_MAX_BYTES,
): Promise<void> {
  if (!Number.isInteger(keep) || keep < 0)
    throw new RangeError(`Console logs to keep must be a whole number ≥ 0, got ${keep}.`);
  if (!(maxBytes > 0)) throw new RangeError(`The console log size cap must be positive, got ${maxBytes}.`);
  const dir = path.dirname(file);
  const base = path.basename(file);
  const numbered = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)$`);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (isNotFound(e)) return;
    throw e;
  }
  // Beyond the slots we keep (also what a smaller `keep` than last time leaves behind).
  for (const n of names) {
    const m = numbered.exec(n);
    if (m && Number(m[1]) >= keep) await rm(path.join(dir, n), { force: true });
  }
  if (keep === 0) {
    await rm(file, { force: true });
    return;
  }
  for (let i = keep - 1; i >= 1; i--) await renameIfExists(`${file}.${i}`, `${file}.${i + 1}`);
  await renameIfExists(file, `${file}.1`);

  let total = 0;
  for (let i = 1; i <= keep; i++) {
    const f = `${file}.${i}`;
    const size = await sizeOf(f);
    if (size === null) continue;
    if (total + size <= maxBytes) {
      total += size;
      continue;
    }
    if (i === 1) {
      await keepTail(f, maxBytes);
      total = maxBytes;
    } else {
      for (let j = i; j <= keep; j++) await rm(`${file}.${j}`, { force: true });
      break;
    }
  }
}

export interface TailOptions {
  /** Bytes read per step backwards; by default it starts at 64 KiB and doubles up to 1 MiB. */
  chunkSize?: number;
  /** A longer line is cut to its first this-many bytes, marked with `…`. */
  maxLineBytes?: number;
  /** At most this many bytes of lines (as cut) come back: the newest lines that fit. */
  maxBytes?: number;
}

/** The last lines' bytes are read in one go when they fit in this much, else line by line. */
const TAIL_REGION_BYTES = 4 * 1024 * 1024;
/** The largest step backwards when lines are long. */
const MAX_CHUNK = 1024 * 1024;

/**
 * The last `lines` lines of a file, oldest first, reading backwards from the end in fixed-size
 * chunks: memory stays bounded (about 4 MiB plus the returned lines, each at most
 * `maxLineBytes`) however large the file is. A missing file has no lines. CRLF endings are
 * stripped; a final line without a newline counts.
 */
/** The last `bytes` of a file (fewer when it is shorter; empty when it is missing). */
export async function tailBytes(file: string, bytes: number): Promise<Buffer> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    if (isNotFound(e)) return Buffer.alloc(0);
    throw e;
  }
  try {
    const { size } = await fh.stat();
    const n = Math.min(size, bytes);
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, size - n);
    const out = buf.subarray(0, bytesRead);
    return out.subarray(charStart(out, 0));
  } finally {
    await fh.close();
  }
}

export async function tail(file: string, lines: number, opts: TailOptions = {}): Promise<string[]> {
  if (!(lines > 0)) return [];
  const growing = opts.chunkSize === undefined;
  let chunkSize = Math.max(1, opts.chunkSize ?? CHUNK);
  const maxLineBytes = Math.max(4, opts.maxLineBytes ?? 64 * 1024);
  const maxBytes = opts.maxBytes ?? Number.POSITIVE_INFINITY;
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    if (isNotFound(e)) return [];
    throw e;
  }
  try {
    const { size } = await fh.stat();
    if (size === 0) return [];
    let buf = Buffer.allocUnsafe(Math.min(chunkSize, size));
    // A trailing newline ends the last line; it does not start an empty one.
    await readFully(fh, buf, 1, size - 1);
    const end = buf[0] === NL ? size - 1 : size;

    // Pass 1: positions of the newlines that separate the last `lines` lines, newest first,
    // until those lines (as cut) fill `maxBytes`.
    const newlines: number[] = [];
    let pos = end;
    let taken = 0;
    const enough = () => newlines.length >= lines || taken >= maxBytes;
    while (pos > 0 && !enough()) {
      const start = Math.max(0, pos - buf.length);
      const n = pos - start;
      await readFully(fh, buf, n, start);
      let idx = n;
      while (idx > 0 && !enough()) {
        const i = buf.lastIndexOf(NL, idx - 1);
        if (i < 0) break;
        const lineEnd = newlines.at(-1) ?? end;
        taken += Math.min(lineEnd - (start + i + 1), maxLineBytes) + 1;
        newlines.push(start + i);
        idx = i;
      }
      pos = start;
      // Few, long lines: bigger steps, still a fixed ceiling.
      if (growing && chunkSize < MAX_CHUNK && pos > buf.length) {
        chunkSize *= 2;
        buf = Buffer.allocUnsafe(chunkSize);
      }
    }

    // Line ranges, oldest first.
    newlines.reverse();
    let ranges: [number, number][] = [];
    if (newlines.length < lines && taken < maxBytes) ranges.push([0, newlines[0] ?? end]);
    for (let k = 0; k < newlines.length; k++) ranges.push([newlines[k]! + 1, newlines[k + 1] ?? end]);
    // The newest lines that fit in maxBytes (always the last one, cut if need be).
    if (Number.isFinite(maxBytes)) {
      let sum = 0;
      let first = ranges.length;
      while (first > 0) {
        const [a, b] = ranges[first - 1]!;
        const cost = Math.min(b - a, maxLineBytes) + 1;
        if (sum + cost > maxBytes && first < ranges.length) break;
        sum += cost;
        first--;
      }
      ranges = ranges.slice(first);
    }
    if (ranges.length === 0) return [];

    // Pass 2: each line is decoded whole, so multibyte characters are never split by a chunk
    // boundary. Usually the region is small and read at once; monsters are read head-only.
    const regionStart = ranges[0]![0];
    const region = end - regionStart <= TAIL_REGION_BYTES ? Buffer.allocUnsafe(end - regionStart) : null;
    if (region) await readFully(fh, region, region.length, regionStart);
    const out: string[] = [];
    const decoder = new TextDecoder('utf-8');
    for (const [a, b] of ranges) {
      const len = b - a;
      const take = Math.min(len, maxLineBytes);
      let bytes: Buffer;
      if (region) bytes = region.subarray(a - regionStart, a - regionStart + take);
      else {
        const lineBuf = take <= buf.length ? buf : Buffer.allocUnsafe(take);
        await readFully(fh, lineBuf, take, a);
        bytes = lineBuf.subarray(0, take);
      }
      let cut = false;
      if (take < len) {
        bytes = bytes.subarray(0, completeUtf8Prefix(bytes));
        cut = true;
      }
      let text = decoder.decode(bytes);
      if (!cut && text.endsWith('\r')) text = text.slice(0, -1);
      out.push(cut ? `${text}…` : text);
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** `s` cut to at most `maxBytes` of UTF-8, never inside a character. */
function cutUtf8(s: string, maxBytes: number): string {
  const bytes = Buffer.from(s, 'utf8').subarray(0, maxBytes);
  return bytes.subarray(0, completeUtf8Prefix(bytes)).toString('utf8');
}

/** Length of the longest prefix that does not end inside a multibyte UTF-8 character. */
function completeUtf8Prefix(bytes: Buffer): number {
  let j = bytes.length - 1;
  while (j >= 0 && j > bytes.length - 4 && (bytes[j]! & 0xc0) === 0x80) j--;
  if (j < 0) return bytes.length;
  const lead = bytes[j]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return j + need > bytes.length ? j : bytes.length;
}

async function readFully(fh: FileHandle, buf: Buffer, n: number, position: number): Promise<void> {
  let off = 0;
  while (off < n) {
    const { bytesRead } = await fh.read(buf, off, n - off, position + off);
    // The file shrank under us: what is left reads as zeros, which is harmless here.
    if (bytesRead === 0) {
      buf.fill(0, off, n);
      return;
    }
    off += bytesRead;
  }
}

/**
 * The last `lines` lines of a VM's console across its runs: the current log first, then the runs
 * rotated before it (`log.1`, `log.2` …) while lines and bytes are left, oldest first. Each run's
 * log begins with the supervisor's run-start line, so the runs stay told apart.
 */
export async function tailRuns(
  file: string,
  lines: number,
  opts: TailOptions = {},
  keep = DEFAULT_CONSOLE_KEEP,
): Promise<string[]> {
  const maxBytes = opts.maxBytes ?? Number.POSITIVE_INFINITY;
  const runs: string[][] = [];
  let left = lines;
  let bytes = 0;
  for (let i = 0; i <= keep && left > 0 && bytes < maxBytes; i++) {
    const got = await tail(i === 0 ? file : `${file}.${i}`, left, { ...opts, maxBytes: maxBytes - bytes });
    runs.unshift(got);
    left -= got.length;
    for (const l of got) bytes += Buffer.byteLength(l) + 1;
    // Go further back only from a run read whole (down to its run-start line): a run cut short by
    // the limits, or a log from before nixvm wrote that line, would join the older run unmarked.
    if (got.length > 0 && runStartOf(got[0]!) === null) break;
  }
  return runs.flat();
}

export interface FollowOptions {
  /** Start from the beginning of the file instead of its current end. */
  fromStart?: boolean;
  /** The safety-net poll, for file systems whose change events are unreliable. */
  pollMs?: number;
  /**
   * A last line without a newline (a `login:` prompt) is delivered after this quiet time;
   * text that later continues it arrives as a new line.
   */
  partialFlushMs?: number;
  /**
   * A line longer than this (UTF-8 bytes) is delivered cut to it, marked with `…`; the rest of
   * that line is skipped (a guest writing megabytes without a newline costs no memory).
   */
  maxLineBytes?: number;
  /** Keep the process alive while following (like fs.watch's option). */
  persistent?: boolean;
  onError?: (err: Error) => void;
}

export interface Follower {
  /** Settles once the file has been looked at the first time: later appends are followed. */
  readonly ready: Promise<void>;
  close(): void;
}

/**
 * Stream lines appended to a file as they are written. Change events come from fs.watch on the
 * file's directory (so a file that does not exist yet, or is replaced by rotation, is still
 * seen) plus a slow fallback poll; nothing spins while the file is quiet. On rotation the rest
 * of the old file is read before switching to the new one; on truncation it starts over.
 */
export function follow(file: string, onLines: (lines: string[]) => void, opts: FollowOptions = {}): Follower {
  const dir = path.dirname(file);
  const base = path.basename(file);
  const pollMs = opts.pollMs ?? 2000;
  const partialFlushMs = opts.partialFlushMs ?? 1000;
  const maxLineBytes = Math.max(4, opts.maxLineBytes ?? 64 * 1024);
  const persistent = opts.persistent ?? true;
  const report = (e: unknown): void => {
    if (!closed) opts.onError?.(e instanceof Error ? e : new Error(String(e)));
  };

  let closed = false;
  let fh: FileHandle | null = null;
  let ino = -1;
  let dev = -1;
  let offset = 0;
  let decoder = new StringDecoder('utf8');
  let partial = '';
  /** The current line passed the cap: drop the rest of it, up to its newline. */
  let skipping = false;
  let busy = false;
  let again = false;
  let flushTimer: NodeJS.Timeout | null = null;
  const buf = Buffer.alloc(CHUNK);
  let first = true;
  let markReady = (): void => {};
  const ready = new Promise<void>((r) => (markReady = r));

  const emit = (lines: string[]): void => {
    if (closed || lines.length === 0) return;
    try {
      onLines(lines);
    } catch (e) {
      report(e);
    }
  };

  /**
   * Deliver the unfinished last line. When the file is finished (replaced, truncated) the
   * decoder is finished too; after a quiet moment it keeps any half-received character.
   */
  const flushPartial = (fileDone: boolean): void => {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = null;
    let rest = partial;
    if (fileDone) {
      if (!skipping) rest += decoder.end();
      decoder = new StringDecoder('utf8');
      skipping = false;
    }
    partial = '';
    if (rest) emit([rest.endsWith('\r') ? rest.slice(0, -1) : rest]);
  };

  const feed = (chunk: Buffer): void => {
    const text = decoder.write(chunk);
    const lines: string[] = [];
    for (let start = 0; ; ) {
      const nl = text.indexOf('\n', start);
      if (!skipping) {
        partial += nl === -1 ? text.slice(start) : text.slice(start, nl);
        if (Buffer.byteLength(partial) > maxLineBytes) {
          lines.push(`${cutUtf8(partial, maxLineBytes)}…`);
          partial = '';
          skipping = true;
        }
      }
      if (nl === -1) break;
      if (!skipping) lines.push(partial.endsWith('\r') ? partial.slice(0, -1) : partial);
      partial = '';
      skipping = false;
      start = nl + 1;
    }
    emit(lines);
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = null;
    if (partial) {
      flushTimer = setTimeout(() => flushPartial(false), partialFlushMs);
      if (!persistent) flushTimer.unref();
    }
  };

  const drain = async (): Promise<void> => {
    while (fh && !closed) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      if (bytesRead === 0) return;
      offset += bytesRead;
      feed(buf.subarray(0, bytesRead));
    }
  };

  const closeHandle = async (): Promise<void> => {
    const h = fh;
    fh = null;
    await h?.close().catch(() => {});
  };

  const check = async (): Promise<void> => {
    const initial = first;
    first = false;
    // Whatever the open file still has: after a rotation this is the old run's end.
    await drain();
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(file);
    } catch (e) {
      if (isNotFound(e)) return; // Rotated away and not recreated yet: wait for it.
      throw e;
    }
    if (fh && (st.ino !== ino || st.dev !== dev)) {
      // Replaced: the old file is finished.
      flushPartial(true);
      await closeHandle();
    } else if (fh && st.size < offset) {
      // Truncated in place: start over.
      flushPartial(true);
      offset = 0;
    }
    if (!fh) {
      try {
        fh = await open(file, 'r');
      } catch (e) {
        if (isNotFound(e)) return;
        throw e;
      }
      const s = await fh.stat();
      ino = s.ino;
      dev = s.dev;
      // Only the file present when following began may be skipped to its end; a new one is all new.
      offset = initial && !opts.fromStart ? s.size : 0;
    }
    await drain();
  };

  const schedule = (): void => {
    if (closed) return;
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    void (async () => {
      do {
        again = false;
        try {
          await check();
        } catch (e) {
          report(e);
        }
        markReady();
      } while (again && !closed);
      busy = false;
      if (closed) await closeHandle();
    })();
  };

  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(dir, { persistent }, (_event, name) => {
      if (!name || name === base) schedule();
    });
    watcher.on('error', (e) => {
      // The directory went away or the watch broke: the poll carries on.
      report(e);
      watcher?.close();
      watcher = null;
    });
  } catch (e) {
    report(e);
  }
  const poll = setInterval(schedule, pollMs);
  if (!persistent) poll.unref();
  schedule();

  return {
    ready,
    close(): void {
      if (closed) return;
      closed = true;
      markReady();
      watcher?.close();
      clearInterval(poll);
      if (flushTimer) clearTimeout(flushTimer);
      if (!busy) void closeHandle();
    },
  };
}
