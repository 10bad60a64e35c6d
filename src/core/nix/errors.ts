/**
 * Nix's error text, turned into one sentence a user can act on. Pure: every function takes the
 * text nix wrote (plain stderr or the internal-json stream) and returns what to show; nix's own
 * text always travels along as `detail`.
 *
 * Recognised across Nix 2.8, current Nix and Lix: syntax errors (top level or nested under
 * "… while evaluating" frames), "not a flake", a flake path nix reads as a URL, a flake without
 * nixosConfigurations, git's untracked-file trap and a file that exists nowhere (four wordings),
 * the missing Linux builder or system features (four wordings), failing builders (two) and
 * remote builders: unreachable (three), broken (one), lost during a build (three).
 * The real text of each version lives in test/fixtures/nix-messages (see test/helpers/nix-messages.ts).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

export type NixErrorKind =
  | 'no-such-dir'
  | 'not-a-flake'
  | 'bad-flake-path'
  | 'syntax'
  | 'no-configurations'
  | 'untracked'
  | 'missing-file'
  | 'required-system'
  | 'build-failed'
  | 'builder-lost'
  | 'network'
  | 'eval';

/** A whole-flake failure: `message` is one sentence, `detail` is nix's own text. */
export class FlakeError extends Error {
  readonly kind: NixErrorKind;
  readonly detail: string;
  readonly flake: string;
  constructor(flake: string, kind: NixErrorKind, message: string, detail = '') {
    super(message);
    this.name = 'FlakeError';
    this.flake = flake;
    this.kind = kind;
    this.detail = detail;
  }
}

export interface Translated {
  kind: NixErrorKind;
  /** One sentence: what happened, to what, what to do. */
  message: string;
  /** Nix's text, cleaned (no colours, user paths instead of store copies). */
  detail: string;
  /** The file involved (syntax error, untracked file), relative to the flake dir. */
  file?: string;
  /** The derivation involved (failed builder, required system). */
  drvPath?: string;
}

export interface ErrorContext {
  /** Absolute flake directory. */
  flakeDir: string;
  /** What nix copied to the store: the git root for git flakes, else the flake dir. */
  sourceRoot?: string;
  /** Who the sentence is about, e.g. "The flake at /x" or "VM 'web'". */
  subject?: string;
  /** Whether a file exists on disk (injected for tests). */
  exists?: (file: string) => boolean;
}

const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/** A store copy of a flake source: /nix/store/<hash>-source, with an optional path inside. */
const STORE_SOURCE = /\/nix\/store\/[0-9a-z]{32}-source(?=[/'":\s]|$)/g;

/**
 * The error part of what nix wrote to stderr, as plain text. Understands both the plain format
 * and `--log-format internal-json` (where errors are `msg` actions of level 0). Drops the
 * "--show-trace" hint and, for plain text, whatever came before the first "error:" line.
 */
export function nixErrorText(stderr: string): string {
  const lines = stderr.split('\n');
  const fromJson: string[] = [];
  const plain: string[] = [];
  for (const line of lines) {
    if (line.startsWith('@nix ')) {
      try {
        const ev = JSON.parse(line.slice(5)) as { action?: unknown; level?: unknown; msg?: unknown };
        if (ev.action === 'msg' && ev.level === 0 && typeof ev.msg === 'string') fromJson.push(ev.msg);
      } catch {
        // A torn line: nothing to learn from it.
      }
    } else {
      plain.push(line);
    }
  }
  let text: string;
  if (fromJson.length) {
    text = fromJson.join('\n');
  } else {
    const clean = plain.map(stripAnsi);
    const first = clean.findIndex((l) => /^error\b/.test(l));
    text = (first >= 0 ? clean.slice(first) : clean).join('\n');
  }
  return stripAnsi(text)
    .split('\n')
    .filter((l) => !/^\(use '--show-trace' to show detailed location information\)$/.test(l.trim()))
    .join('\n')
    .trim();
}

/** Replace store copies of the flake source with the user's own directory. */
export function toUserPaths(text: string, ctx: ErrorContext): string {
  const root = ctx.sourceRoot ?? ctx.flakeDir;
  return text.replace(STORE_SOURCE, root);
}

/**
 * The line that says what went wrong: nix may print a stack of "… while evaluating" frames; the
 * innermost "error:" line is the cause.
 */
export function summaryLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim());
  let found: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const m = /^error:\s*(.*)$/.exec(lines[i] ?? '');
    if (!m) continue;
    // "error:" alone (newer nix) is followed by the frames; the cause comes on a later line.
    found = m[1] || found;
  }
  if (found) return found;
  const firstReal = lines.find((l) => l && !l.startsWith('…') && !l.startsWith('at '));
  return firstReal ?? 'nix failed without saying why';
}

