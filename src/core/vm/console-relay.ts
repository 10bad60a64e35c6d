/**
 * A VM's interactive serial console: vfkit's `virtio-serial,pty` gives the guest's hvc0 a
 * pseudo-terminal and names its slave (`ptyName` in `/vm/inspect`). The agent is that pty's one
 * reader: it appends what the guest writes to the console log (the file console.ts rotates and
 * tails, CRLF written as LF) and relays it to every attached client, and it passes input from one
 * client at a time (the newest that asked for it; the others watch until it detaches). vfkit holds
 * both ends open for its lifetime, so an agent that restarts opens the same pty again and reads
 * what the guest wrote meanwhile, as far as the pty's buffer held it.
 */
import { constants, openSync, closeSync, write as fsWrite } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { DEFAULT_CONSOLE_MAX_BYTES, keepTail } from './console.ts';
import tty from 'node:tty';
import { AgentError } from '../../api/errors.ts';
import type { ConsoleAttachment, ConsoleEvent, VmRunState } from '../../api/types.ts';
import { shellWord } from '../../host/shell.ts';
import { MAX_CONSOLE_INPUT_BYTES } from '../../api/validate.ts';

/** Bytes of recent output a new attachment is shown first (the prompt, the last screen). */
export const CONSOLE_HISTORY_BYTES = 16 * 1024;

interface Client {
  fn: (ev: ConsoleEvent) => void;
  wantsInput: boolean;
}

export class ConsoleRelay {
  readonly vm: string;
  readonly pty: string;
  readonly #logFile: string;
  readonly #onProblem: (sentence: string) => void;
  /** The log of one run may not grow past this: its first half goes (its end explains a crash). */
  readonly #maxLogBytes: number;
  #logBytes = 0;
  #reader: tty.ReadStream | null = null;
  #writeFd: number | null = null;
  #log: FileHandle | null = null;
  #logChain: Promise<void> = Promise.resolve();
  #pendingCr = false;
  #history: Buffer[] = [];
  #historyBytes = 0;
  readonly #clients = new Set<Client>();
  /** Newest last: the last one holds the input. */
  #writers: Client[] = [];
  #ended: string | null = null;
  readonly #closed: Promise<void>;
  #settleClosed!: () => void;

  constructor(
    vm: string,
    pty: string,
    logFile: string,
    onProblem: (sentence: string) => void,
    maxLogBytes = DEFAULT_CONSOLE_MAX_BYTES,
  ) {
    this.#maxLogBytes = maxLogBytes;
    this.vm = vm;
    this.pty = pty;
    this.#logFile = logFile;
    this.#onProblem = onProblem;
    this.#closed = new Promise((r) => (this.#settleClosed = r));
  }

  /** Settles once the pty is closed and everything read from it is in the log. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  get ended(): boolean {
    return this.#ended !== null;
  }

  /**
   * Open the pty and the log (appending). `history` seeds what a new attachment sees first: after
   * an agent restart, the end of the log the previous agent wrote. Throws a sentence.
   */
  async open(history?: Buffer): Promise<void> {
    if (history?.length) this.#remember(history);
    this.#log = await open(this.#logFile, 'a', 0o644);
    this.#logBytes = (await this.#log.stat()).size;
    let fd: number;
    try {
      // Never our controlling terminal: the agent must not get the guest's ^C as a signal.
      fd = openSync(this.pty, constants.O_RDWR | constants.O_NOCTTY);
      this.#writeFd = openSync(this.pty, constants.O_WRONLY | constants.O_NOCTTY);
    } catch (err) {
      await this.#log.close().catch(() => {});
      this.#log = null;
      throw new Error(
        `Could not open the console of VM ${JSON.stringify(this.vm)} at ${this.pty}: ${(err as Error).message}; restart the VM to get a new one.`,
      );
    }
    const reader = new tty.ReadStream(fd);
    // Byte for byte: no echo back to the guest, no line editing, no ^C/^S taken by the host's tty.
    reader.setRawMode(true);
    reader.on('data', (chunk: Buffer) => this.#onOutput(chunk));
    reader.on('error', () => this.#finish(`The console of VM ${JSON.stringify(this.vm)} closed: the VM ended.`));
    reader.on('end', () => this.#finish(`The console of VM ${JSON.stringify(this.vm)} closed: the VM ended.`));
    this.#reader = reader;
  }

  #remember(chunk: Buffer): void {
    this.#history.push(chunk);
    this.#historyBytes += chunk.length;
    while (this.#historyBytes - (this.#history[0]?.length ?? 0) >= CONSOLE_HISTORY_BYTES) {
      this.#historyBytes -= this.#history.shift()!.length;
    }
  }

  #onOutput(chunk: Buffer): void {
    this.#remember(chunk);
    for (const c of this.#clients) c.fn({ kind: 'data', data: chunk });
    const text = this.#toLog(chunk);
    if (text.length === 0) return;
    // One chain: writes stay in order, and a trim happens between two of them.
    this.#logChain = this.#logChain.then(async () => {
      if (!this.#log) return;
      try {
        await this.#log.write(text);
        this.#logBytes += text.length;
        if (this.#logBytes > this.#maxLogBytes) await this.#trim();
      } catch (err) {
        this.#onProblem(`Could not write the console log of VM ${JSON.stringify(this.vm)}: ${(err as Error).message}.`);
      }
    });
  }

  /** A guest that writes without end keeps its log bounded while it runs, not only at the next boot. */
  async #trim(): Promise<void> {
    const log = this.#log;
    if (!log) return;
    this.#log = null;
    await log.close();
    try {
      await keepTail(this.#logFile, Math.floor(this.#maxLogBytes / 2));
    } finally {
      this.#log = await open(this.#logFile, 'a', 0o644);
      this.#logBytes = (await this.#log.stat()).size;
    }
  }

  /** The log keeps lines, not a terminal's CRLFs (a CR split from its LF across reads included). */
  #toLog(chunk: Buffer): Buffer {
    const out: number[] = [];
    let i = 0;
    if (this.#pendingCr) {
      this.#pendingCr = false;
      if (chunk[0] !== 0x0a) out.push(0x0d);
    }
    for (; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === 0x0d) {
        if (i + 1 === chunk.length) this.#pendingCr = true;
        else if (chunk[i + 1] !== 0x0a) out.push(b);
        continue;
      }
      out.push(b);
    }
    return Buffer.from(out);
  }

