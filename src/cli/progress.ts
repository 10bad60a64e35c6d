/**
 * Live build progress for the VMs a command acts on, fed by the agent's snapshot events: one
 * cli-progress bar per building VM on a terminal, plain lines (only when something a user would
 * notice changed) when stdout is a pipe or a file. Every line says how long the build has run;
 * while nix still evaluates the flake it says "evaluating" rather than a 0 % bar. A finished or
 * failed build's bar is removed, so the command's result line is what stays on screen.
 */
import cliProgress from 'cli-progress';
import type { VmSnapshot } from '../api/types.ts';
import { formatProgressLine, formatStoreImageProgress, progressPayload, visibleName } from './format.ts';
import type { CliOutput } from './io.ts';

export interface BuildProgressView {
  /** Feed the latest snapshot of a VM the command is about. */
  update(vm: VmSnapshot): void;
  /** Print a line above the bars (or just print it). */
  log(line: string): void;
  /** Remove what is left of the bars and release the terminal. */
  stop(): void;
}

/** Picks the bar on a TTY, plain lines otherwise; nothing at all for --json. */
export function createProgressView(
  out: CliOutput,
  now: () => number = Date.now,
  opts: { silent?: boolean } = {},
): BuildProgressView {
  if (opts.silent) return { update() {}, log() {}, stop() {} };
  return out.isTTY && out.stream ? new BarView(out.stream, now) : new LineView(out, now);
}

/** Plain lines: printed when the stage, percent (to the integer), builds, derivation or phase change. */
export class LineView implements BuildProgressView {
  readonly #out: CliOutput;
  readonly #now: () => number;
  readonly #last = new Map<string, string>();
  constructor(out: CliOutput, now: () => number = Date.now) {
    this.#out = out;
    this.#now = now;
  }
  update(vm: VmSnapshot): void {
    const img = vm.disks?.preparing;
    if (img) {
      // The store image made just before boot: a line per phase and per MiB written.
      const key = `image|${img.phase}|${Math.floor(img.bytesWritten / (1 << 20))}`;
      if (this.#last.get(vm.name) !== key) {
        this.#last.set(vm.name, key);
        this.#out.write(`${visibleName(vm.name)}: ${formatStoreImageProgress(img)}\n`);
      }
      return;
    }
    const line = formatProgressLine(vm, this.#now());
    if (line === null) return;
    const p = vm.build.progress;
    // The last log line and the clock change all the time; they ride along but never trigger a line.
    const key = p
      ? `${p.stage}|${Math.floor(p.percent)}|${p.buildsDone}/${p.buildsExpected}|${p.currentDrv}|${p.phase}`
      : '';
    if (this.#last.get(vm.name) === key) return;
    this.#last.set(vm.name, key);
    this.#out.write(`${line}\n`);
  }
  log(line: string): void {
    this.#out.write(`${line}\n`);
  }
  stop(): void {}
}

type Payload = ReturnType<typeof progressPayload>;

/** One bar's line: "web [████░░] 42% 3/7 builds nginx.drv buildPhase | make… 12s", or "web evaluating… 3s". */
function barLine(options: cliProgress.Options, params: cliProgress.Params, payload: Payload): string {
  if (payload.evaluating) return `${payload.vm} evaluating… ${payload.elapsed}`.trimEnd();
  const size = options.barsize ?? 24;
  const done = Math.round(params.progress * size);
  const bar =
    (options.barCompleteString ?? '█').slice(0, done) + (options.barIncompleteString ?? '░').slice(0, size - done);
  const pct = `${Math.floor(params.progress * 100)}%`;
  const rest = [payload.builds, payload.drv, payload.line ? `| ${payload.line}` : ''].filter(Boolean).join(' ');
  return `${payload.vm} ${payload.elapsed} [${bar}] ${pct} ${rest}`.trimEnd();
}

class BarView implements BuildProgressView {
  readonly #multi: cliProgress.MultiBar;
  readonly #bars = new Map<string, { bar: cliProgress.SingleBar; vm: VmSnapshot }>();
  readonly #stream: NodeJS.WriteStream;
  readonly #phase = new Map<string, string>();
  readonly #now: () => number;
  /** Redraws the elapsed time once a second while nothing else changes. */
  #clock: NodeJS.Timeout | null = null;
  constructor(stream: NodeJS.WriteStream, now: () => number) {
    this.#stream = stream;
    this.#now = now;
    this.#multi = new cliProgress.MultiBar(
      {
        stream,
        format: barLine as unknown as cliProgress.GenericFormatter,
        barsize: 24,
        hideCursor: true,
        clearOnComplete: true,
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
      this.log(`${visibleName(vm.name)}: ${img.phase}…`);
    }
    const p = vm.build.progress;
    const entry = this.#bars.get(vm.name);
    if (vm.build.status !== 'building') {
      // Done (or failed): the bar goes, the command's own line says how it ended.
      if (entry) {
        this.#multi.remove(entry.bar);
        this.#bars.delete(vm.name);
      }
      if (this.#bars.size === 0) {
        this.#stopClock();
        // Release the terminal now: lines printed next must not be cleared by a later stop().
        if (this.#multi.isActive) this.#multi.stop();
      }
      return;
    }
    const value = p && p.stage !== 'evaluating' ? Math.floor(p.percent) : 0;
    if (!entry) {
      const bar = this.#multi.create(100, value, progressPayload(vm, this.#now()));
      this.#bars.set(vm.name, { bar, vm });
      this.#startClock();
    } else {
      entry.vm = vm;
      entry.bar.update(value, progressPayload(vm, this.#now()));
    }
  }
  log(line: string): void {
    // MultiBar only flushes its log buffer while bars are drawn.
    if (this.#multi.isActive && this.#bars.size > 0) this.#multi.log(`${line}\n`);
    else this.#stream.write(`${line}\n`);
  }
  stop(): void {
    this.#stopClock();
    for (const { bar } of this.#bars.values()) this.#multi.remove(bar);
    this.#bars.clear();
    if (!this.#multi.isActive) return;
    this.#multi.update(); // flush lines logged since the last redraw
    this.#multi.stop();
  }
  #startClock(): void {
    this.#clock ??= setInterval(() => {
      for (const { bar, vm } of this.#bars.values()) bar.update(progressPayload(vm, this.#now()));
    }, 1000);
    this.#clock.unref();
  }
  #stopClock(): void {
    if (this.#clock) clearInterval(this.#clock);
    this.#clock = null;
  }
}
