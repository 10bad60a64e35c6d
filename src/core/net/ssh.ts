/**
 * Reaching a VM over ssh: the argv (data, run without a shell), the same command as one
 * shell-quoted line a user can paste, and an ssh config file with one `Host nixvm-<name>` alias
 * per VM that users can `Include` from ~/.ssh/config.
 *
 * Host keys are checked: each VM has its own known_hosts file (in its state dir) under one
 * `HostKeyAlias` (`nixvm-<name>`), whichever way it is reached (vsock, IPv4, IPv6), with
 * `StrictHostKeyChecking=accept-new` on first contact, or `yes` when the closure ships a fixed
 * host key nixvm pinned (nixpkgs' nix-builder-vm). Over vsock, ssh runs `nixvm proxy` as its
 * ProxyCommand: no IP is needed.
 *
 * nixvm never edits ~/.ssh/config: it writes its own file and offers the Include line.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, realpath, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { shellLine, shellWord } from '../../host/shell.ts';

import type { SshDestination, SshRoute, StrictHostKeys } from '../../api/types.ts';

export type { SshDestination, SshRoute, StrictHostKeys };

export interface SshTarget {
  /** IPv4, IPv6 (a link-local one with its `%zone`), a host name, or the alias when a ProxyCommand connects. */
  host: string;
  user: string;
  /** Defaults to 22. */
  port?: number;
  identityFile?: string | null;
  /** The VM's own known_hosts file; absent: ssh's defaults. */
  knownHostsFile?: string | null;
  /** The name host keys are recorded under (the same for every route to the VM). */
  hostKeyAlias?: string | null;
  /** Default accept-new: a new VM is trusted on first contact, a changed key is refused. */
  strictHostKeyChecking?: StrictHostKeys;
  /** An argv ssh runs (through the user's shell, as ProxyCommand) to reach the VM; absent: TCP to `host`. */
  proxyCommand?: readonly string[] | null;
  /** Seconds ssh waits for the connection (ConnectTimeout). */
  connectTimeout?: number | null;
  /** More `-o Key=Value` options. They go first, and ssh keeps the first value it sees, so they can override the defaults. */
  extraOptions?: Readonly<Record<string, string | number | boolean>>;
  /** The ssh program; defaults to `ssh` (found on PATH by whoever runs it). */
  program?: string;
}

/** A value that cannot be part of an ssh command or config, named with what to do. */
export class SshTargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SshTargetError';
  }
}

const CONTROL = /[\x00-\x1f\x7f]/;

function checkHost(host: string): void {
  if (!host || /\s/.test(host) || CONTROL.test(host) || host.startsWith('-')) {
    throw new SshTargetError(
      `The ssh host ${JSON.stringify(host)} is not a usable address; it must be non-empty, without spaces, and not start with "-".`,
    );
  }
}

/**
 * Why a user name cannot reach ssh as written, whichever way nixvm hands it over (`-l`, `User`
 * in its ssh config, the command a user pastes); null when it can. `%` and `${` cannot be made
 * safe: OpenSSH's 2025 releases expand %-tokens and ${VAR} in User, `-l` and user@host, where
 * earlier ones (9.2, say) take them as they are, so neither `%` nor `%%` means one thing to both.
 * A leading `-` reads as an option where the user starts an argument (`user@host`), and
 * OpenSSH (9.6 and the distributions' backports of CVE-2023-51385) refuses shell characters in
 * a user given on its command line.
 */
