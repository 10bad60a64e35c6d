/**
 * The one list of error codes every face maps to its own form (CLI exit codes, dialogs, replies),
 * the error class that carries a code across the socket and IPC, and the one mapping from any
 * thrown value to the wire shape.
 */

export const AGENT_ERROR_CODES = ['no-such-vm', 'bad-request', 'failed', 'not-running'] as const;
export type AgentErrorCode = (typeof AGENT_ERROR_CODES)[number];

export interface AgentErrorShape {
  code: AgentErrorCode;
  message: string;
}

export function isAgentErrorCode(c: unknown): c is AgentErrorCode {
  return typeof c === 'string' && (AGENT_ERROR_CODES as readonly string[]).includes(c);
}

/** A command failure that carries a code across the socket and IPC. */
export class AgentError extends Error {
  readonly code: AgentErrorCode;
  constructor(code: AgentErrorCode, message: string) {
    super(message);
    this.name = 'AgentError';
    this.code = code;
  }
  toJSON(): AgentErrorShape {
    return { code: this.code, message: this.message };
  }
}

/**
 * The code of an AgentError, also when it crossed the socket or a realm (then it is not an
 * instance of our class, but keeps its name and code).
 */
export function agentErrorCode(err: unknown): AgentErrorCode | null {
  if (err === null || typeof err !== 'object') return null;
  const e = err as { name?: unknown; code?: unknown };
  return e.name === 'AgentError' && isAgentErrorCode(e.code) ? e.code : null;
}

/** The wire form of any thrown value: AgentErrors keep their code, anything else is 'failed'. */
export function errorShape(err: unknown): AgentErrorShape {
  if (err !== null && typeof err === 'object') {
    const e = err as { message?: unknown };
    const code = agentErrorCode(err);
    if (code && typeof e.message === 'string') return { code, message: e.message };
    if (typeof e.message === 'string' && e.message) return { code: 'failed', message: e.message };
  }
  return { code: 'failed', message: typeof err === 'string' && err ? err : 'The agent failed without a message.' };
}

/** The message of any thrown value, for logs and sentences. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
