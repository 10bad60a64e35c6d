/**
 * The inventory: every nixosConfigurations.<name> of a flake and what running it needs, from ONE
 * `nix eval --json` however many VMs there are (N separate evals is the slow path the seed's
 * helper scripts take). A VM that fails to evaluate is reported with nix's own message while the
 * others still load.
 */
import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { GuestMount, SharedDir, ShareWord, VmSpec, WritableStoreSpec } from '../../api/types.ts';
import { run, RunError, type RunResult } from '../../host/runner.ts';
import { FlakeError, translateEvalError, trimSentence, nixErrorText, stripAnsi } from './errors.ts';
import { NAMES_EXPR, batchExpr, singleExpr, type ConfigurationFilter } from './inventory-expr.ts';
import { EVAL_ARGS, flakeInstallable, unbuildableName, type Nix } from './nix.ts';

export { FlakeError } from './errors.ts';

/** Documented defaults for options a configuration does not set. */
export const VM_DEFAULTS = {
  cpus: 2,
  memoryMiB: 2048,
  rosetta: true,
  mountHostNixStore: true,
  graphics: false,
  resolution: { width: 1024, height: 768 },
  sshPort: 22,
  sshUser: 'root',
} as const;

/** NixOS's virtualisation.rosetta.mountTag default. */
export const DEFAULT_ROSETTA_TAG = 'rosetta';

export interface InventoryFailure {
  name: string;
  /** One sentence naming the VM; nix's own message is in `detail` (and summarised here). */
  error: string;
  detail: string;
}

export interface InventoryResult {
  /** Absolute flake directory. */
  flake: string;
  /** Sorted by name. */
  vms: VmSpec[];
  failures: InventoryFailure[];
  /**
   * Configurations that are not VMs (they set none of the options nixvm reads, or the settings
   * exclude them), sorted: not shown, only counted.
   */
  hidden: string[];
  /** Things worth telling the user that did not stop anything (a stale lock file, nix's evaluation warnings…). */
  warnings: string[];
}

export interface InventoryOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** How many VMs to evaluate at once when they must be evaluated alone. */
  concurrency?: number;
  /** Configurations to treat as VMs whatever their options, or never (the per-flake settings). */
  filter?: ConfigurationFilter;
  /** Run nix at low priority (background re-evaluations after an edit). */
  nice?: boolean;
}

/** What the Nix expression returns for one VM (inventory-expr.ts); nulls mean "not set". */
export interface RawVm {
  drvPath?: unknown;
  system?: unknown;
  buildSystem?: unknown;
  kernelParams?: unknown;
  cores?: unknown;
  memorySize?: unknown;
  macAddress?: unknown;
  rosetta?: unknown;
  shares?: unknown;
  graphics?: unknown;
  resolution?: unknown;
  mountHostNixStore?: unknown;
  useNixStoreImage?: unknown;
  writableStore?: unknown;
  writableStoreUseTmpfs?: unknown;
  useHostCerts?: unknown;
  diskSize?: unknown;
  rosettaTag?: unknown;
  hostErofsUtils?: unknown;
  fileSystems?: unknown;
  repartDevice?: unknown;
  storeImageMount?: unknown;
  rwStoreDevice?: unknown;
  vz?: unknown;
  registersPaths?: unknown;
  stagedKeysScript?: unknown;
  ssh?: unknown;
  nix?: unknown;
  boot?: unknown;
}

/**
 * The directory nix copies to the store for this flake: the enclosing git work tree if there is
 * one (that is how nix decides a path flake is a git flake), else the flake dir itself.
 */
export function sourceRootOf(flakeDir: string): { root: string; git: boolean } {
  let dir = flakeDir;
  for (;;) {
    if (existsSync(path.join(dir, '.git'))) return { root: dir, git: true };
    const up = path.dirname(dir);
    if (up === dir) return { root: flakeDir, git: false };
    dir = up;
  }
}

export type ShareSource = { ok: true; path: string } | { ok: true; word: ShareWord } | { ok: false; reason: string };