function relToFlake(abs: string, ctx: ErrorContext): string {
  const rel = path.relative(ctx.flakeDir, abs);
  return rel && !rel.startsWith('..') ? rel : abs;
}

/** The advice for a file nix cannot see because git does not track it. */
export function gitAddAdvice(file: string, flakeDir: string): string {
  return `${file} is not tracked by git, so nix cannot see it; run \`git add -N ${file}\` in ${flakeDir}`;
}

/**
 * A file nix looked for in its copy of the flake and did not find, from any of nix's wordings:
 *   getting status of '/nix/store/…-source/x.nix': No such file or directory   (Nix 2.8)
 *   path '/nix/store/…-source/x.nix' does not exist                            (2.1x–2.26, Lix)
 *   Path 'x.nix' in the repository "/repo" is not tracked by Git.               (2.20+)
 *   Path 'x.nix' does not exist in Git repository "/repo".                      (2.34)
 * Returns the absolute path on the user's disk and whether nix said outright it is untracked.
 */
export function missingSourceFile(text: string, ctx: ErrorContext): { abs: string; untracked: boolean } | null {
  const root = ctx.sourceRoot ?? ctx.flakeDir;
  const tracked = /Path '([^']+)' in the repository "([^"]+)" is not tracked by Git/.exec(text);
  if (tracked?.[1] && tracked[2]) return { abs: path.resolve(tracked[2], tracked[1]), untracked: true };
  const inGit = /Path '([^']+)' does not exist in Git repository "([^"]+)"/.exec(text);
  if (inGit?.[1] && inGit[2]) return { abs: path.resolve(inGit[2], inGit[1]), untracked: false };
  const status =
    /getting status of ['"]\/nix\/store\/[0-9a-z]{32}-source\/([^'"]+)['"]: No such file or directory/.exec(text) ??
    /path ['"]\/nix\/store\/[0-9a-z]{32}-source\/([^'"]+)['"] does not exist/.exec(text);
  if (status?.[1]) return { abs: path.resolve(root, status[1]), untracked: false };
  return null;
}

export interface RequiredSystem {
  /** The system the derivation needs; null when nix only named the missing features. */
  required: string | null;
  features: string[];
  /** This machine's system; null when nix did not say. */
  current: string | null;
  drvPath: string;
}

/**
 * Nix's "this machine cannot build that" error, in each wording:
 *   a 'x' with features {…} is required to build '….drv', but I am a 'y' with features {…}   (2.8–2.26, Lix)
 *   Cannot build '….drv'. Reason: required system or feature not available
 *     Required system: 'x' with features {…} / Current system: 'y' with features {…}         (2.2x)
 *   Cannot build '….drv'. Reason: platform mismatch / Required system: 'x' / Current system: 'y'   (2.34)
 *   Cannot build '….drv'. Reason: missing system features / Required features: {…}           (2.34)
 */
export function requiredSystem(text: string): RequiredSystem | null {
  const t = stripAnsi(text);
  const old = /a '([^']+)' with features \{([^}]*)\} is required to build '([^']+)', but I am a '([^']+)'/.exec(t);
  if (old?.[1] && old[3] && old[4]) {
    return { required: old[1], features: splitFeatures(old[2]), drvPath: old[3], current: old[4] };
  }
  const cannot =
    /Cannot build '([^']+)'\.?\s*Reason: (?:required system or feature not available|platform mismatch|missing system features)\b/.exec(
      t,
    );
  if (!cannot?.[1]) return null;
  const rest = t.slice(cannot.index + cannot[0].length);
  const req = /^\s*Required system: '([^']+)'(?: with features \{([^}]*)\})?/m.exec(rest);
  const cur = /^\s*Current system: '([^']+)'/m.exec(rest);
  const feats = /^\s*Required features: \{([^}]*)\}/m.exec(rest);
  if (!req && !feats) return null;
  return {
    required: req?.[1] ?? null,
    features: splitFeatures(req?.[2] ?? feats?.[1]),
    current: cur?.[1] ?? null,
    drvPath: cannot[1],
  };
}

