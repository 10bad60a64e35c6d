/**
 * vfkit's command line as cobra + pflag parse it (cmd/vfkit/root.go, pkg/cmdline): the same flags,
 * shorthands, value types, error texts, flag groups, help and version output.
 */

import { goQuote, parseUintGo } from './strconv.ts';

export type FlagType = 'string' | 'uint' | 'bool' | 'strings' | 'stringArray';

interface FlagDef {
  name: string;
  short?: string;
  type: FlagType;
  usage: string;
  /** pflag's DefValue as printed in the usage ("" when zero). */
  def: string;
}

// Sorted by name, as pflag prints them.
const FLAGS: FlagDef[] = [
  { name: 'bootloader', short: 'b', type: 'strings', usage: 'bootloader configuration', def: '[]' },
  {
    name: 'cloud-init',
    type: 'strings',
    usage: 'path to user-data and meta-data cloud-init configuration files',
    def: '[]',
  },
  { name: 'cpus', short: 'c', type: 'uint', usage: 'number of virtual CPUs', def: '1' },
  { name: 'device', short: 'd', type: 'stringArray', usage: 'devices', def: '' },
  {
    name: 'gui',
    type: 'bool',
    usage: 'display the contents of the virtual machine onto a graphical user interface',
    def: '',
  },
  { name: 'help', short: 'h', type: 'bool', usage: 'help for vfkit', def: '' },
  { name: 'ignition', type: 'string', usage: 'path to the ignition file', def: '' },
  { name: 'initrd', short: 'i', type: 'string', usage: 'path to the virtual machine initrd', def: '' },
  { name: 'kernel', short: 'k', type: 'string', usage: 'path to the virtual machine Linux kernel', def: '' },
  { name: 'kernel-cmdline', short: 'C', type: 'string', usage: 'Linux kernel command line', def: '' },
  { name: 'log-level', type: 'string', usage: 'set log level', def: '' },
  { name: 'memory', short: 'm', type: 'uint', usage: 'virtual machine RAM size in mibibytes', def: '512' },
  { name: 'nested', short: 'n', type: 'bool', usage: 'enable nested virtualization', def: '' },
  { name: 'pidfile', type: 'string', usage: 'path to the pid file', def: '' },
  { name: 'restful-uri', type: 'string', usage: 'URI address for RESTful services', def: 'none://' },
  { name: 'timesync', short: 't', type: 'string', usage: 'sync guest time when host wakes up from sleep', def: '' },
  { name: 'version', short: 'v', type: 'bool', usage: 'version for vfkit', def: '' },
];

export const DEFAULT_RESTFUL_URI = 'none://';

export interface Options {
  cpus: number;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  kernelCmdline: string;
  bootloader: string[];
  timesync: string;
  devices: string[];
  restfulUri: string;
  logLevel: string;
  gui: boolean;
  ignition: string;
  cloudInit: string[];
  nested: boolean;
  pidfile: string;
  help: boolean;
  version: boolean;
  /** Flags given on the command line (pflag's Changed). */
  changed: Set<string>;
  /** Positional arguments (vfkit ignores them). */
  args: string[];
}

/** A parse failure: `message` is exactly what cobra prints after "Error: ". */
export class FlagError extends Error {}

export { goQuote } from './strconv.ts';

function parseBoolGo(s: string): boolean | null {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return null;
}

/**
 * vfkit's own stringSlice (pkg/cmdline/string_slice.go): split on commas outside double quotes,
 * quotes kept, an element that is entirely quoted has its quotes trimmed.
 */
export function parseStringSlice(str: string): string[] {
  const trim = (s: string) => (s.startsWith('"') && s.endsWith('"') ? s.replace(/^"+|"+$/g, '') : s);
  const out: string[] = [];
  let cur = '';
  let inQuotes = false;
  for (const ch of str) {
    if (inQuotes) {
      if (ch === '"') inQuotes = false;
      cur += ch;
      continue;
    }
    if (ch === ',') {
      out.push(trim(cur));
      cur = '';
      continue;
    }
    if (ch === '"') inQuotes = true;
    cur += ch;
  }
  if (inQuotes) throw new Error('mismatched "');
  const last = trim(cur);
  if (out.length !== 0 || last.length !== 0) out.push(last);
  return out;
}

function flagLabel(f: FlagDef): string {
  return f.short ? `-${f.short}, --${f.name}` : `--${f.name}`;
}

