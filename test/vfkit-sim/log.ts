/**
 * vfkit's output channels, reproduced: logrus lines on stderr (text formatter, no TTY), Go's
 * standard `log` lines (the signal handler uses it), gin's access log on stdout, and cobra's error
 * report (`Error: …`, the usage, then the error again from main()).
 */
import fs from 'node:fs';
import { usageString } from './flags.ts';

export type Level = 'debug' | 'info' | 'warning' | 'error' | 'fatal';
const rank: Record<Level, number> = { debug: 5, info: 4, warning: 3, error: 2, fatal: 1 };
let threshold = rank.info;

export function setLevel(l: 'debug' | 'info' | 'error'): void {
  threshold = rank[l];
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

function rfc3339(d: Date): string {
  const off = -d.getTimezoneOffset();
  const zone =
    off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${zone}`;
}

function stdTime(d: Date): string {
  return `${d.getFullYear()}/${pad(d.getMonth() + 1)}/${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** logrus quotes a value unless it is made only of these characters. */
function logrusValue(s: string): string {
  return /^[A-Za-z0-9\-._/@^+]*$/.test(s) ? s : JSON.stringify(s);
}

// Synchronous writes: lines must be out before a process.exit that may follow at once.
function write(fd: number, s: string): void {
  try {
    fs.writeSync(fd, s);
  } catch {
    // A closed stdout/stderr (detached, parent gone) must not take the VM down.
  }
}

export function log(level: Level, msg: string): void {
  if (rank[level] > threshold) return;
  write(2, `time=${JSON.stringify(rfc3339(new Date()))} level=${level} msg=${logrusValue(msg)}\n`);
}

/** Go's log.Printf: "2006/01/02 15:04:05 message". */
export function stdLog(msg: string): void {
  write(2, `${stdTime(new Date())} ${msg}\n`);
}

/** gin's default Logger middleware line (no colours: stdout is not a terminal). */
export function ginLog(status: number, tookUs: number, client: string, method: string, path: string): void {
  const d = new Date();
  const took = tookUs < 1000 ? `${tookUs.toFixed(3)}µs` : `${(tookUs / 1000).toFixed(4)}ms`;
  write(
    1,
    `[GIN] ${stdTime(d).replace(' ', ' - ')} | ${String(status).padStart(3)} | ${took.padStart(13)} | ${client.padStart(15)} | ${method.padEnd(7)} ${JSON.stringify(path)}\n`,
  );
}

/** What vfkit prints when its command returns an error, before exiting 1. */
export function cobraError(msg: string): void {
  write(2, `Error: ${msg}\n${usageString()}\n${msg}\n`);
}

export function stdout(s: string): void {
  write(1, s);
}