  /** Attach a client; it gets the recent output, then everything live, and the input if it asks. */
  attach(fn: (ev: ConsoleEvent) => void, wantsInput: boolean): ConsoleAttachment {
    const client: Client = { fn, wantsInput };
    if (this.#ended) {
      queueMicrotask(() => fn({ kind: 'end', reason: this.#ended! }));
      return this.#handle(client);
    }
    if (this.#historyBytes) fn({ kind: 'data', data: Buffer.concat(this.#history) });
    this.#clients.add(client);
    if (wantsInput) {
      const before = this.#writers.at(-1);
      this.#writers.push(client);
      if (before) before.fn({ kind: 'input', writer: false });
      fn({ kind: 'input', writer: true });
    } else {
      fn({ kind: 'input', writer: false });
    }
    return this.#handle(client);
  }

  #handle(client: Client): ConsoleAttachment {
    return {
      vm: this.vm,
      pty: this.pty,
      write: (data) => {
        this.#input(client, data);
      },
      detach: () => this.#detach(client),
    };
  }

  #input(client: Client, data: Uint8Array): boolean {
    if (this.#ended || this.#writeFd === null || this.#writers.at(-1) !== client) return false;
    if (data.length === 0 || data.length > MAX_CONSOLE_INPUT_BYTES) return false;
    // A blocking write on the thread pool: a guest slow to read its input must not stall the agent.
    fsWrite(this.#writeFd, data, (err) => {
      if (err && !this.#ended)
        this.#onProblem(`Could not type into the console of VM ${JSON.stringify(this.vm)}: ${err.message}.`);
    });
    return true;
  }

  #detach(client: Client): void {
    if (!this.#clients.delete(client)) return;
    const wasWriter = this.#writers.at(-1) === client;
    this.#writers = this.#writers.filter((c) => c !== client);
    const next = this.#writers.at(-1);
    if (wasWriter && next) next.fn({ kind: 'input', writer: true });
  }

  /** Clients attached now (the snapshot shows it; tests wait on it). */
  get attached(): number {
    return this.#clients.size;
  }

  #finish(reason: string): void {
    if (this.#ended) return;
    this.#ended = reason;
    for (const c of this.#clients) c.fn({ kind: 'end', reason });
    this.#clients.clear();
    this.#writers = [];
    const reader = this.#reader;
    this.#reader = null;
    reader?.destroy();
    if (this.#writeFd !== null) {
      try {
        closeSync(this.#writeFd);
      } catch {
        // Already gone with the pty.
      }
      this.#writeFd = null;
    }
    void this.#logChain
      .then(() => {
        if (this.#pendingCr) return this.#log?.write(Buffer.from([0x0d])).then(() => {});
      })
      .then(() => {
        const log = this.#log;
        this.#log = null;
        return log?.close();
      })
      .catch(() => {})
      .finally(() => this.#settleClosed());
  }

  /**
   * Stop reading: the run ended (after the pty said so, or at once when `now`), or the agent
   * shuts down (the VM runs on; the next agent opens the pty again).
   */
  close(reason = `The console of VM ${JSON.stringify(this.vm)} closed: the agent stopped.`): Promise<void> {
    this.#finish(reason);
    return this.#closed;
  }
}

/** What attaching needs of the supervisor, the owner of the relays. */
export interface ConsoleSource {
  console(name: string): ConsoleRelay | null;
  consoleIsLogFile(name: string): boolean;
  status(name: string): { state: VmRunState };
}

/**
 * Attach to a live VM's console, waiting (up to 10 s) for a VM that just started: its console
 * opens once vfkit's REST API first answers. Null when the VM is not live; a live VM whose
 * console cannot be had is one sentence saying what to do.
 */
export async function attachWhenOpen(
  src: ConsoleSource,
  name: string,
  fn: (ev: ConsoleEvent) => void,
  input: boolean,
): Promise<ConsoleAttachment | null> {
  const live = () => ['starting', 'running'].includes(src.status(name).state);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const relay = src.console(name);
    if (relay) return relay.attach(fn, input);
    if (!live() || src.consoleIsLogFile(name) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!live()) return null;
  if (src.consoleIsLogFile(name))
    throw new AgentError(
      'failed',
      `VM ${JSON.stringify(name)} was started by an earlier nixvm whose console was only a log file; restart it (\`nixvm restart ${shellWord(name)}\`) to type into its console.`,
    );
  throw new AgentError(
    'failed',
    `The console of VM ${JSON.stringify(name)} could not be opened; see the agent's log (\`nixvm logs --agent\`) and restart the VM.`,
  );
}