export function parseFlags(argv: string[]): Options {
  const o: Options = {
    cpus: 1,
    memoryMiB: 512,
    kernel: '',
    initrd: '',
    kernelCmdline: '',
    bootloader: [],
    timesync: '',
    devices: [],
    restfulUri: DEFAULT_RESTFUL_URI,
    logLevel: '',
    gui: false,
    ignition: '',
    cloudInit: [],
    nested: false,
    pidfile: '',
    help: false,
    version: false,
    changed: new Set(),
    args: [],
  };
  const byName = new Map(FLAGS.map((f) => [f.name, f]));
  const byShort = new Map(FLAGS.filter((f) => f.short).map((f) => [f.short!, f]));

  const set = (f: FlagDef, value: string): void => {
    const invalid = (cause: string) =>
      new FlagError(`invalid argument ${goQuote(value)} for ${goQuote(flagLabel(f))} flag: ${cause}`);
    switch (f.type) {
      case 'uint': {
        // pflag's uint: strconv.ParseUint(s, 0, 64).
        const r = parseUintGo(value, 0, 64);
        if ('error' in r) throw invalid(r.error);
        const n = Number(r.value);
        if (f.name === 'cpus') o.cpus = n;
        else o.memoryMiB = n;
        break;
      }
      case 'bool': {
        const b = parseBoolGo(value);
        if (b === null) throw invalid(`strconv.ParseBool: parsing ${goQuote(value)}: invalid syntax`);
        if (f.name === 'gui') o.gui = b;
        else if (f.name === 'nested') o.nested = b;
        else if (f.name === 'help') o.help = b;
        else o.version = b;
        break;
      }
      case 'strings': {
        let parts: string[];
        try {
          parts = parseStringSlice(value);
        } catch (e) {
          throw invalid((e as Error).message);
        }
        const cur = f.name === 'bootloader' ? o.bootloader : o.cloudInit;
        // The first Set replaces the default, later ones append.
        const next = o.changed.has(f.name) ? [...cur, ...parts] : parts;
        if (f.name === 'bootloader') o.bootloader = next;
        else o.cloudInit = next;
        break;
      }
      case 'stringArray':
        o.devices.push(value);
        break;
      case 'string':
        switch (f.name) {
          case 'kernel':
            o.kernel = value;
            break;
          case 'initrd':
            o.initrd = value;
            break;
          case 'kernel-cmdline':
            o.kernelCmdline = value;
            break;
          case 'timesync':
            o.timesync = value;
            break;
          case 'log-level':
            o.logLevel = value;
            break;
          case 'restful-uri':
            o.restfulUri = value;
            break;
          case 'ignition':
            o.ignition = value;
            break;
          case 'pidfile':
            o.pidfile = value;
            break;
        }
        break;
    }
    o.changed.add(f.name);
  };

  const args = [...argv];
  while (args.length > 0) {
    const s = args.shift()!;
    if (s.length < 2 || s[0] !== '-') {
      o.args.push(s);
      continue;
    }
    if (s[1] === '-') {
      if (s.length === 2) {
        o.args.push(...args);
        break;
      }
      const body = s.slice(2);
      if (body[0] === '-' || body[0] === '=') throw new FlagError(`bad flag syntax: ${s}`);
      const eq = body.indexOf('=');
      const name = eq < 0 ? body : body.slice(0, eq);
      const f = byName.get(name);
      if (!f) throw new FlagError(`unknown flag: --${name}`);
      if (eq >= 0) set(f, body.slice(eq + 1));
      else if (f.type === 'bool') set(f, 'true');
      else if (args.length > 0) set(f, args.shift()!);
      else throw new FlagError(`flag needs an argument: --${name}`);
      continue;
    }
    // One or more shorthands: -abc, -c2, -c=2, -c 2.
    let shorts = s.slice(1);
    while (shorts.length > 0) {
      const c = shorts[0]!;
      const f = byShort.get(c);
      if (!f) throw new FlagError(`unknown shorthand flag: '${c}' in -${shorts}`);
      if (shorts.length > 2 && shorts[1] === '=') {
        set(f, shorts.slice(2));
        shorts = '';
      } else if (f.type === 'bool') {
        set(f, 'true');
        shorts = shorts.slice(1);
      } else if (shorts.length > 1) {
        set(f, shorts.slice(1));
        shorts = '';
      } else if (args.length > 0) {
        set(f, args.shift()!);
        shorts = '';
      } else {
        throw new FlagError(`flag needs an argument: '${c}' in -${shorts}`);
      }
    }
  }
  return o;
}

/**
 * cobra's flag-group checks, in its order (required-together groups, then mutually exclusive ones,
 * each sorted by group name): kernel/initrd/kernel-cmdline go together and exclude --bootloader.
 */
export function checkFlagGroups(o: Options): void {
  const together = ['kernel', 'initrd', 'kernel-cmdline'];
  const setCount = together.filter((n) => o.changed.has(n)).length;
  if (setCount > 0 && setCount < together.length) {
    const missing = together.filter((n) => !o.changed.has(n)).sort();
    throw new FlagError(
      `if any flags in the group [${together.join(' ')}] are set they must all be set; missing [${missing.join(' ')}]`,
    );
  }
  for (const group of [
    ['initrd', 'bootloader'],
    ['kernel', 'bootloader'],
    ['kernel-cmdline', 'bootloader'],
  ]) {
    const set = group.filter((n) => o.changed.has(n)).sort();
    if (set.length > 1) {
      throw new FlagError(
        `if any flags in the group [${group.join(' ')}] are set none of the others can be; [${set.join(' ')}] were all set`,
      );
    }
  }
}

/** pflag's FlagUsages: "  -c, --cpus uint   usage (default 1)", aligned. */
function flagUsages(): string {
  const lines = FLAGS.map((f) => {
    let line = f.short ? `  -${f.short}, --${f.name}` : `      --${f.name}`;
    if (f.type !== 'bool') line += ` ${f.type}`;
    let usage = f.usage;
    if (f.def !== '') usage += f.type === 'string' ? ` (default ${goQuote(f.def)})` : ` (default ${f.def})`;
    return { head: line, usage };
  });
  const max = Math.max(...lines.map((l) => l.head.length));
  return lines.map((l) => `${l.head} ${' '.repeat(max - l.head.length)}  ${l.usage}`).join('\n');
}

export function usageString(): string {
  return `Usage:\n  vfkit [flags]\n\nFlags:\n${flagUsages()}\n`;
}

export function helpText(): string {
  const long =
    "A hypervisor written in Go using Apple's Virtualization framework to run virtual machines.\n                Complete documentation is available at https://github.com/crc-org/vfkit";
  return `${long}\n\n${usageString()}`;
}