function splitFeatures(s: string | undefined): string[] {
  return (s ?? '')
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
}

const LINUX_BUILDER =
  "run `nixvm builder setup` for nixpkgs' prebuilt Linux builder, or make a VM with nixpkgs' nix-builder-vm profile the builder with `nixvm builder use <vm>`; with nix-darwin: `nix.linux-builder.enable = true;`; or add a Linux machine to `builders` in /etc/nix/nix.conf";

/** The sentence for a missing Linux builder (or a builder without the features a derivation needs). */
export function linuxBuilderAdvice(subject: string, rs: RequiredSystem): string {
  const isLinux = rs.required === null || rs.required.endsWith('-linux');
  if (rs.required && rs.required !== rs.current) {
    const feats = rs.features.length ? ` with features ${rs.features.join(', ')}` : '';
    const how = isLinux
      ? `set up a Linux builder (${LINUX_BUILDER}) and build again`
      : `add a ${rs.required} machine to \`builders\` in /etc/nix/nix.conf and build again`;
    const here = rs.current ? `, but this machine is ${rs.current}` : ', which this machine is not';
    return `${subject} needs a builder for ${rs.required}${feats}${here}; ${how}.`;
  }
  // The right system (or nix did not name one): what is missing is features.
  const how = isLinux
    ? `set up a Linux builder that has them (${LINUX_BUILDER}) and build again`
    : `add a ${rs.required} machine that has them to \`builders\` in /etc/nix/nix.conf and build again`;
  return `${subject} needs a builder with features ${rs.features.join(', ')}, which this machine does not have; ${how}.`;
}

export interface FailedBuilder {
  drvPath: string;
  /** "exit code 3", "signal 9"… */
  how: string;
}

/** The derivation whose builder failed, in either wording. */
export function failedBuilder(text: string): FailedBuilder | null {
  const t = stripAnsi(text);
  const old = /builder for '([^']+\.drv)' failed (?:with exit code (\d+)|due to signal (\d+)[^;\n]*)?/.exec(t);
  if (old?.[1])
    return { drvPath: old[1], how: old[2] ? `exit code ${old[2]}` : old[3] ? `signal ${old[3]}` : 'failure' };
  const cur =
    /Cannot build '([^']+\.drv)'\.?\s*Reason: builder failed(?: with exit code (\d+)| due to signal (\d+))?/.exec(t);
  if (cur?.[1])
    return { drvPath: cur[1], how: cur[2] ? `exit code ${cur[2]}` : cur[3] ? `signal ${cur[3]}` : 'failure' };
  return null;
}

/** "/nix/store/<hash>-name.drv" → "name". */
export function drvName(drvPath: string): string {
  return path
    .basename(drvPath)
    .replace(/^[0-9a-z]{32}-/, '')
    .replace(/\.drv$/, '');
}

/**
 * A flake input (or anything else nix fetches while evaluating) that could not be downloaded, in
 * nix's and git's wordings (Nix 2.8 to 2.34 and git alike):
 *   unable to download 'https://…': Couldn't resolve host name (6)          (nix, libcurl's text)
 *   unable to download 'https://…': Could not resolve hostname (6) Could not resolve host: …  (2.2x+)
 *   fatal: unable to access 'https://…/': Could not resolve host: example.invalid    (git, before
 *   nix's own "program 'git' failed with exit code 128")
 * `why` is the address and the reason, for inside a sentence; null when it is not that.
 */
export function networkFailure(stderr: string): { why: string; url: string } | null {
  const t = stripAnsi(stderr);
  // The last download error is the one nix gave up on (earlier ones are retries, as warnings).
  const dl = [...t.matchAll(/unable to download '([^']+)': ([^\n]+)$/gm)].at(-1);
  if (dl?.[1] && dl[2]) return { why: `${dl[1]}: ${downloadReason(dl[2])}`, url: dl[1] };
  const git = /^fatal: unable to access '([^']+)': (.+)$/m.exec(t);
  if (git?.[1] && git[2]) return { why: `${git[1].replace(/\/$/, '')}: ${gitReason(git[2])}`, url: git[1] };
  return null;
}

