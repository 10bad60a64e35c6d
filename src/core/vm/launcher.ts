/**
 * Launching VMs: which vfkit (found and new enough), what argv a VM gets (its MAC, runtime paths
 * and devices), what would refuse it before anything is spawned (the spec, missing shared
 * directories), and handing the run to the supervisor. Per-spec results are memoised, so a
 * snapshot ten times a second costs lookups, not argv compositions.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AgentError, errorMessage } from '../../api/errors.ts';
import type { VmSpec } from '../../api/types.ts';
import { VmDirNames } from '../../host/names.ts';
import { hostLimits, type HostLimits } from '../../host/resources.ts';
import { generateMac } from '../net/mac.ts';
import { placeRuntimePaths, type PlacedRuntimePaths, type VmRuntimePaths } from './runtime-paths.ts';
import type { Supervisor } from './supervisor.ts';
import { checkVfkitVersion, locateVfkit } from './vfkit.ts';
import { deviceFacts, validateSpec, vfkitArgv, type DeviceFacts } from './vfkit-args.ts';

/** A VM as the flake defines it. */
export interface LaunchTarget {
  name: string;
  flake: string;
  spec: VmSpec;
}

export interface Closure {
  drvPath: string;
  outPath: string;
}

export interface VfkitInfo {
  path: string;
  version: string;
}

export interface LauncherOptions {
  supervisor: Supervisor;
  stateDir: string;
  logsDir: string;
  /** Environment for `vfkit --version` (the simulator's fault switches in tests). */
  vmEnv: Record<string, string | undefined>;
  log(line: string): void;
  /** Every VM name known right now (folder names must not fold onto one another). */
  names?(): Iterable<string>;
  /** CPUs and memory a VM may have here (default hostLimits()). */
  limits?: HostLimits;
}

interface SpecFacts {
  mac: string;
  facts: DeviceFacts;
  problem: string | null;
}

export class Launcher {
  readonly #o: LauncherOptions;
  #vfkit: VfkitInfo | null = null;
  #problem: string | null = null;
  #setting: string | null = null;
  readonly #paths = new Map<string, PlacedRuntimePaths & { dirName: string }>();
  readonly #specs = new WeakMap<VmSpec, SpecFacts>();
  readonly #dirs: VmDirNames;
  readonly #limits: HostLimits;