/** The words nixvm resolves, for messages. */
export const SHARE_WORDS = '$PWD, $TMPDIR, $KEYS and ${SHARED_DIR:-…}';

/** One piece of a shell word: text taken literally, or a variable (with a `${VAR:-default}` default). */
type Piece = { text: string } | { variable: string; fallback?: string };

/**
 * Split one shell word the way sh would read it for quoting and expansion, without running
 * anything: quotes group text, `$VAR`, `${VAR}` and `${VAR:-word}` are variables. Throws the reason
 * for anything else a shell would do with it (command substitution, globbing, escapes, spaces).
 */
function shellPieces(s: string): Piece[] {
  const out: Piece[] = [];
  const text = (t: string) => {
    const last = out.at(-1);
    if (last && 'text' in last) last.text += t;
    else out.push({ text: t });
  };
  let i = 0;
  let quote: '"' | "'" | null = null;
  const variable = () => {
    // At a '$'.
    const rest = s.slice(i + 1);
    const braced = /^\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^{}]|\{[^{}]*\})*))?\}/.exec(rest);
    if (braced) {
      out.push(braced[2] === undefined ? { variable: braced[1]! } : { variable: braced[1]!, fallback: braced[2] });
      i += 1 + braced[0].length;
      return;
    }
    const bare = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest);
    if (bare) {
      out.push({ variable: bare[0] });
      i += 1 + bare[0].length;
      return;
    }
    if (rest.startsWith('(')) throw new Error('it runs a command ($(…))');
    throw new Error(`it has a '$' nixvm cannot read (${JSON.stringify(s.slice(i, i + 12))})`);
  };
  while (i < s.length) {
    const c = s[i]!;
    if (quote === "'") {
      if (c === "'") quote = null;
      else if (c === '$') throw new Error('single quotes keep a shell from expanding its $ (use double quotes)');
      else text(c);
      i++;
    } else if (c === '$') {
      variable();
    } else if (c === '`') {
      throw new Error('it runs a command (`…`)');
    } else if (c === '\\') {
      throw new Error('it has a backslash escape');
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else text(c);
      i++;
    } else if (c === '"' || c === "'") {
      quote = c;
      i++;
    } else if (/[\s*?[\]~;&|<>(){}#]/.test(c)) {
      throw new Error(`a shell would treat its ${JSON.stringify(c)} specially`);
    } else {
      text(c);
      i++;
    }
  }
  if (quote) throw new Error(`its ${quote} quote is not closed`);
  return out;
}

/** A `rel` below a word's directory: '' or a plain relative path, normalised, never leaving it. */
function relBelow(rest: string): string | null {
  if (rest === '') return '';
  if (!rest.startsWith('/')) return null;
  const rel = path.posix.normalize(rest.replace(/^\/+/, '')).replace(/\/+$/g, '');
  if (rel === '.' || rel === '') return '';
  if (rel === '..' || rel.startsWith('../')) return null;
  return rel;
}

/**
 * A shared directory's `source` as the seed's runner means it. The seed hands these strings to a
 * shell script, so they are shell words: `"$PWD/persistent"` is next to where the script runs
 * (for nixvm, the flake directory); `"$TMPDIR"/xchg` is in the run's scratch directory;
 * `"${SHARED_DIR:-$TMPDIR/xchg}"` is the shared folder if one is set; `"$KEYS"` is the VM's keys
 * directory (nixpkgs' nix-builder-vm). Absolute paths are taken as they are. Anything else is
 * refused with the reason, naming the word nixvm did not understand.
 */
