/**
 * Live build progress for the VMs a command acts on, fed by the agent's snapshot events: one
 * cli-progress bar per building VM on a terminal, plain lines (only when something a user would
 * notice changed) when stdout is a pipe or a file.
 */
import cliProgress from 'cli-progress';
import type { VmSnapshot } from '../api/types.ts';
import { formatProgressLine, formatStoreImageProgress, progressPayload } from './format.ts';
import type { CliOutput } from './io.ts';

export interface BuildProgressView {
  /** Feed the latest snapshot of a VM the command is about. */
  update(vm: VmSnapshot): void;
  /** Print a line above the bars (or just print it). */
  log(line: string): void;
  /** Leave the bars as they are (final state) and release the terminal. */
  stop(): void;
}

/** Picks the bar on a TTY, plain lines otherwise. */
export function createProgressView(out: CliOutput): BuildProgressView {
  return out.isTTY && out.stream ? new BarView(out.stream) : new LineView(out);
}

/** Plain lines: printed when percent (to the integer), builds, derivation or phase change. */
export class LineView implements BuildProgressView {
  readonly #out: CliOutput;
  readonly #last = new Map<string, string>();
  constructor(out: CliOutput) {
    this.#out = out;
  }
  update(vm: VmSnapshot): void {
    const img = vm.disks?.preparing;
    if (img) {
      // The store image made just before boot: a line per phase and per MiB written.
      const key = `image|${img.phase}|${Math.floor(img.bytesWritten / (1 << 20))}`;
      if (this.#last.get(vm.name) !== key) {
        this.#last.set(vm.name, key);
        this.#out.write(`${vm.name}: ${formatStoreImageProgress(img)}\n`);
      }
      return;
    }
    const line = formatProgressLine(vm);
    if (line === null) return;
    const p = vm.build.progress;
    // The last log line alone changes many times a second; it rides along but never triggers a line.
    const key = p ? `${Math.floor(p.percent)}|${p.buildsDone}/${p.buildsExpected}|${p.currentDrv}|${p.phase}` : '';
    if (this.#last.get(vm.name) === key) return;
    this.#last.set(vm.name, key);
    this.#out.write(`${line}\n`);
  }
  log(line: string): void {
    this.#out.write(`${line}\n`);
  }
  stop(): void {}
}

class BarView implements BuildProgressView {
  readonly #multi: cliProgress.MultiBar;
  readonly #bars = new Map<string, cliProgress.SingleBar>();
  readonly #stream: NodeJS.WriteStream;
  readonly #phase = new Map<string, string>();
  constructor(stream: NodeJS.WriteStream) {
    this.#stream = stream;
    this.#multi = new cliProgress.MultiBar(
      {
        stream,
        format: '{vm} [{bar}] {percentage}% {builds} {drv} {line}',
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        // Cut at the terminal's edge instead of wrapping, so redraws stay on their own lines.
        linewrap: false,
        fps: 10,
        // Ctrl-C is ours to handle (the command stops the view, then says what carries on).
        gracefulExit: false,
      },
      cliProgress.Presets.shades_classic,
    );
  }
  update(vm: VmSnapshot): void {
    const img = vm.disks?.preparing;
    if (img && this.#phase.get(vm.name) !== img.phase) {
      this.#phase.set(vm.name, img.phase);
      this.log(`${vm.name}: ${img.phase}…`);
    }
    const p = vm.build.progress;
    let bar = this.#bars.get(vm.name);
    if (!bar) {
      if (vm.build.status !== 'building') return;
      bar = this.#multi.create(100, 0, progressPayload(vm));
      this.#bars.set(vm.name, bar);
    }
    if (vm.build.status === 'building') {
      bar.update(p ? Math.floor(p.percent) : 0, progressPayload(vm));
    } else {
      const payload = { ...progressPayload(vm), line: vm.build.status, drv: '', builds: '' };
      bar.update(vm.build.status === 'succeeded' ? 100 : bar.getProgress() * 100, payload);
    }
  }
  log(line: string): void {
    // MultiBar only flushes its log buffer while bars are drawn.
    if (this.#multi.isActive) this.#multi.log(`${line}\n`);
    else this.#stream.write(`${line}\n`);
  }
  stop(): void {
    if (!this.#multi.isActive) return;
    this.#multi.update(); // flush lines logged since the last redraw
    this.#multi.stop();
  }
}
