/**
 * vfkit's REST API (pkg/rest, pkg/rest/vf) on gin: the routes, status codes and bodies its Go code
 * produces (not only what its docs say).
 * - GET /vm/state → 200 `{"canHardStop":…,"canPause":…,"canResume":…,"canStart":…,"canStop":…,"state":"VirtualMachineStateRunning"}`
 *   (a gin.H map: encoding/json sorts its keys).
 * - POST /vm/state `{"state":"Stop"|"HardStop"|"Pause"|"Resume"}` → 202 with an empty body; a body
 *   that does not decode → 400 `{"error":"<Go json error>"}`; an unknown state or a refused change
 *   → 500 `{"error":"…"}`.
 * - GET /vm/inspect → 200, the config.VirtualMachine as JSON.
 * - anything else → 404 `404 page not found` (text/plain; gin does not answer 405 by default).
 */
import http from 'node:http';
import { ginLog, log } from './log.ts';
import { goQuote } from './flags.ts';

export type StateChange = 'Stop' | 'HardStop' | 'Pause' | 'Resume';

export interface RestMachine {
  stateJson(): Record<string, unknown>;
  inspectJson(): Record<string, unknown>;
  /** Throws an Error whose message is the 500 body's "error" on a refused change. */
  changeState(s: StateChange): void;
  /** HardStop is checked first and carried out once the 202 has gone out (vfkit exits right after). */
  canHardStop(): boolean;
  hardStop(): void;
  hardStopError(): string;
}

/**
 * Go's encoding/json: escapes <, >, & and U+2028/9 for HTML safety, and writes int64/uint64
 * values (BigInt here) exactly, past 2^53.
 */
export function goJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `\u0000bigint:${x}` : x))
    .replace(/"\\u0000bigint:(-?\d+)"/g, '$1')
    .replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** gin's ShouldBindJSON into define.VMState{State string `json:"state"`}: what Go's decoder says. */
function bindState(body: string): { state: string } | { error: string } {
  if (body.trim() === '') return { error: 'EOF' };
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    const t = body.trimStart();
    const c = t[0] ?? '';
    return {
      error: /[{[\d"tfn-]/.test(c)
        ? 'unexpected EOF'
        : `invalid character ${goQuote(c).replace(/^"|"$/g, "'")} looking for beginning of value`,
    };
  }
  const typeName = (x: unknown) =>
    x === null
      ? 'null'
      : Array.isArray(x)
        ? 'array'
        : typeof x === 'object'
          ? 'object'
          : typeof x === 'boolean'
            ? 'bool'
            : typeof x;
  if (v === null) return { state: '' };
  if (typeof v !== 'object' || Array.isArray(v))
    return { error: `json: cannot unmarshal ${typeName(v)} into Go value of type define.VMState` };
  // encoding/json matches field names case-insensitively; an exact match wins.
  const entries = Object.entries(v as Record<string, unknown>);
  const hit = entries.find(([k]) => k === 'state') ?? entries.filter(([k]) => k.toLowerCase() === 'state').at(-1);
  if (!hit || hit[1] === null) return { state: '' };
  if (typeof hit[1] !== 'string')
    return { error: `json: cannot unmarshal ${typeName(hit[1])} into Go struct field VMState.state of type string` };
  return { state: hit[1] };
}

export function createRestServer(m: RestMachine): http.Server {
  return http.createServer((req, res) => {
    const t0 = process.hrtime.bigint();
    const done = (status: number, body: string, type: string | null) => {
      const headers: Record<string, string | number> = { 'Content-Length': Buffer.byteLength(body) };
      if (type) headers['Content-Type'] = type;
      res.writeHead(status, headers);
      res.end(body);
      const client = req.socket.remoteAddress ?? '';
      ginLog(
        status,
        Number(process.hrtime.bigint() - t0) / 1000,
        client.replace(/^::ffff:/, ''),
        req.method ?? '',
        req.url ?? '',
      );
    };
    const json = (status: number, v: unknown) => done(status, goJson(v), 'application/json; charset=utf-8');
    const url = (req.url ?? '/').split('?')[0];
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET' && url === '/vm/state') return json(200, sortKeys(m.stateJson()));
      if (req.method === 'GET' && url === '/vm/inspect') return json(200, m.inspectJson());
      if (req.method === 'POST' && url === '/vm/state') {
        const bound = bindState(Buffer.concat(chunks).toString('utf8'));
        if ('error' in bound) return json(400, { error: bound.error });
        const s = bound.state;
        if (s === 'HardStop') {
          if (!m.canHardStop()) {
            const err = m.hardStopError();
            log('error', `failed action ${s}: ${goQuote(err)}`);
            return json(500, { error: err });
          }
          res.on('finish', () => m.hardStop());
          return done(202, '', null);
        }
        try {
          if (s !== 'Stop' && s !== 'Pause' && s !== 'Resume') throw new Error(`invalid new VMState: ${s}`);
          m.changeState(s);
        } catch (e) {
          const err = (e as Error).message;
          log('error', `failed action ${s}: ${goQuote(err)}`);
          return json(500, { error: err });
        }
        return done(202, '', null);
      }
      done(404, '404 page not found', 'text/plain');
    });
  });
}
