/**
 * Exit codes and the mapping from whatever went wrong to one sentence and one code. Scripts rely
 * on the codes; `nixvm --help` lists them. In JSON mode the same failure is printed on stdout as
 * `{"error": {"code", "message"}}` with the same exit code.
 */
import { agentErrorCode } from '../api/errors.ts';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  notRunning: 3,
  noSuchVm: 4,
  /** Ctrl-C while waiting; the agent carries on. */
  interrupted: 130,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  ok
  1  the command failed (the message says why); for \`ls\` and \`reevaluate\`: a flake did not evaluate
  2  usage error (also \`nixvm\` with no command, which prints this help)
  3  the agent is not running (start it with \`nixvm daemon\` or open NixVM.app)
  4  no such VM
  130  interrupted (Ctrl-C) while waiting; the agent carries on unless you cancelled
  \`nixvm ssh\` exits with ssh's own status. With --json, a failure is {"error": {"code", "message"}} on stdout.`;

/** A failure the CLI itself decided on, with the code to exit with. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number, message: string) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** Ctrl-C (or SIGTERM) while a command waited. */
export class Interrupted extends Error {
  constructor() {
    super('Interrupted.');
    this.name = 'Interrupted';
  }
}

export function notRunningMessage(socketPath: string): string {
  return `The nixvm agent is not running (nothing answers on ${socketPath}); start it with \`nixvm daemon\` or open NixVM.app.`;
}

/** Exit code and the one sentence to print for any error that reached the top. */
export function describeError(err: unknown, socketPath: string): { code: number; message: string } {
  if (err instanceof CliError) return { code: err.exitCode, message: err.message };
  if (err instanceof Interrupted) return { code: EXIT.interrupted, message: err.message };
  switch (agentErrorCode(err)) {
    case 'not-running':
      return { code: EXIT.notRunning, message: notRunningMessage(socketPath) };
    case 'no-such-vm':
      return { code: EXIT.noSuchVm, message: (err as Error).message };
    case 'bad-request':
    case 'failed':
      return { code: EXIT.failed, message: (err as Error).message };
    default:
      break;
  }
  const message = err instanceof Error && err.message ? firstLine(err.message) : String(err);
  return { code: EXIT.failed, message };
}

const CODE_NAMES: Record<number, string> = {
  [EXIT.failed]: 'failed',
  [EXIT.usage]: 'usage',
  [EXIT.notRunning]: 'not-running',
  [EXIT.noSuchVm]: 'no-such-vm',
  [EXIT.interrupted]: 'interrupted',
};

/** The error object JSON mode prints: the agent's own code when it has one, else the exit code's name. */
export function jsonError(
  err: unknown,
  socketPath: string,
): { code: number; error: { code: string; message: string } } {
  const { code, message } = describeError(err, socketPath);
  const agentCode = agentErrorCode(err);
  return { code, error: { code: agentCode ?? CODE_NAMES[code] ?? 'failed', message } };
}

function firstLine(s: string): string {
  return s.split('\n', 1)[0] ?? s;
}
