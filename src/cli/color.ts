/**
 * Colour for the terminal, and none elsewhere: only when the stream is a TTY and NO_COLOR
 * (https://no-color.org) is unset or empty. Applied after columns are laid out, so it never
 * shifts them. Plain escape codes: what is coloured is a state, a verdict or an error, nothing more.
 */
import type { VmRunState } from '../api/types.ts';

export interface Paint {
  readonly enabled: boolean;
  state(state: VmRunState | string, text?: string): string;
  good(text: string): string;
  warn(text: string): string;
  bad(text: string): string;
  dim(text: string): string;
  bold(text: string): string;
}

const sgr =
  (on: boolean, code: string) =>
  (text: string): string =>
    on && text ? `\u001b[${code}m${text}\u001b[0m` : text;

export function makePaint(on: boolean): Paint {
  const good = sgr(on, '32');
  const warn = sgr(on, '33');
  const bad = sgr(on, '31');
  return {
    enabled: on,
    state: (state, text = state) =>
      state === 'running'
        ? good(text)
        : state === 'crashed'
          ? bad(text)
          : state === 'starting' || state === 'stopping'
            ? warn(text)
            : text,
    good,
    warn,
    bad,
    dim: sgr(on, '2'),
    bold: sgr(on, '1'),
  };
}

export const PLAIN: Paint = makePaint(false);

/** Colour on this stream? A TTY, and NO_COLOR unset or empty. */
export function colorFor(out: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  return Boolean(out.isTTY) && !env.NO_COLOR;
}

const ANSI = /\u001b\[[0-9;]*m/g;

/** The width a string takes on screen (colour codes take none). */
export function visibleLength(s: string): number {
  return s.replace(ANSI, '').length;
}