export function resolveShareSource(raw: string, flakeDir: string): ShareSource {
  let pieces: Piece[];
  try {
    pieces = shellPieces(raw.trim());
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  const [first, ...rest] = pieces;
  if (!first) return { ok: false, reason: 'it is empty' };
  const tail = rest.map((p) => ('text' in p ? p.text : null));
  const stray = rest.find((p) => 'variable' in p);
  if (stray && 'variable' in stray) {
    return { ok: false, reason: `nixvm only reads a word at its start, not $${stray.variable} further on` };
  }
  const after = tail.join('');
  if ('text' in first) {
    const p = first.text + after;
    if (!path.isAbsolute(p)) return { ok: false, reason: 'it is not an absolute path' };
    return { ok: true, path: path.resolve(p) };
  }
  const v = first.variable;
  const rel = relBelow(after);
  if (rel === null) return { ok: false, reason: `only a plain path below $${v} may follow it` };
  if (first.fallback !== undefined && v !== 'SHARED_DIR') {
    return { ok: false, reason: `nixvm reads a default (\${…:-…}) only for SHARED_DIR, not for $${v}` };
  }
  switch (v) {
    case 'PWD':
      return { ok: true, path: path.resolve(flakeDir, rel) };
    case 'TMPDIR':
    case 'KEYS':
      return { ok: true, word: { word: v, rel } };
    case 'SHARED_DIR': {
      if (rel !== '') return { ok: false, reason: 'nothing may follow ${SHARED_DIR:-…}' };
      if (first.fallback === undefined) {
        return { ok: false, reason: 'it uses $SHARED_DIR without a default (write "${SHARED_DIR:-$TMPDIR/xchg}")' };
      }
      const fb = resolveShareSource(first.fallback, flakeDir);
      if (!fb.ok)
        return { ok: false, reason: `its default ${JSON.stringify(first.fallback)} cannot be used: ${fb.reason}` };
      if ('path' in fb) return { ok: true, word: { word: 'SHARED_DIR', fallback: { path: fb.path } } };
      if (fb.word.word === 'SHARED_DIR') return { ok: false, reason: 'its default is itself ${SHARED_DIR:-…}' };
      return { ok: true, word: { word: 'SHARED_DIR', fallback: fb.word } };
    }
    default:
      return { ok: false, reason: `it uses the word $${v}, which nixvm does not know (it knows ${SHARE_WORDS})` };
  }
}

/** What nixvm does for the seed's writable store when virtualisation.diskSize is not a number: its runner's 20G. */
export const DEFAULT_WRITABLE_STORE_MIB = 20 * 1024;

const MAC = /^[0-9a-f]{1,2}(:[0-9a-f]{1,2}){5}$/i;

function positiveInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : null;
}

/**
 * Turn what nix returned for one VM into a VmSpec, applying the documented defaults. Returns an
 * error sentence (naming the VM) when a value cannot be used.
 */
