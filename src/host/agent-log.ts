/**
 * The agent's own log file (<logsDir>/agent.log): what it decided and every external program it
 * ran (argv, duration, exit), one timestamped line each. Appended synchronously in small lines so
 * a crash loses nothing; the previous file is kept as agent.1.log once it passes the size cap.
 */
import fs from 'node:fs';
import path from 'node:path';
import { onRun, type RunRecord } from './runner.ts';

const MAX_BYTES = 8 * 1024 * 1024;

export class AgentLog {
  readonly path: string;
  private fd: number | null = null;
  private written = 0;
  private readonly offRuns: () => void;

  constructor(logsDir: string) {
    this.path = path.join(logsDir, 'agent.log');
    fs.mkdirSync(logsDir, { recursive: true });
    this.open();
    this.offRuns = onRun((r) => this.write(describeRun(r)));
  }

  private open(): void {
    try {
      const size = fs.existsSync(this.path) ? fs.statSync(this.path).size : 0;
      if (size > MAX_BYTES) fs.renameSync(this.path, path.join(path.dirname(this.path), 'agent.1.log'));
      this.fd = fs.openSync(this.path, 'a', 0o600);
      this.written = size > MAX_BYTES ? 0 : size;
    } catch {
      this.fd = null; // a log we cannot write must not stop the agent
    }
  }

  write(line: string): void {
    if (this.fd === null) return;
    const text = `${new Date().toISOString()} ${line.replace(/\n/g, '\n    ')}\n`;
    try {
      fs.writeSync(this.fd, text);
      this.written += Buffer.byteLength(text);
      if (this.written > MAX_BYTES) {
        fs.closeSync(this.fd);
        this.open();
      }
    } catch {
      // Disk full or the file vanished: keep running without it.
    }
  }

  close(): void {
    this.offRuns();
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** `run ["nix","build",…] 1234 ms exit 0` — argv as JSON so spaces stay visible. */
export function describeRun(r: RunRecord): string {
  const end = r.cancelled
    ? 'cancelled'
    : r.timedOut
      ? 'timed out'
      : r.signal
        ? `signal ${r.signal}`
        : r.exitCode === null
          ? 'started'
          : `exit ${r.exitCode}`;
  return `run ${JSON.stringify(r.argv)} ${r.durationMs} ms ${end}`;
}
