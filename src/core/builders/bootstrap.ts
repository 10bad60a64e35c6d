/**
 * The first Linux builder, when there is none: nixpkgs' `darwin.linux-builder-vz` (the
 * Virtualization.framework builder Hydra prebuilds for Macs, so its aarch64-linux system comes
 * from the binary cache and nothing needs a Linux machine to build it) run by nixvm under vfkit
 * with its own devices, then made the builder like any VM (`Builders.use`).
 *
 * nixvm writes a small flake of its own whose one configuration is that package's `nixosConfig`,
 * locks its nixpkgs once (so the system is the one that was measured and stays cached), asks the
 * substituters what the system's closure weighs and what of it is already here, and says so
 * before anything is downloaded. With consent, the flake joins the user's flakes and the VM is
 * started and registered through the ordinary path, its download shown as its build's progress.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BootstrapPlan } from '../../api/types.ts';
import { AgentError } from '../../api/errors.ts';
import { formatBytes } from '../../api/describe.ts';
import { sourceRootOf } from '../nix/inventory.ts';
import { nixStoreBin } from '../nix/closure-info.ts';
import type { ConfigRunner } from '../nix/config.ts';
import { nixErrorText, summaryLine, trimSentence } from '../nix/errors.ts';
import { EVAL_ARGS, flakeInstallable, NIX_FEATURE_ARGS, Nix } from '../nix/nix.ts';

/** The configuration's name in nixvm's flake, and so the VM's. */
export const BOOTSTRAP_VM = 'linux-builder';

/** The nixpkgs that has darwin.linux-builder-vz (NixOS 26.11 and unstable). */
export const DEFAULT_NIXPKGS = 'github:NixOS/nixpkgs/nixpkgs-unstable';

/** The attribute under nixpkgs' legacyPackages.<host>. */
const PACKAGE = ['darwin', 'linux-builder-vz'] as const;

/**
 * Where nixvm's flake lives: beside its state, unless that path has white space ("Application
 * Support"), which Nix 2.8 cannot read as a flake ("is not a valid URL"): then ~/.config/nixvm.
 */
export function bootstrapFlakeDir(stateDir: string, home: string | null): string {
  const inState = path.join(stateDir, 'linux-builder');
  if (!/\s/.test(inState) || !home) return inState;
  return path.join(home, '.config', 'nixvm', 'linux-builder');
}

