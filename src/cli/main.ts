/**
 * `nixvm`'s process entry (bin/nixvm.js imports this module): turns Ctrl-C and SIGTERM into the
 * abort signal commands wait on, runs main(), and exits with its code once output is flushed.
 * Everything testable lives in app.ts.
 */
import { main } from './app.ts';
import { dispatchLaterInterrupt, foregroundChild } from './io.ts';

const controller = new AbortController();
let signals = 0;
const onSignal = (sig: NodeJS.Signals): void => {
  const child = foregroundChild();
  if (child) {
    // ssh owns the terminal: its Ctrl-C came from the tty already; pass a SIGTERM on.
    if (sig !== 'SIGINT') child.kill(sig);
    return;
  }
  signals += 1;
  if (signals > 1) {
    // A command asking "cancel the build?" takes a second Ctrl-C as "yes"; otherwise it means
    // "now": do not wait for a clean shutdown.
    if (sig === 'SIGINT' && dispatchLaterInterrupt()) return;
    process.exit(sig === 'SIGINT' ? 130 : 143);
  }
  controller.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

// `nixvm watch | head`: the reader left; that is the end of the output, not a crash.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

const code = await main(process.argv.slice(2), { signal: controller.signal });

// stdout to a pipe is asynchronous on macOS: let it drain before exiting.
await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
await new Promise<void>((resolve) => process.stderr.write('', () => resolve()));
process.exit(code);
