/**
 * System notifications for the agent's notices (build finished/failed, VM crashed). A click
 * opens the log the notice names. Where notifications are unavailable (recent macOS shows them
 * only for signed apps) the notices are kept for the native menu instead.
 */
import { Notification } from 'electron';
import type { LogKind, Notice } from '../api/types.ts';

const KEEP = 3;

export class Notifier {
  private readonly openLog: (vm: string, kind: LogKind) => void;
  private readonly changed: () => void;
  /** Live notifications: Electron drops click handlers of garbage-collected ones. */
  private readonly live = new Set<Notification>();
  private unseen: Notice[] = [];
  readonly supported: boolean;

  constructor(openLog: (vm: string, kind: LogKind) => void, changed: () => void) {
    this.openLog = openLog;
    this.changed = changed;
    this.supported = Notification.isSupported();
  }

  show(n: Notice): void {
    if (!this.supported) {
      this.keep(n);
      return;
    }
    const note = new Notification({ title: n.title, body: n.body, silent: n.level === 'info' });
    this.live.add(note);
    const done = () => this.live.delete(note);
    note.on('click', () => {
      done();
      if (n.vm) this.openLog(n.vm, n.log ?? 'console');
    });
    note.on('close', done);
    note.on('failed', () => {
      done();
      this.keep(n);
    });
    note.show();
  }

  private keep(n: Notice): void {
    this.unseen = [n, ...this.unseen].slice(0, KEEP);
    this.changed();
  }

  /** Notices not shown as notifications, newest first (for the native menu). */
  get pending(): Notice[] {
    return this.unseen;
  }

  /** The menu showing them was opened: they have been seen. */
  seen(): void {
    this.unseen = [];
  }
}
