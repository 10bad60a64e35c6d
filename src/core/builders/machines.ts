/**
 * Nix's remote builders as nix reads them: the `builders` setting, whose entries (separated by
 * `;` or newlines) are machine lines or `@file` (a machines file, read the same way), and the
 * machine line itself — store URI, systems, ssh key, max jobs, speed factor, supported and
 * mandatory features, base64 public host key; `-` for a default, `#` starts a comment.
 *
 * Pure: the files are read through the function passed in, so the parser is tested on text.
 */

export interface Machine {
  /** As written: `ssh-ng://builder@host`, `ssh://host`, or a bare host (nix reads it as ssh://). */
  uri: string;
  /** Empty: the local system (nix's `-`). */
  systems: string[];
  sshKey: string | null;
  maxJobs: number;
  speedFactor: number;
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  /** Base64 of an OpenSSH public key line, or null. */
  publicHostKey: string | null;
  /** Where it was found: `builders` (nix.conf) or the machines file's path. */
  source: string;
}

export interface ParsedBuilders {
  machines: Machine[];
  /** Lines nix would skip or refuse, one sentence each. */
  problems: string[];
  /** The machines files named, whether or not they exist. */
  files: string[];
}

const dash = (v: string | undefined): string | null => (v === undefined || v === '-' || v === '' ? null : v);
const list = (v: string | undefined): string[] => (dash(v) ?? '').split(',').filter(Boolean);

/** One machine line (without its comment), or a sentence saying why nix would not use it. */
export function parseMachineLine(line: string, source: string): Machine | string {
  const f = line.trim().split(/\s+/);
  if (f.length > 8) return `${source}: a machine line has more than 8 fields: ${JSON.stringify(line.trim())}.`;
  const intField = (v: string | undefined, name: string): number | string => {
    const s = dash(v);
    if (s === null) return 1;
    if (!/^\d+$/.test(s)) return `${source}: ${name} must be a whole number, not ${JSON.stringify(s)}.`;
    return Number(s);
  };
  const maxJobs = intField(f[3], 'max jobs');
  if (typeof maxJobs === 'string') return maxJobs;
  const speedFactor = intField(f[4], 'the speed factor');
  if (typeof speedFactor === 'string') return speedFactor;
  return {
    uri: f[0]!,
    systems: list(f[1]),
    sshKey: dash(f[2]),
    maxJobs,
    speedFactor,
    supportedFeatures: list(f[5]),
    mandatoryFeatures: list(f[6]),
    publicHostKey: dash(f[7]),
    source,
  };
}

/**
 * The machines of a `builders` value. `readFile` returns a file's text, or null when it does not
 * exist (nix then ignores it); a file it cannot read is a problem.
 */
export function parseBuilders(
  value: string,
  readFile: (file: string) => string | null,
  source = 'builders',
  depth = 0,
): ParsedBuilders {
  const out: ParsedBuilders = { machines: [], problems: [], files: [] };
  for (const raw of value.split(/[;\n]/)) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    if (line.startsWith('@')) {
      const file = line.slice(1).trim();
      out.files.push(file);
      if (depth > 3) {
        out.problems.push(`${file}: machines files include each other too deeply.`);
        continue;
      }
      let text: string | null;
      try {
        text = readFile(file);
      } catch (err) {
        out.problems.push(`${file} could not be read: ${(err as Error).message}.`);
        continue;
      }
      if (text === null) continue;
      const inner = parseBuilders(text, readFile, file, depth + 1);
      out.machines.push(...inner.machines);
      out.problems.push(...inner.problems);
      out.files.push(...inner.files);
      continue;
    }
    const m = parseMachineLine(line, source);
    if (typeof m === 'string') out.problems.push(m);
    else out.machines.push(m);
  }
  return out;
}

/** A machine as one line of a machines file. */
export function renderMachine(m: Omit<Machine, 'source'>): string {
  const join = (xs: readonly string[]) => (xs.length ? xs.join(',') : '-');
  // Fields are split on white space, entries end at `;` and `#`, lists at `,`.
  const bad = (v: string, list: boolean) => /[\s;#]/.test(v) || (list && v.includes(','));
  for (const v of [m.uri, m.sshKey ?? '-', m.publicHostKey ?? '-'])
    if (bad(v, false)) throw new Error(`${JSON.stringify(v)} cannot be written in a machines file.`);
  for (const v of [...m.systems, ...m.supportedFeatures, ...m.mandatoryFeatures])
    if (bad(v, true)) throw new Error(`${JSON.stringify(v)} cannot be written in a machines file.`);
  return [
    m.uri,
    join(m.systems),
    m.sshKey ?? '-',
    String(m.maxJobs),
    String(m.speedFactor),
    join(m.supportedFeatures),
    join(m.mandatoryFeatures),
    m.publicHostKey ?? '-',
  ].join(' ');
}

/** Where a machine's URI points: its user, host and port, for probing it; null when it is not ssh. */
export function machineEndpoint(uri: string): { user: string | null; host: string; port: number } | null {
  let rest: string;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/.exec(uri);
  if (scheme) {
    if (scheme[1] !== 'ssh' && scheme[1] !== 'ssh-ng') return null;
    rest = scheme[2]!;
  } else {
    rest = uri;
  }
  rest = rest.replace(/\?.*$/, '');
  const at = rest.lastIndexOf('@');
  const user = at >= 0 ? rest.slice(0, at) : null;
  let hostPort = at >= 0 ? rest.slice(at + 1) : rest;
  let port = 22;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostPort);
  if (bracket) {
    hostPort = bracket[1]!;
    if (bracket[2]) port = Number(bracket[2]);
  } else {
    const hp = /^([^:]+):(\d+)$/.exec(hostPort);
    if (hp) {
      hostPort = hp[1]!;
      port = Number(hp[2]);
    }
  }
  if (!hostPort || port < 1 || port > 65535) return null;
  return { user: user || null, host: hostPort, port };
}

/** Can this machine build `system` with these required features? */
export function machineBuilds(
  m: Machine,
  system: string,
  localSystem: string | null,
  features: readonly string[] = [],
) {
  const systems = m.systems.length ? m.systems : localSystem ? [localSystem] : [];
  return (
    systems.includes(system) &&
    features.every((f) => m.supportedFeatures.includes(f) || m.mandatoryFeatures.includes(f)) &&
    m.mandatoryFeatures.every((f) => features.includes(f))
  );
}
