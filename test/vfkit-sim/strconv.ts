/**
 * Go's strconv integer parsing (ParseUint, ParseInt, Atoi), digit for digit: base 0 reads the
 * 0b/0o/0x/0 prefixes and allows underscores between digits (pflag parses --cpus and --memory
 * this way); an explicit base allows neither. Values are BigInt: Go's int64/uint64 go past 2^53.
 */
/** Go's %q (strconv.Quote) for the ASCII-ish strings that reach error messages. */
export function goQuote(s: string): string {
  return JSON.stringify(s).replace(/\\u00([0-9a-f]{2})/g, '\\x$1');
}

export type Parsed = { value: bigint } | { error: string };

const syntax = (fn: string, s: string): Parsed => ({ error: `strconv.${fn}: parsing ${goQuote(s)}: invalid syntax` });
const range = (fn: string, s: string): Parsed => ({
  error: `strconv.${fn}: parsing ${goQuote(s)}: value out of range`,
});
const lower = (c: string) => c.toLowerCase();

/** Whether the underscores in s are where Go allows them: between digits, or after a base prefix. */
function underscoreOK(s: string): boolean {
  let saw = '^';
  let i = 0;
  if (s.length >= 1 && (s[0] === '-' || s[0] === '+')) s = s.slice(1);
  let hex = false;
  if (s.length >= 2 && s[0] === '0' && 'box'.includes(lower(s[1]!))) {
    i = 2;
    saw = '0';
    hex = lower(s[1]!) === 'x';
  }
  for (; i < s.length; i++) {
    const c = s[i]!;
    if ((c >= '0' && c <= '9') || (hex && lower(c) >= 'a' && lower(c) <= 'f')) {
      saw = '0';
      continue;
    }
    if (c === '_') {
      if (saw !== '0') return false;
      saw = '_';
      continue;
    }
    if (saw === '_') return false;
    saw = '!';
  }
  return saw !== '_';
}

/** strconv.ParseUint(s, base, bitSize); `fn` names the function in the error (ParseInt reuses it). */
export function parseUintGo(s: string, base: number, bitSize = 64, fn = 'ParseUint'): Parsed {
  if (s === '') return syntax(fn, s);
  const base0 = base === 0;
  const s0 = s;
  if (base0) {
    base = 10;
    if (s[0] === '0') {
      const p = s.length >= 3 ? lower(s[1]!) : '';
      if (p === 'b' || p === 'o' || p === 'x') {
        base = p === 'b' ? 2 : p === 'o' ? 8 : 16;
        s = s.slice(2);
      } else {
        base = 8;
        s = s.slice(1);
      }
    }
  }
  const max = (1n << BigInt(bitSize)) - 1n;
  let underscores = false;
  let n = 0n;
  for (const c of s) {
    let d: number;
    if (c === '_' && base0) {
      underscores = true;
      continue;
    } else if (c >= '0' && c <= '9') d = c.charCodeAt(0) - 48;
    else if (lower(c) >= 'a' && lower(c) <= 'z') d = lower(c).charCodeAt(0) - 97 + 10;
    else return syntax(fn, s0);
    if (d >= base) return syntax(fn, s0);
    n = n * BigInt(base) + BigInt(d);
    // Go stops at the first digit that overflows, before looking at the rest.
    if (n > max) return range(fn, s0);
  }
  if (underscores && !underscoreOK(s0)) return syntax(fn, s0);
  return { value: n };
}

/** strconv.ParseInt(s, base, bitSize). */
export function parseIntGo(s: string, base: number, bitSize = 64, fn = 'ParseInt'): Parsed {
  if (s === '') return syntax(fn, s);
  const neg = s[0] === '-';
  const body = s[0] === '+' || s[0] === '-' ? s.slice(1) : s;
  const u = parseUintGo(body, base, bitSize, fn);
  if ('error' in u) {
    // A syntax error names the whole input, sign included; an overflow is judged below.
    if (u.error.endsWith('invalid syntax')) return syntax(fn, s);
    return range(fn, s);
  }
  const cutoff = 1n << BigInt(bitSize - 1);
  if (!neg && u.value >= cutoff) return range(fn, s);
  if (neg && u.value > cutoff) return range(fn, s);
  return { value: neg ? -u.value : u.value };
}

/** strconv.Atoi: ParseInt(s, 10, 64) on a 64-bit Mac, its errors named Atoi. */
export function atoi(s: string): Parsed {
  return parseIntGo(s, 10, 64, 'Atoi');
}