/** libcurl's error codes nix appends ("Couldn't resolve host name (6)"), in words that do not vary by version. */
const CURL_REASONS: Record<string, string> = {
  '5': 'the proxy host name does not resolve',
  '6': 'the host name does not resolve',
  '7': 'nothing answers there',
  '28': 'the connection timed out',
  '35': 'the TLS handshake failed',
  '52': 'the server sent nothing',
  '56': 'the connection was cut',
  '60': 'its TLS certificate is not trusted',
};

function downloadReason(text: string): string {
  const http = /HTTP error (\d{3})/.exec(text);
  if (http) return `the server answered HTTP ${http[1]}`;
  const code = /\((\d+)\)/.exec(text)?.[1];
  return (code && CURL_REASONS[code]) ?? trimSentence(text.replace(/; retrying in .*$/, ''), 120);
}

function gitReason(text: string): string {
  if (/Could not resolve (host|proxy)/i.test(text)) return 'the host name does not resolve';
  if (/Failed to connect to|Connection refused/i.test(text)) return 'nothing answers there';
  if (/timed out/i.test(text)) return 'the connection timed out';
  return `git: ${trimSentence(text, 120)}`;
}

/**
 * Translate the error of a failed evaluation (inventory, or the evaluation part of a build).
 * `stderr` is what nix wrote; `ctx.subject` names what failed.
 */
export function translateEvalError(stderr: string, ctx: ErrorContext): Translated {
  const exists = ctx.exists ?? existsSync;
  const subject = ctx.subject ?? `The flake at ${ctx.flakeDir}`;
  const raw = nixErrorText(stderr);
  const detail = toUserPaths(raw, ctx);
  const summary = summaryLine(detail);

  if (/could not find a flake\.nix file|does not contain a 'flake\.nix'/.test(raw)) {
    return {
      kind: 'not-a-flake',
      message: `${ctx.flakeDir} is not a flake (it has no flake.nix); point nixvm at the directory that holds your flake.nix.`,
      detail,
    };
  }
  if (/is not a valid URL/.test(raw) || cutAtUrlSyntax(ctx.flakeDir, raw)) {
    return {
      kind: 'bad-flake-path',
      message: `Nix cannot take ${ctx.flakeDir} as a flake reference (a space, '#' or '?' in the path); move the flake to a path without them.`,
      detail,
    };
  }
  if (/does not provide attribute .*'nixosConfigurations'/.test(raw)) {
    return {
      kind: 'no-configurations',
      message: `The flake at ${ctx.flakeDir} has no nixosConfigurations output; define your VMs as nixosConfigurations.<name> in its flake.nix.`,
      detail,
    };
  }
  const net = networkFailure(stderr);
  if (net) {
    return {
      kind: 'network',
      message: `${subject} could not fetch one of its inputs (${net.why}); check the network connection (and any proxy or substituter in between), then run \`nixvm reevaluate\`.`,
      detail,
    };
  }
  const missing = missingSourceFile(raw, ctx);
  if (missing) {
    const file = relToFlake(missing.abs, ctx);
    if (missing.untracked || exists(missing.abs)) {
      return { kind: 'untracked', message: `${gitAddAdvice(file, ctx.flakeDir)}.`, detail, file };
    }
    return {
      kind: 'missing-file',
      message: `${subject} refers to ${file}, which does not exist; create it or fix the reference.`,
      detail,
      file,
    };
  }
  // Newer nix nests the cause, indented, under "… while evaluating" frames, each with its own
  // "at": the syntax error's location is the first "at" after it.
  const syntax = /^\s*error:\s*syntax error,?\s*(.*)$/m.exec(detail);
  if (syntax) {
    const at = /^\s*at (\/[^\n]+?):(\d+):(\d+)/m.exec(detail.slice(syntax.index + syntax[0].length));
    const file = at?.[1] ? relToFlake(at[1], ctx) : undefined;
    const where = at && file ? ` in ${file} at line ${at[2]}, column ${at[3]}` : '';
    const what = (syntax[1] ?? '').replace(/^syntax error,?\s*/, '') || 'syntax error';
    return {
      kind: 'syntax',
      message: `${subject} has a syntax error${where} (${what}); fix it and save.`,
      detail,
      ...(file ? { file } : {}),
    };
  }
  const rs = requiredSystem(raw);
  if (rs) {
    return { kind: 'required-system', message: linuxBuilderAdvice(subject, rs), detail, drvPath: rs.drvPath };
  }
  return {
    kind: 'eval',
    message: `${subject} failed to evaluate: ${trimSentence(summary)}; fix it and save.`,
    detail,
  };
}

