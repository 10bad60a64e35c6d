/**
 * The inventory: every nixosConfigurations.<name> of a flake and what running it needs, from ONE
 * `nix eval --json` however many VMs there are (N separate evals is the slow path the seed's
 * helper scripts take). A VM that fails to evaluate is reported with nix's own message while the
 * others still load.
 */
import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SharedDir, VmSpec } from '../../api/types.ts';
import { run, RunError, type RunResult } from '../../host/runner.ts';
import { FlakeError, translateEvalError, trimSentence, nixErrorText, stripAnsi } from './errors.ts';
import { NAMES_EXPR, batchExpr, singleExpr, type ConfigurationFilter } from './inventory-expr.ts';
import { EVAL_ARGS, flakeInstallable, type Nix } from './nix.ts';

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
  /** Things worth telling the user that did not stop anything (skipped shares, stale lock file…). */
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
  ssh?: unknown;
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

export type ShareSource = { ok: true; path: string } | { ok: false; reason: string; skip?: boolean };

/**
 * A shared directory's `source` as the seed repo writes it. The seed hands these strings to a
 * shell script, so `"$PWD/persistent"` (quotes included) means "persistent next to where the
 * script runs", which for us is the flake directory. Accepted: absolute paths, and $PWD / ${PWD}
 * forms, quoted or not. `$TMPDIR` shares are the seed's per-run scratch dirs (xchg, shared,
 * certs) that only its own run script creates: skipped with a reason. Anything else is refused.
 */
export function resolveShareSource(raw: string, flakeDir: string): ShareSource {
  let s = raw.trim();
  if (s.length >= 2 && (s[0] === '"' || s[0] === "'") && s.endsWith(s[0])) s = s.slice(1, -1);
  if (/\$\{?TMPDIR\b/.test(s)) {
    return { ok: false, skip: true, reason: "it lives in the seed run script's per-run $TMPDIR" };
  }
  const pwd = /^(["']?)\$(?:PWD|\{PWD\})\1(?=\/|$)/.exec(s);
  if (pwd) {
    const rest = s.slice(pwd[0].length);
    if (/["'`$\\]/.test(rest)) return { ok: false, reason: 'only a plain path may follow $PWD' };
    return { ok: true, path: path.resolve(flakeDir, `.${rest}`) };
  }
  if (/["'`$\\]/.test(s)) return { ok: false, reason: 'shell syntax other than "$PWD/…" is not supported' };
  if (s === '') return { ok: false, reason: 'it is empty' };
  if (!path.isAbsolute(s)) return { ok: false, reason: 'it is not an absolute path' };
  return { ok: true, path: path.resolve(s) };
}

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
  const bad = (what: string) => ({ error: `VM '${name}' ${what}; fix it in the flake at ${flakeDir}.` });
  if (typeof raw.drvPath !== 'string' || !raw.drvPath.endsWith('.drv')) {
    return bad('has no derivation for config.system.build.toplevel');
  }
  if (raw.useNixStoreImage === true) {
    // The seed's script builds an erofs image of the closure on the host and attaches it as nvme;
    // nixvm boots with the host's /nix/store over virtio-fs instead.
    return {
      error: `VM '${name}' sets virtualisation.useNixStoreImage, which nixvm does not support (it shares the host's /nix/store instead); set virtualisation.useNixStoreImage = false and virtualisation.mountHostNixStore = true in the flake at ${flakeDir}.`,
    };
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
      if (src.skip) {
        warnings.push(`VM '${name}': shared directory '${tag}' (${share.source}) is skipped: ${src.reason}.`);
        continue;
      }
      return {
        error: `VM '${name}' has shared directory '${tag}' with source ${JSON.stringify(share.source)}, which nixvm cannot use (${src.reason}); make it an absolute path, or "$PWD/<dir>" for a directory next to flake.nix.`,
      };
    }
    if (typeof share.target !== 'string' || !share.target.startsWith('/')) {
      return bad(`has shared directory '${tag}' whose target is not an absolute path in the guest`);
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
  };
  const users = Array.isArray(ssh.users) ? ssh.users.filter((u): u is string => typeof u === 'string').sort() : [];

  const boot = (raw.boot && typeof raw.boot === 'object' ? raw.boot : {}) as { loader?: unknown; root?: unknown };
  const root = (boot.root && typeof boot.root === 'object' ? boot.root : null) as Record<string, unknown> | null;
  const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

  const spec: VmSpec = {
    name,
    flake: flakeDir,
    drvPath: raw.drvPath,
    system: typeof raw.system === 'string' ? raw.system : null,
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
    mountHostNixStore:
      typeof raw.mountHostNixStore === 'boolean' ? raw.mountHostNixStore : VM_DEFAULTS.mountHostNixStore,
    ssh: {
      enabled: ssh.enable === true,
      port: positiveInt(ssh.port) ?? VM_DEFAULTS.sshPort,
      user: users[0] ?? VM_DEFAULTS.sshUser,
    },
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
      accept(name, parseJson(r, `VM '${name}'`) as RawVm);
    } else {
      const t = translateEvalError(r.stderr, { ...ctx, subject: `VM '${name}'` });
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
