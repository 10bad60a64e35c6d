/**
 * vfkit's `virtio-serial,pty` (pkg/vf/virtio.go toVzConsole): a real pseudo-terminal whose slave
 * path is reported as `ptyName`, master and slave both held open for vfkit's lifetime (so whatever
 * the guest writes while nobody has the slave open waits in the pty's buffer), and the master put
 * into vfkit's partial raw mode (no ICRNL, no ICANON, no ECHO). Node cannot open a pty, so a small
 * Python helper holds it and relays: our writes (the guest's output) to the master, the master's
 * reads (what someone typed on the slave) to us. It exits when we do (its stdin closes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

const HELPER = String.raw`
import fcntl, os, pty, select, struct, sys, termios, time
m, s = pty.openpty()
a = termios.tcgetattr(m)
a[0] &= ~termios.ICRNL
a[3] &= ~(termios.ICANON | termios.ECHO)
termios.tcsetattr(m, termios.TCSANOW, a)
os.write(1, (os.ttyname(s) + "\n").encode())
while True:
    r, _, _ = select.select([0, m], [], [])
    if 0 in r:
        b = os.read(0, 65536)
        if not b:
            # vfkit is gone. Give a reader a moment to take what the guest wrote last (the pty's
            # buffer dies with its master), as vfkit's slower exit would.
            for _ in range(100):
                if struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0\0\0\0"))[0] == 0:
                    break
                time.sleep(0.01)
            sys.exit(0)
        while b:
            b = b[os.write(m, b):]
    if m in r:
        try:
            b = os.read(m, 65536)
        except OSError:
            b = b""
        if b:
            os.write(1, b)
`;

export interface SimPty {
  /** The slave's path, as vfkit reports it. */
  name: string;
  /** What the guest writes on its console (never blocks: held here while the pty is full). */
  write(text: string): void;
  /** Push out what is held, as far as the pipe takes it now (before the process exits). */
  flush(): void;
  /** What someone typed on the slave. */
  onInput(fn: (data: Buffer) => void): void;
  /** vfkit exits: what is held goes out; the helper ends when our end of its pipe closes. */
  close(): void;
}

/** Open one pty; rejects with a sentence when python3 is missing or the helper fails. */
export function openPty(): Promise<SimPty> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn('python3', ['-c', HELPER], { stdio: ['pipe', 'pipe', 'inherit'] });
    } catch (e) {
      reject(new Error(`could not start the pty helper (python3): ${(e as Error).message}`));
      return;
    }
    let head = Buffer.alloc(0);
    let name: string | null = null;
    const inputs: Array<(d: Buffer) => void> = [];
    child.on('error', (e) => {
      if (name === null) reject(new Error(`could not start the pty helper (python3): ${e.message}`));
    });
    child.on('exit', (code) => {
      if (name === null) reject(new Error(`the pty helper exited with code ${code} before opening a pty`));
    });
    // The guest does not care that nobody reads: a helper gone away is a console gone quiet.
    child.stdin!.on('error', () => {});
    child.stdout!.on('data', (chunk: Buffer) => {
      if (name !== null) {
        for (const fn of inputs) fn(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const nl = head.indexOf(0x0a);
      if (nl < 0) return;
      name = head.subarray(0, nl).toString('utf8');
      const rest = head.subarray(nl + 1);
      // Written with writeSync on the pipe's own (non-blocking) fd, so that what the guest wrote just
      // before vfkit exits is in the pipe, not in a stream buffer process.exit throws away.
      const fd = (child.stdin as unknown as { _handle: { fd: number } })._handle.fd;
      const held: Buffer[] = [];
      let timer: NodeJS.Timeout | null = null;
      const flush = () => {
        while (held.length) {
          const b = held[0]!;
          let n: number;
          try {
            n = fs.writeSync(fd, b);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') held.length = 0;
            break;
          }
          if (n < b.length) held[0] = b.subarray(n);
          else held.shift();
        }
        if (held.length && !timer)
          timer = setTimeout(() => {
            timer = null;
            flush();
          }, 5);
      };
      resolve({
        name,
        write: (text) => {
          held.push(Buffer.from(text));
          flush();
        },
        flush,
        onInput: (fn) => {
          inputs.push(fn);
        },
        close: () => {
          flush();
          // EOF for the helper: it lets a reader take the last words, then closes the pty.
          child.stdin!.end();
        },
      });
      if (rest.length)
        setImmediate(() => {
          for (const fn of inputs) fn(rest);
        });
    });
  });
}