export interface BuildErrorContext extends ErrorContext {
  vm: string;
  /** A previous build of the VM exists and stays in use. */
  hasPrevious?: boolean;
  /** The remote builder the last build ran on (nix's name for it), when one did. */
  remote?: string | null;
  /** What to call that builder in a sentence (`the builder VM "builder-vm"`), when nixvm knows it. */
  remoteWords?: string | null;
  /** What to do when that builder was lost (start it again…). */
  remoteFix?: string | null;
  /** Any builder nix names (its URI) in words, and what to do when it is lost, when nixvm knows it. */
  describeRemote?: ((uri: string) => { words: string; fix: string } | null) | null;
}

/**
 * The connection to a remote builder went away during the build (its VM stopped, the network
 * dropped), in nix's words (recorded: test/helpers/nix-messages.ts's remote-* cases):
 *   Nix daemon disconnected unexpectedly (maybe it crashed?)     (ssh-ng, 2.26 and 2.34)
 *   unexpected end-of-file                                       (ssh-ng on 2.8; ssh:// on all)
 *   writing to file: Broken pipe / write of N bytes: Broken pipe (cut while copying inputs there)
 * The reason, or null when it is not that.
 */
export function lostConnection(text: string): string | null {
  // What nix gave up on, not what it ignored while cleaning up.
  const t = nixLines(text, false);
  if (/Nix daemon disconnected unexpectedly/.test(t)) return "its nix daemon's connection closed";
  const m = /(unexpected end-of-file|Broken pipe)/.exec(t);
  return m ? m[1]! : null;
}

/**
 * An upload to the builder that was cut and that nix carried on from: it ignored the broken copy
 * ("error (ignored): writing to file: Broken pipe"), then the builder lacked the inputs it never
 * got ("some dependencies of '…' are missing"). Nix 2.8 does this when the cut lands in a window of
 * its copy (seen in a soak); the builder's nix is not at fault. The ignored reason, or null.
 */
function cutUpload(text: string, remoteWhy: string): string | null {
  if (!/some dependencies of '[^']+' are missing/.test(remoteWhy)) return null;
  const ignored = nixLines(text, true);
  return ignored ? lostConnection(ignored) : null;
}

const IGNORED = /^\s*error \(ignored\):/;

/** nix's lines without what it ignored ("error (ignored): …") and went on from, or only those (their prefix cut). */
function nixLines(text: string, ignored: boolean): string {
  return stripAnsi(text)
    .split('\n')
    .filter((l) => IGNORED.test(l) === ignored)
    .map((l) => l.replace(IGNORED, ''))
    .join('\n');
}

/**
 * The builders nix tried and could not reach, then built nothing on (each is a line
 * `cannot build on '<uri>': <why>`, whatever the version words the why:
 *   cannot open connection to remote store '…': error: unexpected end-of-file   (ssh-ng, 2.8)
 *   cannot connect to 'root@…': ssh: connect to host … Connection refused       (ssh://, 2.8)
 *   failed to start SSH connection to '…'                                       (2.26, 2.34)
 * Their URIs, without parameters, once each.
 */
export function unreachableBuilders(text: string): string[] {
  const uris = [...stripAnsi(text).matchAll(/^cannot build on '([^']+)':/gm)].map((m) => m[1]!.replace(/\?.*$/, ''));
  return [...new Set(uris)];
}

/**
 * Translate a failed `nix build` of a VM from nix's error text (`nixErrorText` of its stderr):
 * a missing builder, a failing builder (its derivation in `drvPath`), or an evaluation error.
 * Returns null when nix said nothing.
 */
