/**
 * The fake guest's getty on hvc0 when its console is a pty: a login prompt (or agetty's
 * `--autologin`, as NixOS's `services.getty.autologinUser` writes it into serial-getty@.service),
 * then a shell with a line discipline of its own (the guest's tty echoes what it is sent, erases on
 * DEL/backspace, ^C drops the line, ^D on an empty line logs out) and a few commands, enough to log
 * in, run something, and see its output: echo, hostname, whoami, uname, cat /proc/cmdline, seq,
 * systemctl status, stty (`rows R cols C` sets the tty's size, `size` prints it), exit/logout,
 * poweroff. Output lines end in CRLF, as a tty with ONLCR sends them.
 */

export interface ShellHost {
  hostname: string;
  cmdline: string;
  /** The user agetty logs in without asking; null: it asks. */
  autologin: string | null;
  /** Write to the console (the guest's output). */
  write(text: string): void;
  /** `poweroff`: the guest shuts down. */
  poweroff(): void;
}

export class GuestShell {
  private readonly h: ShellHost;
  private user: string | null = null;
  private line = '';
  private pendingCr = false;
  /** The tty's size as `stty` set it (a serial console starts with none). */
  private size = { rows: 0, cols: 0 };

  constructor(host: ShellHost) {
    this.h = host;
  }

  /** The login prompt, as the boot's last line (a fresh getty). */
  start(): void {
    this.user = null;
    this.line = '';
    if (this.h.autologin) {
      this.h.write(`${this.h.hostname} login: ${this.h.autologin} (automatic login)\r\n\r\n`);
      this.loggedIn(this.h.autologin);
    } else {
      this.h.write(`${this.h.hostname} login: `);
    }
  }

  private loggedIn(user: string): void {
    this.user = user;
    this.h.write(`\r\n${this.prompt()}`);
  }

  private prompt(): string {
    const u = this.user ?? 'root';
    return `[${u}@${this.h.hostname}:~]${u === 'root' ? '#' : '$'} `;
  }

  /** Bytes someone typed on the console. */
  input(data: Buffer): void {
    for (const b of data) {
      if (b === 0x0a && this.pendingCr) {
        // CRLF from a pipe: one Enter.
        this.pendingCr = false;
        continue;
      }
      this.pendingCr = b === 0x0d;
      if (b === 0x0d || b === 0x0a) {
        this.h.write('\r\n');
        const l = this.line;
        this.line = '';
        this.enter(l);
      } else if (b === 0x7f || b === 0x08) {
        if (this.line.length) {
          this.line = this.line.slice(0, -1);
          this.h.write('\b \b');
        }
      } else if (b === 0x03) {
        this.line = '';
        this.h.write(`^C\r\n${this.user ? this.prompt() : `${this.h.hostname} login: `}`);
      } else if (b === 0x04) {
        if (this.line === '' && this.user) {
          this.h.write('logout\r\n');
          this.logout();
        }
      } else if (b >= 0x20) {
        const ch = String.fromCharCode(b);
        this.line += ch;
        this.h.write(ch);
      }
    }
  }

  private logout(): void {
    this.user = null;
    // systemd restarts the getty: autologin again, or a fresh prompt.
    this.h.write('\r\n');
    this.start();
  }

  private enter(l: string): void {
    if (this.user === null) {
      const name = l.trim();
      if (name === '') this.h.write(`${this.h.hostname} login: `);
      else this.loggedIn(name);
      return;
    }
    const out = this.run(l.trim());
    if (out === null) return;
    this.h.write(out.map((o) => `${o}\r\n`).join('') + this.prompt());
  }

  /** A command's output lines; null when the command ended the session. */
  private run(cmd: string): string[] | null {
    const [prog = '', ...args] = cmd.split(/\s+/);
    switch (prog) {
      case '':
        return [];
      case 'echo':
        return [args.join(' ')];
      case 'hostname':
        return [this.h.hostname];
      case 'whoami':
        return [this.user ?? 'root'];
      case 'uname':
        return [args.includes('-a') ? `Linux ${this.h.hostname} 6.6.32 #1-NixOS SMP aarch64 GNU/Linux` : 'Linux'];
      case 'cat':
        if (args[0] === '/proc/cmdline') return [this.h.cmdline];
        return [`cat: ${args[0] ?? ''}: No such file or directory`];
      case 'seq': {
        const n = Math.min(Number.parseInt(args[0] ?? '', 10) || 0, 10_000_000);
        const lines: string[] = [];
        for (let i = 1; i <= n; i++) lines.push(String(i));
        return lines;
      }
      case 'systemctl':
        if (args[0] === 'status' && args.length === 1)
          return [
            `● ${this.h.hostname}`,
            '    State: running',
            '    Units: 231 loaded (incl. loaded aliases)',
            '     Jobs: 0 queued',
            '   Failed: 0 units',
          ];
        return [`Unknown command verb '${args[0] ?? ''}'.`];
      case 'stty': {
        if (args[0] === 'size') return [`${this.size.rows} ${this.size.cols}`];
        for (let i = 0; i + 1 < args.length; i += 2) {
          const n = Number.parseInt(args[i + 1]!, 10);
          if (!(n >= 0 && n <= 65535)) return [`stty: invalid integer argument: '${args[i + 1]}'`];
          if (args[i] === 'rows') this.size.rows = n;
          else if (args[i] === 'cols' || args[i] === 'columns') this.size.cols = n;
          else return [`stty: invalid argument '${args[i]}'`];
        }
        return args.length ? [] : ['speed 115200 baud; line = 0;'];
      }
      case 'exit':
      case 'logout':
        this.h.write('logout\r\n');
        this.logout();
        return null;
      case 'poweroff':
        this.h.poweroff();
        return null;
      default:
        return [`-bash: ${prog}: command not found`];
    }
  }
}
