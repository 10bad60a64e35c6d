/**
 * Launching VMs: which vfkit (found and new enough), what argv a VM gets (its MAC, runtime paths
 * and devices), what would refuse it before anything is spawned (the spec, missing shared
 * directories), and handing the run to the supervisor. Per-spec results are memoised, so a
 * snapshot ten times a second costs lookups, not argv compositions.
 */
import fs from 'node:fs';
import { AgentError, errorMessage } from '../../api/errors.ts';
import type { VmSpec } from '../../api/types.ts';
import { generateMac } from '../net/mac.ts';
import { bootProblem } from './boot-shape.ts';
import { runtimePaths, type VmRuntimePaths } from './runtime-paths.ts';
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
  readonly #paths = new Map<string, VmRuntimePaths>();
  readonly #specs = new WeakMap<VmSpec, SpecFacts>();

  constructor(o: LauncherOptions) {
    this.#o = o;
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

  /** The VM's runtime files (memoised: the fallback socket dir is checked once per VM, not per snapshot). */
  paths(name: string): VmRuntimePaths {
    let p = this.#paths.get(name);
    if (!p) {
      p = runtimePaths(this.#o.stateDir, this.#o.logsDir, name);
      this.#paths.set(name, p);
    }
    return p;
  }

  #of(t: LaunchTarget): SpecFacts {
    let f = this.#specs.get(t.spec);
    if (!f) {
      const mac = t.spec.macAddress ?? generateMac(t.flake, t.name);
      const bad = validateSpec(t.spec);
      f = { mac, facts: deviceFacts(t.spec, mac), problem: bad ? bad.message : bootProblem(t.name, t.spec) };
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

  /**
   * What vfkit or macOS would refuse in the spec itself, or why it does not boot like a VM (a boot
   * loader, a root on its own disk), as one sentence; null when fine.
   */
  specProblem(t: LaunchTarget): string | null {
    return this.#of(t).problem;
  }

  /** The exact argv for booting `closure`; `vfkit` defaults to the one in use. */
  argv(t: LaunchTarget, closure: string, vfkit?: string): string[] {
    const program = vfkit ?? this.#vfkit?.path ?? this.#setting ?? 'vfkit';
    try {
      return vfkitArgv({ vfkit: program, spec: t.spec, closure, mac: this.mac(t), paths: this.paths(t.name) });
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