export function translateBuildError(text: string, ctx: BuildErrorContext): Translated | null {
  const { vm } = ctx;
  const keep = ctx.hasPrevious ? ' (the previous build stays in use)' : '';
  const rs = requiredSystem(text);
  // Nix has builders for it but reached none: the fix is that builder, not setting one up.
  const unreachable = rs ? unreachableBuilders(text) : [];
  if (rs && unreachable.length) {
    const known = unreachable.map((uri) => ctx.describeRemote?.(uri) ?? null);
    const who = unreachable.map((uri, i) => known[i]?.words ?? `the builder ${uri}`).join(' or ');
    const fix = known.find((k) => k)?.fix ?? 'check that it runs and answers ssh';
    const what = rs.required ?? `features ${rs.features.join(', ')}`;
    return {
      kind: 'builder-lost',
      message: `Building VM ${JSON.stringify(vm)} needs a builder for ${what}, but nix could not connect to ${who}; ${fix}, then build again${keep}.`,
      detail: text,
      drvPath: rs.drvPath,
    };
  }
  if (rs) {
    return {
      kind: 'required-system',
      message: linuxBuilderAdvice(`Building VM ${JSON.stringify(vm)}`, rs),
      detail: text,
      drvPath: rs.drvPath,
    };
  }
  // The builder machine itself refused or broke (Nix 2.2x: "build of '…' on '…' failed: <why>").
  const onRemote = /build of '([^']+\.drv)' on '([^']+)' failed: (?:error: )?([^\n]+)/.exec(stripAnsi(text));
  const cut = onRemote && ctx.remote ? cutUpload(text, onRemote[3]!) : null;
  if (onRemote && !cut && !lostConnection(onRemote[3]!)) {
    const uri = onRemote[2]!;
    const who = ctx.remote && uri.replace(/\?.*$/, '') === ctx.remote.replace(/\?.*$/, '') ? ctx.remoteWords : null;
    return {
      kind: 'build-failed',
      message: `Building VM ${JSON.stringify(vm)} failed on ${who ?? `the builder ${uri.replace(/\?.*$/, '')}`}, not in its own derivation: ${trimSentence(onRemote[3]!, 200)}; fix the builder's nix, then build again${keep}.`,
      detail: text,
      drvPath: onRemote[1]!,
    };
  }
  const lost = ctx.remote ? (lostConnection(text) ?? cut) : null;
  if (lost) {
    const who = ctx.remoteWords ?? `builder ${ctx.remote}`;
    return {
      kind: 'builder-lost',
      message: `Building VM ${JSON.stringify(vm)} stopped: the connection to ${who} was lost during the build (${lost}); ${
        ctx.remoteFix ?? 'check that it runs and answers'
      }, then build again${keep}.`,
      detail: text,
      ...(failedBuilder(text) ? { drvPath: failedBuilder(text)!.drvPath } : {}),
    };
  }
  const fb = failedBuilder(text);
  if (fb) {
    return {
      kind: 'build-failed',
      message: `Building VM ${JSON.stringify(vm)} failed in derivation ${drvName(fb.drvPath)} (${fb.how}); fix it and build again${keep}.`,
      detail: text,
      drvPath: fb.drvPath,
    };
  }
  if (!text) return null;
  const t = translateEvalError(text, { ...ctx, subject: `VM ${JSON.stringify(vm)}` });
  if (t.kind !== 'eval') return t;
  return {
    ...t,
    message: `Building VM ${JSON.stringify(vm)} failed: ${trimSentence(summaryLine(t.detail))}; fix it and build again${keep}.`,
  };
}

/**
 * Newer nix reads a '#' or '?' in a flake path as URL syntax and looks for the part before it
 * ("getting status of '/Users/me/my'" for /Users/me/my#vms), where Nix 2.8 said "is not a valid URL".
 */
function cutAtUrlSyntax(flakeDir: string, raw: string): boolean {
  const cut = flakeDir.search(/[#?]/);
  if (cut < 0) return false;
  const before = flakeDir.slice(0, cut);
  return raw.includes(`'${before}'`) || raw.includes(`"${before}"`);
}

/** One line, no trailing full stop, bounded length: it goes inside a sentence. */
export function trimSentence(s: string, max = 300): string {
  const one = s
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/[.;:]+$/, '');
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}