/** The nixpkgs a user names, as the flake input's URL; or why not. */
export function nixpkgsInput(ref: string): { url: string } | { error: string } {
  const r = ref.trim();
  if (r === '') return { error: 'the nixpkgs to take the builder from is empty' };
  if (r.length > 512) return { error: 'the nixpkgs reference is longer than 512 characters' };
  if (/\s/.test(r)) return { error: `nixpkgs reference ${JSON.stringify(r)} has white space, which nix cannot read` };
  // Written into a Nix string: nothing that could end it or interpolate.
  if (/["\\$`]|[\u0000-\u001f\u007f]/.test(r))
    return { error: `nixpkgs reference ${JSON.stringify(r)} has a character a flake reference cannot hold` };
  if (r.startsWith('/')) return { url: `path:${r}` };
  if (!/^[a-z][a-z0-9+.-]*:/.test(r) && !/^[A-Za-z][\w-]*$/.test(r))
    return { error: `${JSON.stringify(r)} is not a flake reference (like ${DEFAULT_NIXPKGS} or an absolute path)` };
  return { url: r };
}

/** The flake nixvm writes: one configuration, the package's nixosConfig. Pure. */
export function bootstrapFlakeText(url: string, hostSystem: string): string {
  if (!/^[a-z0-9_]+-[a-z0-9_]+$/.test(hostSystem)) throw new Error(`not a nix system: ${hostSystem}`);
  return `# Written by nixvm (\`nixvm builder setup\`): nixpkgs' darwin.linux-builder-vz, the Linux builder
# Hydra prebuilds for Macs, run by nixvm under vfkit. nixvm rewrites this file; to take the
# builder from another nixpkgs, run \`nixvm builder setup --nixpkgs <flake>\` again.
{
  description = "nixvm's Linux builder (nixpkgs' darwin.linux-builder-vz)";
  inputs.nixpkgs.url = "${url}";
  outputs =
    { self, nixpkgs }:
    {
      nixosConfigurations.${BOOTSTRAP_VM}.config =
        nixpkgs.legacyPackages.${hostSystem}.${PACKAGE.join('.')}.nixosConfig;
    };
}
`;
}

export interface PathFacts {
  narSize: number;
  downloadSize: number | null;
}

/**
 * `nix path-info --json` of a binary cache: Nix 2.8 and Lix print an array (`valid: false` for a
 * path it lacks), 2.19+ an object keyed by path (null for one it lacks). Missing paths are left out.
 */
export function parsePathInfo(stdout: string, storeDir = '/nix/store'): Map<string, PathFacts> {
  const out = new Map<string, PathFacts>();
  let data: unknown;
  try {
    data = JSON.parse(stdout);
  } catch {
    return out;
  }
  const add = (p: unknown, v: unknown) => {
    if (typeof p !== 'string' || !v || typeof v !== 'object') return;
    const o = v as { valid?: unknown; narSize?: unknown; downloadSize?: unknown };
    if (o.valid === false || typeof o.narSize !== 'number') return;
    const full = p.startsWith('/') ? p : `${storeDir}/${p}`;
    out.set(full, { narSize: o.narSize, downloadSize: typeof o.downloadSize === 'number' ? o.downloadSize : null });
  };
  if (Array.isArray(data)) for (const v of data) add((v as { path?: unknown })?.path, v);
  else if (data && typeof data === 'object') for (const [k, v] of Object.entries(data)) add(k, v);
  return out;
}

/** What of a closure must come from the cache: the paths not here, their download and unpacked sizes. */
export function downloadOf(
  closure: Map<string, PathFacts>,
  missingHere: ReadonlySet<string>,
): { paths: number; downloadBytes: number | null; unpackedBytes: number } {
  let paths = 0;
  let download: number | null = 0;
  let unpacked = 0;
  for (const [p, f] of closure) {
    if (!missingHere.has(p)) continue;
    paths++;
    unpacked += f.narSize;
    download = download === null || f.downloadSize === null ? null : download + f.downloadSize;
  }
  return { paths, downloadBytes: download, unpackedBytes: unpacked };
}

/** The plan in one sentence, for the confirmation and the CLI. */
export function planSentence(
  p: Pick<BootstrapPlan, 'paths' | 'downloadBytes' | 'unpackedBytes' | 'substituter' | 'nixpkgs'>,
): string {
  const from = `nixpkgs' darwin.linux-builder-vz (${p.nixpkgs})`;
  if (p.paths === 0) return `Everything ${from} needs is already in your Nix store; nothing is downloaded.`;
  const size =
    p.downloadBytes === null
      ? `${formatBytes(p.unpackedBytes)} unpacked`
      : `${formatBytes(p.downloadBytes)} download, ${formatBytes(p.unpackedBytes)} unpacked`;
  return `Setting up the Linux builder downloads ${p.paths} store path${p.paths === 1 ? '' : 's'} of ${from} from ${p.substituter} (${size}).`;
}

export interface BootstrapOptions {
  stateDir: string;
  home: string | null;
  run: ConfigRunner;
  nix(): string | null;
  log(line: string): void;
}

/** What nix (or git) said went wrong, for inside a sentence: the cause line, not the code frame. */
function lastError(stderr: string, exitCode: number | null): string {
  return stderr.trim() ? trimSentence(summaryLine(nixErrorText(stderr))) : `exit ${exitCode}`;
}

export class Bootstrap {
  readonly #o: BootstrapOptions;
  readonly dir: string;

  constructor(o: BootstrapOptions) {
    this.#o = o;
    this.dir = bootstrapFlakeDir(o.stateDir, o.home);
  }

  #nix(): string {
    const nix = this.#o.nix();
    if (!nix) throw new AgentError('failed', 'Cannot set up a Linux builder: nix was not found; install Nix first.');
    return nix;
  }

  /** nix with flakes on, as every evaluation runs it. */
  #argv(...args: string[]): string[] {
    return [this.#nix(), ...NIX_FEATURE_ARGS, ...args];
  }

  /**
   * Write nixvm's flake for `nixpkgs` and lock it (that fetches nixpkgs' source), then work out
   * what the builder's system needs from the cache. Changes nothing else. `nix` is what nix's
   * configuration says: its system and its substituters.
   */
  async plan(nixpkgs: string, nix: { system: string | null; substituters: string[] }): Promise<BootstrapPlan> {
    const input = nixpkgsInput(nixpkgs);
    if ('error' in input) throw new AgentError('bad-request', `Cannot set up a Linux builder: ${input.error}.`);
    const host = nix.system;
    if (!host) throw new AgentError('failed', 'Cannot set up a Linux builder: nix did not say which system it is.');
    const git = await this.#write(input.url, host);
    await this.#lock(nixpkgs);
    if (git) await this.#git(['add', '--', 'flake.nix', 'flake.lock']);
    const { toplevel, erofs } = await this.#outPaths(nixpkgs);
    const { substituters } = nix;
    const found = await this.#inCache(toplevel, substituters);
    if (!found) {
      throw new AgentError(
        'failed',
        `Cannot set up a Linux builder: the system of nixpkgs' darwin.linux-builder-vz from ${nixpkgs} is not in ${substituters.length ? substituters.join(', ') : 'any substituter (nix has none)'}, and building it needs a Linux builder; take it from a nixpkgs revision Hydra has built (\`nixvm builder setup --nixpkgs ${DEFAULT_NIXPKGS}\`).`,
      );
    }
    const closure = await this.#closure(found, [toplevel, erofs]);
    const missing = await this.#missingHere([...closure.keys()]);
    const d = downloadOf(closure, missing);
    return {
      flake: this.dir,
      vm: BOOTSTRAP_VM,
      nixpkgs: this.#lockedNixpkgs() ?? nixpkgs,
      toplevel,
      substituter: found,
      ...d,
    };
  }

  /** Write flake.nix (dropping a lock of another nixpkgs); true when the flake is a git one. */
  async #write(url: string, host: string): Promise<boolean> {
    const file = path.join(this.dir, 'flake.nix');
    const text = bootstrapFlakeText(url, host);
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    let before: string | null = null;
    try {
      before = fs.readFileSync(file, 'utf8');
    } catch {
      before = null;
    }
    if (before !== text) {
      fs.writeFileSync(file, text, { mode: 0o644 });
      // Another nixpkgs: the old lock would pin the old one.
      fs.rmSync(path.join(this.dir, 'flake.lock'), { force: true });
    }
    // Inside a git work tree (dotfiles in ~/.config) nix would read only files git tracks: give
    // the flake a repository of its own, with its files added.
    const root = sourceRootOf(this.dir);
    if (!root.git) return false;
    if (root.root !== this.dir) await this.#git(['init', '-q']);
    // nix locks a git flake only once git tracks its flake.nix.
    await this.#git(['add', '--', 'flake.nix']);
    return true;
  }

  async #git(args: string[]): Promise<void> {
    const r = await this.#o.run(['git', '-C', this.dir, ...args], { allowFailure: true, timeoutMs: 30_000 });
    if (r.exitCode !== 0)
      throw new AgentError(
        'failed',
        `Cannot set up a Linux builder: git ${args[0]} in ${this.dir} failed (${lastError(r.stderr, r.exitCode)}).`,
      );
  }

  /** `nix flake lock`: pins nixpkgs once (the first time, fetching its source). */
  async #lock(nixpkgs: string): Promise<void> {
    if (fs.existsSync(path.join(this.dir, 'flake.lock'))) return;
    this.#o.log(`builder setup: fetching ${nixpkgs} to evaluate darwin.linux-builder-vz`);
    const r = await this.#o.run(this.#argv('flake', 'lock', this.dir), { allowFailure: true, timeoutMs: 30 * 60_000 });
    if (r.exitCode !== 0)
      throw new AgentError(
        'failed',
        `Cannot set up a Linux builder: nix could not fetch ${nixpkgs} (${lastError(r.stderr, r.exitCode)}); check the connection and the reference, then try again.`,
      );
  }

  /** The locked nixpkgs, as `github:NixOS/nixpkgs/<rev>` or its URL, for the plan. */
  #lockedNixpkgs(): string | null {
    try {
      const lock = JSON.parse(fs.readFileSync(path.join(this.dir, 'flake.lock'), 'utf8')) as {
        nodes?: Record<string, { locked?: Record<string, unknown> }>;
      };
      const l = lock.nodes?.nixpkgs?.locked;
      if (!l) return null;
      if (l.type === 'github' && typeof l.rev === 'string') return `github:${l.owner}/${l.repo}/${l.rev}`;
      if (typeof l.path === 'string') return `path:${l.path}`;
      return typeof l.url === 'string' ? l.url : null;
    } catch {
      return null;
    }
  }

  async #outPaths(nixpkgs: string): Promise<{ toplevel: string; erofs: string }> {
    const installable = flakeInstallable(this.dir, ['nixosConfigurations', BOOTSTRAP_VM, 'config']);
    const apply =
      'c: { toplevel = c.system.build.toplevel.outPath; erofs = c.virtualisation.host.pkgs.erofs-utils.outPath; }';
    const r = await this.#o.run(this.#argv('eval', '--json', ...EVAL_ARGS, installable, '--apply', apply), {
      allowFailure: true,
      timeoutMs: 10 * 60_000,
    });
    if (r.exitCode !== 0) {
      const why = lastError(r.stderr, r.exitCode);
      const missing =
        /does not provide attribute|attribute '(legacyPackages|[\w-]+-darwin|darwin|linux-builder-vz|nixosConfig)' missing/.test(
          r.stderr,
        );
      throw new AgentError(
        'failed',
        missing
          ? `Cannot set up a Linux builder: ${nixpkgs} has no darwin.linux-builder-vz (it is in nixpkgs-unstable and NixOS 26.11 on); use \`--nixpkgs ${DEFAULT_NIXPKGS}\`.`
          : `Cannot set up a Linux builder: evaluating darwin.linux-builder-vz from ${nixpkgs} failed (${why}).`,
      );
    }
    const o = JSON.parse(r.stdout) as { toplevel?: unknown; erofs?: unknown };
    if (typeof o.toplevel !== 'string' || typeof o.erofs !== 'string')
      throw new AgentError('failed', 'Cannot set up a Linux builder: nix gave no store path for its system.');
    return { toplevel: o.toplevel, erofs: o.erofs };
  }

  /** The first substituter that has `toplevel` (asked for that path alone: quick, and no error when absent). */
  async #inCache(toplevel: string, substituters: string[]): Promise<string | null> {
    for (const url of substituters) {
      const r = await this.#o.run(this.#argv('path-info', '--json', '--store', url, toplevel), {
        allowFailure: true,
        timeoutMs: 120_000,
      });
      if (r.exitCode === 0 && parsePathInfo(r.stdout).has(toplevel)) return url;
    }
    return null;
  }

  async #closure(url: string, roots: string[]): Promise<Map<string, PathFacts>> {
    const all = new Map<string, PathFacts>();
    for (const root of roots) {
      const r = await this.#o.run(this.#argv('path-info', '--json', '--recursive', '--store', url, root), {
        allowFailure: true,
        timeoutMs: 300_000,
      });
      // erofs-utils is the host's: it may be here already, or built rather than fetched.
      if (r.exitCode !== 0) {
        if (root !== roots[0]) continue;
        throw new AgentError(
          'failed',
          `Cannot set up a Linux builder: ${url} could not list the builder's closure (${lastError(r.stderr, r.exitCode)}).`,
        );
      }
      for (const [p, f] of parsePathInfo(r.stdout)) all.set(p, f);
    }
    return all;
  }

  /** Which of `paths` the local store lacks (`nix-store --check-validity --print-invalid`, in chunks). */
  async #missingHere(paths: string[]): Promise<Set<string>> {
    const nixStore = nixStoreBin(new Nix(this.#nix()));
    const out = new Set<string>();
    for (let i = 0; i < paths.length; i += 2000) {
      const chunk = paths.slice(i, i + 2000);
      const r = await this.#o.run([nixStore, '--check-validity', '--print-invalid', ...chunk], {
        allowFailure: true,
        timeoutMs: 60_000,
      });
      if (r.exitCode !== 0) {
        for (const p of chunk) out.add(p);
        continue;
      }
      for (const l of r.stdout.split('\n')) if (l.startsWith('/')) out.add(l.trim());
    }
    return out;
  }
}
