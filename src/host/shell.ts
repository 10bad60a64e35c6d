/**
 * POSIX shell words: the one place that decides how an argv becomes a line to paste into a shell
 * (ssh commands, `inspect`, Terminal's `.command` files).
 */
import { quote } from 'shell-quote';

/**
 * Characters every POSIX shell, bash and zsh leave alone in a word. A word starting with `=` is
 * excluded: zsh expands `=cmd` to a path.
 */
const PLAIN_WORD = /^[A-Za-z0-9_@%+:,./-][A-Za-z0-9_@%+=:,./-]*$/;

/**
 * One argument as a shell word that stays exactly one argument whatever it holds. Plain words are
 * left bare and readable (`virtio-net,nat,mac=…`); everything else is quoted by shell-quote.
 * Throws on a NUL byte, which no command line can carry.
 */
export function shellWord(arg: string): string {
  if (arg.includes('\0')) throw new Error('An argument contains a NUL byte, which no command line can carry.');
  return PLAIN_WORD.test(arg) ? arg : quote([arg]);
}

/** An argv as one line for a shell. */
export function shellLine(argv: readonly string[]): string {
  return argv.map(shellWord).join(' ');
}