export function toVmSpec(
  name: string,
  raw: RawVm,
  flakeDir: string,
): { spec: VmSpec; warnings: string[] } | { error: string } {
  const bad = (what: string) => ({ error: `VM ${JSON.stringify(name)} ${what}; fix it in the flake at ${flakeDir}.` });
  const unusable = unbuildableName(name);
  if (unusable) {
    return {
      error: `The VM named ${JSON.stringify(name)} cannot be built or run by nixvm: ${unusable}; rename it in nixosConfigurations of the flake at ${flakeDir}.`,
    };
  }
  if (typeof raw.drvPath !== 'string' || !raw.drvPath.endsWith('.drv')) {
    return bad('has no derivation for config.system.build.toplevel');
  }
  // vz-vm has no useNixStoreImage: it always boots the erofs image its /nix/.ro-store mounts.
  const storeImage =
    raw.useNixStoreImage === true || (typeof raw.useNixStoreImage !== 'boolean' && raw.storeImageMount === true);
  if (storeImage && raw.hostErofsUtils === false) {
    return bad(
      `${raw.useNixStoreImage === true ? 'sets virtualisation.useNixStoreImage' : 'boots from a store image (its /nix/.ro-store is erofs)'}, but its virtualisation.host.pkgs has no erofs-utils to build the store image with; point virtualisation.host.pkgs at a package set that has it (the seed uses nixpkgs for the host)`,
    );
  }
  const warnings: string[] = [];
  const num = (v: unknown, option: string, dflt: number): number | { error: string } => {
    if (v === null || v === undefined) return dflt;
    return positiveInt(v) ?? bad(`sets ${option} to ${JSON.stringify(v)}, which is not a positive whole number`);
  };
  const cpus = num(raw.cores, 'virtualisation.cores', VM_DEFAULTS.cpus);
  if (typeof cpus !== 'number') return cpus;
  const memoryMiB = num(raw.memorySize, 'virtualisation.memorySize', VM_DEFAULTS.memoryMiB);
  if (typeof memoryMiB !== 'number') return memoryMiB;

  let macAddress: string | null = null;
  if (raw.macAddress !== null && raw.macAddress !== undefined) {
    if (typeof raw.macAddress !== 'string' || !MAC.test(raw.macAddress)) {
      return bad(
        `has virtualisation.macAddress ${JSON.stringify(raw.macAddress)}, which is not a MAC address like f6:25:e2:48:58:1e`,
      );
    }
    macAddress = raw.macAddress.toLowerCase();
  }

  const shares: SharedDir[] = [];
  const rawShares = raw.shares && typeof raw.shares === 'object' ? (raw.shares as Record<string, unknown>) : {};
  for (const [tag, v] of Object.entries(rawShares)) {
    const share = (v ?? {}) as { source?: unknown; target?: unknown };
    if (typeof share.source !== 'string') return bad(`has shared directory '${tag}' without a source`);
    const src = resolveShareSource(share.source, flakeDir);
    if (!src.ok) {
      return {
        error: `VM ${JSON.stringify(name)} has shared directory '${tag}' with source ${JSON.stringify(share.source)}, which nixvm cannot use: ${src.reason}; make it an absolute path or use ${SHARE_WORDS} (see the README's share words).`,
      };
    }
    if (typeof share.target !== 'string' || !share.target.startsWith('/')) {
      return bad(`has shared directory '${tag}' whose target is not an absolute path in the guest`);
    }
    if ('word' in src) {
      shares.push({ tag, source: '', target: share.target, word: src.word });
      continue;
    }
    shares.push({ tag, source: src.path, target: share.target });
  }

  const graphics = typeof raw.graphics === 'boolean' ? raw.graphics : VM_DEFAULTS.graphics;
  let resolution: VmSpec['resolution'] = graphics ? { ...VM_DEFAULTS.resolution } : null;
  const res = raw.resolution as { x?: unknown; y?: unknown } | null | undefined;
  if (res && typeof res === 'object') {
    const width = positiveInt(res.x);
    const height = positiveInt(res.y);
    if (width && height) resolution = { width, height };
  }

  const ssh = (raw.ssh && typeof raw.ssh === 'object' ? raw.ssh : {}) as {
    enable?: unknown;
    port?: unknown;
    users?: unknown;
    authorizedKeysFiles?: unknown;
    hostKey?: unknown;
    keyCredential?: unknown;
  };
  const stagedKeys = typeof raw.stagedKeysScript === 'string' ? stagedKeysOf(raw.stagedKeysScript) : null;
  const users = Array.isArray(ssh.users) ? ssh.users.filter((u): u is string => typeof u === 'string').sort() : [];

  const diskSizeMiB = positiveInt(raw.diskSize);
  let writableStore: WritableStoreSpec | null = null;
  // The seed's base.nix: writableStore && !writableStoreUseTmpfs is a persistent image (repart formats it).
  if (raw.writableStore === true && raw.writableStoreUseTmpfs === false) {
    const device =
      typeof raw.repartDevice === 'string' && raw.repartDevice !== ''
        ? raw.repartDevice
        : typeof raw.rwStoreDevice === 'string' && /^\/dev\/(vd[a-z]+|nvme\d+n1)$/.test(raw.rwStoreDevice)
          ? raw.rwStoreDevice
          : null;
    writableStore = { sizeMiB: diskSizeMiB ?? DEFAULT_WRITABLE_STORE_MIB, device };
  }
  const guestMounts: GuestMount[] = [];
  if (raw.fileSystems && typeof raw.fileSystems === 'object') {
    for (const [target, f] of Object.entries(raw.fileSystems as Record<string, unknown>)) {
      const fs = (f ?? {}) as { device?: unknown; fsType?: unknown };
      guestMounts.push({
        target,
        device: typeof fs.device === 'string' ? fs.device : null,
        fsType: typeof fs.fsType === 'string' ? fs.fsType : null,
      });
    }
    guestMounts.sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : 0));
  }
  const boot = (raw.boot && typeof raw.boot === 'object' ? raw.boot : {}) as { loader?: unknown; root?: unknown };
  const root = (boot.root && typeof boot.root === 'object' ? boot.root : null) as Record<string, unknown> | null;
  const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  const nixRaw = (raw.nix && typeof raw.nix === 'object' ? raw.nix : {}) as Record<string, unknown>;
  const strs = (v: unknown): string[] | null =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x.length <= 256).slice(0, 256) : null;

  const spec: VmSpec = {
    name,
    flake: flakeDir,
    drvPath: raw.drvPath,
    system: typeof raw.system === 'string' ? raw.system : null,
    ...(typeof raw.buildSystem === 'string' && raw.buildSystem !== raw.system ? { buildSystem: raw.buildSystem } : {}),
    kernelParams: Array.isArray(raw.kernelParams)
      ? raw.kernelParams.filter((p): p is string => typeof p === 'string')
      : [],
    cpus,
    memoryMiB,
    macAddress,
    rosetta: typeof raw.rosetta === 'boolean' ? raw.rosetta : VM_DEFAULTS.rosetta,
    shares,
    graphics,
    resolution,
    // The option's own default (qemu-vm.nix, the seed's from-qemu-vm.nix): !useNixStoreImage.
    mountHostNixStore:
      typeof raw.mountHostNixStore === 'boolean' ? raw.mountHostNixStore : VM_DEFAULTS.mountHostNixStore && !storeImage,
    ssh: {
      enabled: ssh.enable === true,
      port: positiveInt(ssh.port) ?? VM_DEFAULTS.sshPort,
      user: users[0] ?? VM_DEFAULTS.sshUser,
      authorizedKeysFiles: Array.isArray(ssh.authorizedKeysFiles)
        ? ssh.authorizedKeysFiles.filter((f): f is string => typeof f === 'string' && f.length <= 4096)
        : [],
      hostKey: typeof ssh.hostKey === 'string' && ssh.hostKey.length <= 16_384 ? ssh.hostKey.trim() : null,
      keyCredential: ssh.keyCredential === true,
      ...(stagedKeys ? { stagedKeys } : {}),
    },
    rosettaTag: typeof raw.rosettaTag === 'string' && raw.rosettaTag !== '' ? raw.rosettaTag : DEFAULT_ROSETTA_TAG,
    storeImage,
    writableStore,
    hostCerts: raw.useHostCerts === true,
    diskSizeMiB,
    guestMounts,
    nix: {
      // NixOS's default is on; a configuration without the option (a fixture) has no nix to ask.
      enabled: typeof nixRaw.enable === 'boolean' ? nixRaw.enable : null,
      trustedUsers: strs(nixRaw.trustedUsers) ?? [],
      systemFeatures: strs(nixRaw.systemFeatures),
      extraPlatforms: strs(nixRaw.extraPlatforms) ?? [],
    },
    ...(raw.vz === true ? { runner: 'vz' as const } : {}),
    ...(raw.registersPaths === true ? { registersStorePaths: true } : {}),
    // Only when there is something to say (a loader, a root file system), like the seed's VMs.
    ...(str(boot.loader) !== null || root
      ? {
          boot: {
            loader: str(boot.loader),
            root: root ? { device: str(root.device), fsType: str(root.fsType), label: str(root.label) } : null,
          },
        }
      : {}),
  };
  return { spec, warnings };
}