  constructor(o: LauncherOptions) {
    this.#o = o;
    this.#limits = o.limits ?? hostLimits();
    this.#dirs = new VmDirNames({
      roots: [
        path.join(path.resolve(o.stateDir), 'vms'),
        path.join(path.resolve(o.logsDir), 'vms'),
        path.join(path.resolve(o.logsDir), 'builds'),
      ],
      names: () => o.names?.() ?? [],
    });
  }

  /** The vfkit in use, or null (then `problem` says why). */
  get vfkit(): VfkitInfo | null {
    return this.#vfkit;
  }

  get problem(): string | null {
    return this.#problem;
  }

  /** Find vfkit (the setting's path, or the usual places) and check its version. */
  async locate(setting: string | null): Promise<void> {
    this.#setting = setting;
    this.#vfkit = null;
    this.#problem = null;
    try {
      const bin = locateVfkit(setting);
      const v = await checkVfkitVersion(bin, { env: this.#o.vmEnv });
      this.#vfkit = { path: bin, version: v.version ?? 'unknown' };
    } catch (err) {
      this.#problem = errorMessage(err);
    }
  }

  /** The VM's folder name (unique under case folding; an older folder of its own is kept). */
  dirName(name: string): string {
    return this.#dirs.dirName(name);
  }

  /** The VM's runtime files (memoised: the fallback socket dir is checked once per VM, not per snapshot). */
  paths(name: string): VmRuntimePaths {
    return this.#placed(name).paths;
  }

  /** Why the VM's REST socket has no usable place, or null. */
  pathsProblem(name: string): string | null {
    return this.#placed(name).problem;
  }

  /** Short socket directories passed over for any VM so far (one sentence each, no repeats). */
  get socketNotes(): string[] {
    return [...new Set([...this.#paths.values()].flatMap((p) => p.notes))];
  }

  #placed(name: string): PlacedRuntimePaths & { dirName: string } {
    const dirName = this.#dirs.dirName(name);
    let p = this.#paths.get(name);
    // A new VM whose folder would fold onto this one's old folder moves it to its own.
    if (!p || p.dirName !== dirName || p.problem) {
      p = { ...placeRuntimePaths(this.#o.stateDir, this.#o.logsDir, name, { dirName }), dirName };
      this.#paths.set(name, p);
    }
    return p;
  }

  #of(t: LaunchTarget): SpecFacts {
    let f = this.#specs.get(t.spec);
    if (!f) {
      const mac = t.spec.macAddress ?? generateMac(t.flake, t.name);
      const bad = validateSpec(t.spec, this.#limits);
      f = { mac, facts: deviceFacts(t.spec, mac), problem: bad ? bad.message : null };
      this.#specs.set(t.spec, f);
    }
    return f;
  }

  /** The effective MAC: configured, or generated from the flake and the name. */
  mac(t: LaunchTarget): string {
    return this.#of(t).mac;
  }

  /** What its devices would be made of now. */
  facts(t: LaunchTarget): DeviceFacts {
    return this.#of(t).facts;
  }

  /** What vfkit or macOS would refuse in the spec itself, as one sentence; null when fine. */
  specProblem(t: LaunchTarget): string | null {
    return this.#of(t).problem ?? this.pathsProblem(t.name);
  }

  /** The exact argv for booting `closure`; `vfkit` defaults to the one in use. */
  argv(t: LaunchTarget, closure: string, vfkit?: string): string[] {
    const program = vfkit ?? this.#vfkit?.path ?? this.#setting ?? 'vfkit';
    try {
      return vfkitArgv({
        vfkit: program,
        spec: t.spec,
        closure,
        mac: this.mac(t),
        paths: this.paths(t.name),
        limits: this.#limits,
      });
    } catch (err) {
      throw new AgentError('failed', errorMessage(err));
    }
  }

  /**
   * Everything that would refuse this VM before a build is worth it: its spec, its shared
   * directories, a vfkit to run it with. Throws AgentError('failed', one sentence).
   */
  async preflight(t: LaunchTarget): Promise<VfkitInfo> {
    const problem = this.specProblem(t);
    if (problem) throw new AgentError('failed', problem);
    for (const share of t.spec.shares) {
      if (!fs.existsSync(share.source)) {
        throw new AgentError(
          'failed',
          `${t.name}'s shared directory "${share.tag}" (${share.source}) does not exist; create it or change virtualisation.sharedDirectories.`,
        );
      }
    }
    if (!this.#vfkit) await this.locate(this.#setting);
    if (!this.#vfkit) throw new AgentError('failed', this.#problem ?? 'vfkit was not found.');
    return this.#vfkit;
  }

  /** Boot `closure` (or reboot onto it): resolves once vfkit reports the VM running. */
  async launch(t: LaunchTarget, closure: Closure, opts: { restart: boolean }): Promise<void> {
    const vfkit = await this.preflight(t);
    // The argv comes from the same evaluation as the closure; a flake edited meanwhile shows as stale.
    const argv = this.argv(t, closure.outPath, vfkit.path);
    const vm = { name: t.name, argv, paths: this.paths(t.name), ...closure, facts: this.facts(t) };
    this.#o.log(`${opts.restart ? 'restarting' : 'starting'} ${t.name} on ${closure.outPath}`);
    try {
      if (opts.restart) await this.#o.supervisor.restart(vm);
      else await this.#o.supervisor.start(vm);
    } catch (err) {
      throw new AgentError('failed', errorMessage(err));
    }
  }
}