export function sshUserProblem(user: string): string | null {
  if (!user) return 'it is empty';
  if (CONTROL.test(user)) return 'it has control characters';
  if (user.startsWith('-')) return 'it starts with "-", which ssh reads as an option';
  if (/%|\$\{/.test(user))
    return 'recent OpenSSH expands "%" and "${" in user names where older ones do not, so it cannot be written to mean the same to both';
  if (/['"`;&<>|(){}]|\\$|\s-/.test(user))
    return 'ssh refuses user names with shell characters (quotes, ;&<>|(){} and the like) on its command line';
  return null;
}

function checkUser(user: string): void {
  const why = sshUserProblem(user);
  if (why) {
    throw new SshTargetError(
      `The ssh user ${JSON.stringify(user)} cannot be handed to ssh: ${why}; set a plain user name for this VM (\`nixvm config set sshUser.<vm> NAME\`).`,
    );
  }
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SshTargetError(`The ssh port ${port} is out of range; use a port between 1 and 65535.`);
  }
}

function checkOptionKey(key: string): void {
  if (!/^[A-Za-z][A-Za-z0-9]*$/.test(key)) {
    throw new SshTargetError(
      `${JSON.stringify(key)} is not an ssh option name; use a keyword such as ServerAliveInterval.`,
    );
  }
}

function checkPath(what: string, p: string): void {
  if (!path.isAbsolute(p) || CONTROL.test(p)) {
    throw new SshTargetError(
      `The ssh ${what} ${JSON.stringify(p)} is not an absolute path without control characters; nixvm cannot hand it to ssh.`,
    );
  }
}

/** `%` starts a token in HostName, IdentityFile, UserKnownHostsFile and ProxyCommand; `%%` is a literal one. */
const escapeTokens = (s: string): string => s.replace(/%/g, '%%');

/** A file-list option's value (UserKnownHostsFile splits on spaces, honouring quotes): quoted when it must be. */
function fileValue(p: string): string {
  const v = escapeTokens(p);
  return /[\s"'\\]/.test(v) ? `"${v.replace(/[\\"]/g, '\\$&')}"` : v;
}

/** The ProxyCommand line: the argv as shell words (ssh runs it with the user's shell), `%` escaped. */
export function proxyCommandLine(argv: readonly string[]): string {
  if (argv.length === 0 || argv.some((a) => CONTROL.test(a)))
    throw new SshTargetError('The ssh ProxyCommand is empty or has control characters; nixvm cannot hand it to ssh.');
  return escapeTokens(shellLine(argv));
}

/** The host-key and connection options, in the order ssh should see them. */
function fixedOptions(t: SshTarget): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (t.connectTimeout) out.push(['ConnectTimeout', String(t.connectTimeout)]);
  if (t.hostKeyAlias) {
    if (!/^[A-Za-z0-9._-]+$/.test(t.hostKeyAlias))
      throw new SshTargetError(`The ssh host key alias ${JSON.stringify(t.hostKeyAlias)} is not a plain name.`);
    out.push(['HostKeyAlias', t.hostKeyAlias]);
  }
  if (t.knownHostsFile) {
    checkPath('known_hosts file', t.knownHostsFile);
    out.push(['UserKnownHostsFile', fileValue(t.knownHostsFile)]);
  }
  out.push(['StrictHostKeyChecking', t.strictHostKeyChecking ?? 'accept-new']);
  if (t.proxyCommand) out.push(['ProxyCommand', proxyCommandLine(t.proxyCommand)]);
  out.push(['LogLevel', 'ERROR']);
  return out;
}

/**
 * The ssh argv for a VM: program first, run it as is (no shell). The host goes last and alone
 * (user via `-l`), which is the form ssh parses unambiguously for `fe80::…%bridge100`.
 */
export function sshArgv(t: SshTarget): string[] {
  const port = t.port ?? 22;
  checkHost(t.host);
  checkUser(t.user);
  checkPort(port);
  const argv = [t.program ?? 'ssh'];
  const extra = Object.entries(t.extraOptions ?? {});
  for (const [k, v] of extra) {
    checkOptionKey(k);
    const value = typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v);
    if (CONTROL.test(value))
      throw new SshTargetError(`The ssh option ${k} has control characters in its value; remove them.`);
    argv.push('-o', `${k}=${value}`);
  }
  const overridden = new Set(extra.map(([k]) => k.toLowerCase()));
  for (const [k, v] of fixedOptions(t)) if (!overridden.has(k.toLowerCase())) argv.push('-o', `${k}=${v}`);
  // As an option, not -i: ssh checks an -i path as given but expands its `%` tokens when it loads it.
  if (t.identityFile) {
    checkPath('identity file', t.identityFile);
    argv.push('-o', `IdentityFile=${fileValue(t.identityFile)}`);
  }
  argv.push('-p', String(port), '-l', t.user, t.host);
  return argv;
}

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/;
const IPV6 = /^[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[A-Za-z0-9._-]{1,32})?$/;
const ALIAS = /^nixvm-[a-z0-9._-]{1,200}$/;

const isPathOrNull = (p: unknown): p is string | null =>
  p === null || (typeof p === 'string' && p.length <= 1024 && path.isAbsolute(p) && !CONTROL.test(p));

/**
 * The destination the agent named for `vm`, checked as strictly as the agent makes it: IPv4 and
 * IPv6 (link-local with its zone) literals, absolute paths without control characters, a plain
 * alias, a user without control characters, a port in range. Throws SshTargetError (one
 * sentence) for anything else, so a face never runs a command an answering process made up.
 */
export function checkSshDestination(vm: string, d: unknown): SshDestination {
  const o = (d ?? {}) as Partial<Record<keyof SshDestination, unknown>>;
  const ip = (v: unknown, re: RegExp): v is string | null => v === null || (typeof v === 'string' && re.test(v));
  const ok =
    typeof o.alias === 'string' &&
    ALIAS.test(o.alias) &&
    ip(o.ipv4, IPV4) &&
    ip(o.ipv6, IPV6) &&
    (o.host === null || (typeof o.host === 'string' && (o.host === o.ipv4 || o.host === o.ipv6))) &&
    isPathOrNull(o.vsock) &&
    isPathOrNull(o.identityFile) &&
    isPathOrNull(o.knownHostsFile) &&
    (o.strictHostKeyChecking === 'yes' || o.strictHostKeyChecking === 'accept-new') &&
    typeof o.user === 'string' &&
    o.user.length > 0 &&
    o.user.length <= 256 &&
    !CONTROL.test(o.user) &&
    typeof o.port === 'number' &&
    Number.isInteger(o.port) &&
    o.port >= 1 &&
    o.port <= 65535;
  if (!ok) {
    throw new SshTargetError(
      `The agent's ssh destination for ${JSON.stringify(vm)} is not an address, user and port nixvm can use; it was not run.`,
    );
  }
  // A user ssh would misread: said as such (the VM's configuration or setting names it).
  const why = sshUserProblem(o.user as string);
  if (why)
    throw new SshTargetError(
      `The ssh user ${JSON.stringify(o.user)} of VM ${JSON.stringify(vm)} cannot be handed to ssh: ${why}; set a plain one with \`nixvm config set ${shellWord(`sshUser.${vm}`)} NAME\`.`,
    );
  return {
    alias: o.alias as string,
    user: o.user as string,
    port: o.port as number,
    host: (o.host as string | null) ?? null,
    ipv4: o.ipv4 as string | null,
    ipv6: o.ipv6 as string | null,
    vsock: o.vsock as string | null,
    identityFile: o.identityFile as string | null,
    knownHostsFile: o.knownHostsFile as string | null,
    strictHostKeyChecking: o.strictHostKeyChecking as StrictHostKeys,
  };
}

/** The routes a destination offers, best first. */
export function sshRoutes(d: SshDestination): SshRoute[] {
  return [
    ...(d.vsock ? (['vsock'] as const) : []),
    ...(d.ipv4 ? (['ipv4'] as const) : []),
    ...(d.ipv6 ? (['ipv6'] as const) : []),
  ];
}

export interface SshArgvOptions {
  /** The ssh program (default `ssh`). */
  program?: string;
  /** How to run nixvm (the ProxyCommand's first words), e.g. `['nixvm']`. */
  nixvm: readonly string[];
  /** The route to use; default the first the destination offers. */
  route?: SshRoute;
  connectTimeout?: number;
}

/** The `nixvm proxy` argv that connects ssh to a VM's vsock socket. */
export function proxyArgv(nixvm: readonly string[], socket: string): string[] {
  return [...nixvm, 'proxy', '--unix', socket];
}

/** The ssh target for one route of a checked destination. */
export function sshTargetFor(d: SshDestination, o: SshArgvOptions): SshTarget {
  const route = o.route ?? sshRoutes(d)[0];
  if (!route) throw new SshTargetError(`${d.alias} has no address and no vsock socket yet; wait for it to boot.`);
  const common: SshTarget = {
    host: d.alias,
    user: d.user,
    port: d.port,
    identityFile: d.identityFile,
    knownHostsFile: d.knownHostsFile,
    hostKeyAlias: d.alias,
    strictHostKeyChecking: d.strictHostKeyChecking,
    connectTimeout: o.connectTimeout ?? null,
    program: o.program ?? 'ssh',
  };
  if (route === 'vsock') {
    if (!d.vsock) throw new SshTargetError(`${d.alias} has no vsock socket.`);
    return { ...common, proxyCommand: proxyArgv(o.nixvm, d.vsock) };
  }
  const host = route === 'ipv4' ? d.ipv4 : d.ipv6;
  if (!host) throw new SshTargetError(`${d.alias} has no ${route === 'ipv4' ? 'IPv4' : 'IPv6'} address yet.`);
  return { ...common, host };
}

/** A route the agent named, if it is one the destination offers (else the first it offers). */
export function checkRoute(d: SshDestination, route: unknown): SshRoute | undefined {
  const offered = sshRoutes(d);
  return offered.find((r) => r === route) ?? offered[0];
}

/**
 * The argv as one line to paste into a shell: each element stays exactly one argument whatever
 * it holds (spaces, quotes, `$`, newlines); plain words are left readable.
 */
export function sshCommandLine(argv: readonly string[]): string {
  if (argv.some((a) => a.includes('\0')))
    throw new SshTargetError('An ssh argument contains a NUL byte, which no command line can carry.');
  return shellLine(argv);
}

// ————— the ssh config file —————

export interface SshConfigEntry {
  /** The VM's name, as nixvm shows it. */
  vm: string;
  /** Its Host alias (`nixvm-<name>`, unique among the VMs). */
  alias: string;
  /** Its ssh target: an address, or the alias with a ProxyCommand (vsock). */
  target: SshTarget;
}

/**
 * `nixvm-<name>` as a Host pattern: lower case (what people type), only `[a-z0-9._-]` (no
 * spaces, wildcards `*?`, negation `!` or list commas, which Host would interpret).
 */
export function sshHostAlias(vm: string): string {
  const base = vm
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '');
  return `nixvm-${base || 'vm'}`;
}

/** Aliases for a list of VMs, unique even when two names sanitise alike ("Web" and "web"). */
export function sshHostAliases(vms: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const v of vms) counts.set(sshHostAlias(v), (counts.get(sshHostAlias(v)) ?? 0) + 1);
  const used = new Set<string>();
  return vms.map((v) => {
    let alias = sshHostAlias(v);
    // A clash gets a short hash of the real name, so each VM keeps the same alias run after run.
    if ((counts.get(alias) ?? 0) > 1 || used.has(alias)) {
      alias = `${alias}-${createHash('sha256').update(v).digest('hex').slice(0, 6)}`;
    }
    while (used.has(alias)) alias += '-x';
    used.add(alias);
    return alias;
  });
}

/** An ssh_config argument: quoted (with `\` escapes, as ssh's own splitter reads them) only when needed. */
function configArg(value: string, what: string, vm: string): string {
  if (CONTROL.test(value)) {
    throw new SshTargetError(
      `The ssh ${what} of VM ${JSON.stringify(vm)} contains control characters, which an ssh config cannot hold; change it.`,
    );
  }
  return /[\s"'\\#=]/.test(value) || value === '' ? `"${value.replace(/[\\"]/g, '\\$&')}"` : value;
}

/**
 * The config file's text: a header, then one Host block per VM. An entry whose values an ssh
 * config cannot hold (a port out of range, a user with a newline) is left out, and `skipped`
 * says which and why, one sentence each: one bad VM never costs the others their aliases.
 */
export function renderSshConfigChecked(entries: readonly SshConfigEntry[]): { text: string; skipped: string[] } {
  const lines = [
    '# Written by nixvm: one Host alias per VM. Regenerated whenever VMs change; edits here are lost.',
    '# Use it by adding the Include line nixvm shows to the top of ~/.ssh/config.',
  ];
  const skipped: string[] = [];
  for (const e of entries) {
    const block: string[] = [];
    try {
      const t = e.target;
      const port = t.port ?? 22;
      checkHost(t.host);
      checkUser(t.user);
      checkPort(port);
      block.push(
        '',
        `# VM ${JSON.stringify(e.vm).replace(/[\r\n]/g, ' ')}`,
        `Host ${e.alias}`,
        `  HostName ${configArg(escapeTokens(t.host), 'host', e.vm)}`,
        `  User ${configArg(t.user, 'user', e.vm)}`,
        `  Port ${port}`,
      );
      if (t.identityFile) {
        checkPath('identity file', t.identityFile);
        block.push(`  IdentityFile ${configArg(escapeTokens(t.identityFile), 'identity file', e.vm)}`);
      }
      // ProxyCommand takes the rest of its line as is; the other values are single arguments or file lists.
      for (const [k, v] of fixedOptions({ ...t, connectTimeout: null })) block.push(`  ${k} ${v}`);
    } catch (err) {
      if (!(err instanceof SshTargetError)) throw err;
      skipped.push(
        `nixvm's ssh config has no entry for VM ${JSON.stringify(e.vm)}: ${err.message.charAt(0).toLowerCase()}${err.message.slice(1)}`,
      );
      continue;
    }
    lines.push(...block);
  }
  return { text: `${lines.join('\n')}\n`, skipped };
}

/** The config file's text (entries an ssh config cannot hold are left out). */
export function renderSshConfig(entries: readonly SshConfigEntry[]): string {
  return renderSshConfigChecked(entries).text;
}

/** The user's own ssh config, which nixvm reads but never writes. */
export function userSshConfigPath(home = os.homedir()): string {
  return path.join(home, '.ssh', 'config');
}

/** Where nixvm keeps its own ssh config, inside its state dir. */
export function sshConfigPath(stateDir: string): string {
  return path.join(stateDir, 'ssh_config');
}

async function samePath(a: string, b: string): Promise<boolean> {
  if (path.resolve(a) === path.resolve(b)) return true;
  const real = async (p: string): Promise<string> => {
    try {
      return await realpath(p);
    } catch {
      // Not there yet: compare its directory's real path plus the name.
      try {
        return path.join(await realpath(path.dirname(p)), path.basename(p));
      } catch {
        return path.resolve(p);
      }
    }
  };
  return (await real(a)) === (await real(b));
}

/**
 * Write the config atomically (a temp file in the same directory, then rename), mode 0600 as
 * ssh requires of config files. Refuses to touch the user's ~/.ssh/config. Resolves with the
 * entries it had to leave out (one sentence each).
 */
export async function writeSshConfig(
  file: string,
  entries: readonly SshConfigEntry[],
  home = os.homedir(),
): Promise<string[]> {
  if (await samePath(file, userSshConfigPath(home))) {
    throw new SshTargetError(
      `nixvm does not write ${file}, your own ssh config; give it a path in nixvm's state directory and Include that instead.`,
    );
  }
  const { text, skipped } = renderSshConfigChecked(entries);
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return skipped;
}

/** One ssh_config argument, quoted when the path needs it. */
function includeArg(p: string): string {
  return /[\s"'\\#]/.test(p) ? `"${p.replace(/[\\"]/g, '\\$&')}"` : p;
}

/** The line nixvm offers for the top of ~/.ssh/config (it must precede any Host block). */
export function includeLine(file: string): string {
  return `Include ${includeArg(path.resolve(file))}`;
}

export type IncludeStatus = 'included' | 'not-included' | 'missing' | 'unreadable';

/** Split an ssh_config line into words the way ssh does: `"…"`/`'…'` quoting, `\` escapes. */
function splitConfigWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length && (quote === null || line[i + 1] === quote || line[i + 1] === '\\')) {
      cur += line[++i];
      has = true;
    } else if (quote) {
      if (c === quote) quote = null;
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      has = true;
    } else if (/\s/.test(c)) {
      if (has) words.push(cur);
      cur = '';
      has = false;
    } else if (c === '#' && !has) {
      break;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) words.push(cur);
  return words;
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (const c of glob) {
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Expand an Include argument as ssh does: `~`, relative to ~/.ssh, globs. */
async function expandInclude(arg: string, home: string): Promise<string[]> {
  let p = arg.startsWith('~/') ? path.join(home, arg.slice(2)) : arg === '~' ? home : arg;
  if (!path.isAbsolute(p)) p = path.join(home, '.ssh', p);
  if (!/[*?]/.test(p)) return [p];
  // Globs only in the last component are common (`config.d/*`); deeper ones are matched as far as we can.
  const dir = path.dirname(p);
  if (/[*?]/.test(dir)) return [];
  const re = globToRegExp(path.basename(p));
  try {
    return (await readdir(dir))
      .filter((n) => re.test(n))
      .sort()
      .map((n) => path.join(dir, n));
  } catch {
    return [];
  }
}

/**
 * A config file's text, only if it is a regular file: a FIFO (or a device) in its place would
 * block a plain read forever, so it is opened without blocking and refused once fstat says what
 * it is (no check-then-open race). Throws an error with code ENOTREG for those.
 */
export async function readRegularFile(file: string, maxBytes = 4 * 1024 * 1024): Promise<string> {
  const fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | (constants.O_NOCTTY ?? 0));
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw Object.assign(new Error(`${file} is not a regular file`), { code: 'ENOTREG' });
    }
    if (st.size > maxBytes) throw Object.assign(new Error(`${file} is too large`), { code: 'EFBIG' });
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

/**
 * Does the user's ssh config (or a file it Includes) Include ours, unconditionally? Only reads.
 * An Include inside a `Host`/`Match` block that is not for every host does not count: the
 * aliases would only resolve for that host.
 */
export async function sshConfigIncludes(
  userSshConfigPath: string,
  file: string,
  home = os.homedir(),
): Promise<IncludeStatus> {
  let top: string;
  try {
    top = await readRegularFile(userSshConfigPath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'unreadable';
  }
  const seen = new Set<string>();
  const visit = async (text: string, depth: number): Promise<boolean> => {
    let unconditional = true;
    for (const raw of text.split(/\r?\n/)) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      // `Keyword=value` is allowed too.
      const m = /^([A-Za-z]+)\s*(?:=\s*|\s+)(.*)$/.exec(line);
      if (!m) continue;
      const keyword = m[1]!.toLowerCase();
      const args = splitConfigWords(m[2]!);
      if (keyword === 'host') unconditional = args.length === 1 && args[0] === '*';
      else if (keyword === 'match') unconditional = args.length === 1 && args[0]!.toLowerCase() === 'all';
      else if (keyword === 'include' && unconditional) {
        for (const arg of args) {
          for (const candidate of await expandInclude(arg, home)) {
            if (await samePath(candidate, file)) return true;
            // ssh nests Includes up to 16 deep; a few levels cover real setups.
            if (depth < 8 && !seen.has(candidate)) {
              seen.add(candidate);
              let nested: string;
              try {
                nested = await readRegularFile(candidate);
              } catch {
                continue;
              }
              if (await visit(nested, depth + 1)) return true;
            }
          }
        }
      }
    }
    return false;
  };
  seen.add(path.resolve(userSshConfigPath));
  return (await visit(top, 0)) ? 'included' : 'not-included';
}