/**
 * Where nix-builder-vz-vm's copy-builder-keys service copies keys from and to, read from its
 * script (`for key in <from>/*.pub … install … "$key" <to>/`); null for any other script.
 */
export function stagedKeysOf(script: string): { from: string; to: string } | null {
  const from = /\bfor\s+(\w+)\s+in\s+(\/[\w./-]+?)\/\*\.pub\s*;/.exec(script);
  if (!from) return null;
  const to = new RegExp(`\\binstall\\b[^\\n]*"\\$${from[1]}"\\s+(\\/[\\w./-]+?)\\/?\\s*(?:;|$)`, 'm').exec(script);
  if (!to) return null;
  return { from: path.posix.normalize(from[2]!), to: path.posix.normalize(to[1]!) };
}

/** Names of VMs whose drvPath differs between two inventories (new VMs included). */
export function changedVms(prev: readonly VmSpec[], next: readonly VmSpec[]): string[] {
  const before = new Map(prev.map((v) => [v.name, v.drvPath]));
  return next.filter((v) => before.get(v.name) !== v.drvPath).map((v) => v.name);
}

/**
 * Names of VMs whose run settings (cpus, memory, MAC, shares, rosetta, graphics…) changed while
 * their drvPath did not: those options shape the vfkit command, not the closure, so a running VM
 * needs a restart, not a rebuild, to pick them up.
 */
export function respeccedVms(prev: readonly VmSpec[], next: readonly VmSpec[]): string[] {
  const before = new Map(prev.map((v) => [v.name, v]));
  const runShape = (v: VmSpec) =>
    JSON.stringify([
      v.kernelParams,
      v.cpus,
      v.memoryMiB,
      v.macAddress,
      v.rosetta,
      v.shares,
      v.graphics,
      v.resolution,
      v.mountHostNixStore,
      v.ssh,
      v.rosettaTag,
      v.storeImage,
      v.writableStore,
      v.hostCerts,
      v.diskSizeMiB,
      v.guestMounts,
    ]);
  return next
    .filter((v) => {
      const p = before.get(v.name);
      return p !== undefined && p.drvPath === v.drvPath && runShape(p) !== runShape(v);
    })
    .map((v) => v.name);
}

/** Warnings nix printed on a successful evaluation that a user should see. */
export function evalWarnings(stderr: string, flakeDir: string): string[] {
  const out: string[] = [];
  if (/not writing modified lock file/.test(stderr)) {
    out.push(
      `The flake at ${flakeDir} has a missing or outdated flake.lock; nixvm does not write it, so run \`nix flake lock\` there to pin its inputs (evaluation is faster too).`,
    );
  }
  // nixpkgs' lib.warn: `trace: warning: …` (before 24.11), `trace: evaluation warning: …` (24.11+
  // on Nix before 2.23), `evaluation warning: …` (builtins.warn, Nix 2.23+).
  for (const m of stripAnsi(stderr).matchAll(/^(?:trace: (?:evaluation )?warning|evaluation warning): (.+)$/gm)) {
    if (m[1]) out.push(`nix: ${m[1].trim()}`);
  }
  return out;
}

function checkFlakeDir(flakeDir: string): void {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(flakeDir);
  } catch {
    throw new FlakeError(
      flakeDir,
      'no-such-dir',
      `The flake directory ${flakeDir} does not exist; fix the path in Settings.`,
    );
  }
  if (!st.isDirectory() || !existsSync(path.join(flakeDir, 'flake.nix'))) {
    // nix would search parent directories for a flake.nix; we want exactly this one.
    throw new FlakeError(
      flakeDir,
      'not-a-flake',
      `${flakeDir} is not a flake (it has no flake.nix); point nixvm at the directory that holds your flake.nix.`,
    );
  }
}

/** The argv of one inventory evaluation: `apply` is BATCH_EXPR, NAMES_EXPR or singleExpr(name). */
export function inventoryArgv(nix: Nix, flakeDir: string, apply: string): string[] {
  return nix.argv(
    'eval',
    '--json',
    ...EVAL_ARGS,
    flakeInstallable(flakeDir, ['nixosConfigurations']),
    '--apply',
    apply,
  );
}

/** Run nix; on failure return the result for translation (never its stdout). */
async function evalCall(nix: Nix, flakeDir: string, apply: string, opts: InventoryOptions): Promise<RunResult> {
  return run(inventoryArgv(nix, flakeDir, apply), {
    signal: opts.signal,
    timeoutMs: opts.timeoutMs,
    allowFailure: true,
    ...(opts.nice ? { nice: BACKGROUND_NICE } : {}),
  });
}

/** How much lower a background evaluation runs (nice(1)'s own default increment). */
export const BACKGROUND_NICE = 10;

function parseJson(r: RunResult, what: string): unknown {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`nix printed something that is not JSON for ${what}: ${trimSentence(r.stdout, 200)}`);
  }
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Evaluate a flake's VMs. Whole-flake failures (missing dir, not a flake, syntax error in
 * flake.nix, no nixosConfigurations…) throw a FlakeError; a failing VM becomes an entry in
 * `failures` with nix's message. Cancellation (opts.signal) rejects with the runner's RunError.
 */
export async function inventory(nix: Nix, flakeDir: string, opts: InventoryOptions = {}): Promise<InventoryResult> {
  const flake = path.resolve(flakeDir);
  checkFlakeDir(flake);
  const { root } = sourceRootOf(flake);
  const ctx = { flakeDir: flake, sourceRoot: root };

  const filter = opts.filter ?? {};
  const excluded = new Set(filter.exclude ?? []);
  const result: InventoryResult = { flake, vms: [], failures: [], hidden: [], warnings: [] };
  const addWarnings = (ws: string[]) => {
    for (const w of ws) if (!result.warnings.includes(w)) result.warnings.push(w);
  };
  const accept = (name: string, raw: RawVm & { other?: unknown }) => {
    if (raw.other !== undefined) {
      result.hidden.push(name);
      return;
    }
    const r = toVmSpec(name, raw, flake);
    if ('error' in r) result.failures.push({ name, error: r.error, detail: '' });
    else {
      result.vms.push(r.spec);
      addWarnings(r.warnings);
    }
  };

  let alone: string[];
  const batch = await evalCall(nix, flake, batchExpr(filter), opts);
  if (batch.exitCode === 0) {
    addWarnings(evalWarnings(batch.stderr, flake));
    const all = parseJson(batch, 'the inventory') as Record<string, { ok?: RawVm; failed?: boolean; other?: string }>;
    alone = [];
    for (const [name, entry] of Object.entries(all)) {
      if (entry.ok) accept(name, entry.ok);
      else if (entry.other !== undefined) result.hidden.push(name);
      else alone.push(name);
    }
  } else {
    // tryEval does not catch everything (abort, type errors, infinite recursion): find out which
    // VMs are broken by evaluating them one by one. First, are there VMs at all?
    const names = await evalCall(nix, flake, NAMES_EXPR, opts);
    if (names.exitCode !== 0) {
      const t = translateEvalError(names.stderr, ctx);
      throw new FlakeError(flake, t.kind, t.message, t.detail);
    }
    addWarnings(evalWarnings(names.stderr, flake));
    alone = [];
    for (const n of parseJson(names, 'the VM names') as unknown[]) {
      if (typeof n !== 'string') continue;
      if (excluded.has(n)) result.hidden.push(n);
      else alone.push(n);
    }
  }

  // Each VM alone, without tryEval: succeeds with its facts, or fails with nix's own message.
  // A background evaluation runs one nix at a time: it is not worth a laptop's fans.
  const limit = opts.concurrency ?? (opts.nice ? 1 : Math.max(1, Math.min(4, os.availableParallelism())));
  const singles = await mapLimit(alone, limit, async (name) => ({
    name,
    r: await evalCall(nix, flake, singleExpr(name, filter), opts),
  }));
  for (const { name, r } of singles) {
    if (r.exitCode === 0) {
      addWarnings(evalWarnings(r.stderr, flake));
      accept(name, parseJson(r, `VM ${JSON.stringify(name)}`) as RawVm);
    } else {
      const t = translateEvalError(r.stderr, { ...ctx, subject: `VM ${JSON.stringify(name)}` });
      result.failures.push({ name, error: t.message, detail: t.detail || nixErrorText(r.stderr) });
    }
  }

  result.vms.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  result.failures.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  result.hidden.sort();
  return result;
}

/** True when an error came from cancelling the evaluation. */
export function isCancelled(err: unknown): boolean {
  return err instanceof RunError && err.cancelled;
}
