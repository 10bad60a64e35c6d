/**
 * Launching VMs: which vfkit (found and new enough), what argv a VM gets (its MAC, runtime paths,
 * shares resolved from the seed runner's words, disks and devices), what would refuse it before
 * anything is spawned (the spec, missing shared directories, a missing CA bundle), the files a run
 * needs (keys directory, writable store image, the scratch directory's plan) and handing the run to
 * the supervisor. Per-spec results are memoised, so a snapshot ten times a second costs lookups,
 * not argv compositions.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AgentError, errorMessage } from '../../api/errors.ts';
import type { SharedDir, VmSpec } from '../../api/types.ts';
import { findCaBundle } from '../../host/ca-bundle.ts';
import { VmDirNames } from '../../host/names.ts';
import { hostLimits, type HostLimits } from '../../host/resources.ts';
import { knownHostsPath, prepareKnownHosts, strictnessFor } from '../net/known-hosts.ts';
import { generateMac } from '../net/mac.ts';
import { sshHostAliases } from '../net/ssh.ts';
import {
  authorizedKeyFiles,
  ensureVmKey,
  KEY_FILE,
  keyCredentialParam,
  readPublicKey,
  writeAuthorizedKeys,
  type Run,
  type VmKey,
} from './ssh-keys.ts';
import { ensureWritableImage } from './disks.ts';
import {
  ensureKeysDir,
  keysDir,
  keysRels,
  madeByNixvm,
  resolveSpec,
  scratchDir,
  scratchPlan,
  writableImagePath,
  type ShareContext,
} from './run-dirs.ts';
import { placeRuntimePaths, type PlacedRuntimePaths, type VmRuntimePaths } from './runtime-paths.ts';
import { bootProblem } from './boot-shape.ts';
import type { Supervisor } from './supervisor.ts';
import { checkVfkitVersion, locateVfkit } from './vfkit.ts';
import {
  deviceFacts,
  planDisks,
  validateSpec,
  vfkitArgv,
  type DeviceFacts,
  type DiskAttachment,
} from './vfkit-args.ts';

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
  /** The agent's environment: SHARED_DIR, NIX_SSL_CERT_FILE (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** The VM's "shared folder" setting, or null. */
  sharedDirSetting?(name: string): string | null;
  /** The VM's ssh user setting, or null (the configuration's first normal user). */
  sshUserSetting?(name: string): string | null;
  /** The VM's "key as a credential" setting, or null (on where the guest reads it). */
  keyCredentialSetting?(name: string): boolean | null;
  /** Runs ssh-keygen (default: the runner). */
  run?: Run;
  log(line: string): void;
  /** Every VM name known right now (folder names must not fold onto one another). */
  names?(): Iterable<string>;
  /** CPUs and memory a VM may have here (default hostLimits()). */
  limits?: HostLimits;
}

interface SpecFacts {
  /** The shared folder it was computed with (a changed setting recomputes). */
  sharedDir: string | null;
  /** Whether the key goes on the kernel command line (a changed setting recomputes). */
  keyCredential: boolean;
  /** The spec with its shares resolved. */
  spec: VmSpec;
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
  /** Each VM's key pair as last made or read (null: none yet). */
  readonly #keys = new Map<string, VmKey | null>();
  /** Each store image's closure-info path, once read from its record. */
  readonly #closureInfos = new Map<string, string>();
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

  /** The shared folder of a VM: its setting, else the agent's SHARED_DIR (relative to the flake), else null. */
  sharedDir(t: LaunchTarget): string | null {
    const setting = this.#o.sharedDirSetting?.(t.name) ?? null;
    if (setting) return path.resolve(setting);
    const env = (this.#o.env ?? process.env).SHARED_DIR;
    return env ? path.resolve(t.flake, env) : null;
  }

  /** Where the VM's share words point. */
  shareContext(t: LaunchTarget): ShareContext {
    const p = this.paths(t.name);
    return { scratch: scratchDir(p), keys: keysDir(p), sharedDir: this.sharedDir(t) };
  }

  #of(t: LaunchTarget): SpecFacts {
    const sharedDir = this.sharedDir(t);
    const keyCredential = this.keyCredential(t);
    let f = this.#specs.get(t.spec);
    if (!f || f.sharedDir !== sharedDir || f.keyCredential !== keyCredential) {
      const spec = resolveSpec(t.spec, this.shareContext(t));
      const mac = t.spec.macAddress ?? generateMac(t.flake, t.name);
      const bad = validateSpec(spec, this.#limits);
      const disks = this.disks({ ...t, spec }, null);
      f = {
        sharedDir,
        keyCredential,
        spec,
        mac,
        facts: deviceFacts(spec, mac, disks, keyCredential),
        problem: bad ? bad.message : bootProblem(t.name, spec, attachedLabels(spec)),
      };
      this.#specs.set(t.spec, f);
    }
    return f;
  }

  /** The spec as it would run now: its shares resolved to host paths. */
  runSpec(t: LaunchTarget): VmSpec {
    return this.#of(t).spec;
  }

  /** Its shares, every source a host path. */
  shares(t: LaunchTarget): SharedDir[] {
    return this.#of(t).spec.shares;
  }

  /** Its disks in argv order, the store image at `storeImage` (a placeholder when not known yet). */
  disks(t: LaunchTarget, storeImage: string | null): DiskAttachment[] {
    return planDisks(t.spec, {
      storeImage: storeImage ?? path.join(this.#o.stateDir, 'images', 'store.img'),
      writable: writableImagePath(this.paths(t.name)),
    });
  }

  /** Does nixvm's public key go on the kernel command line as the ssh.authorized_keys.root credential? */
  keyCredential(t: LaunchTarget): boolean {
    if (!t.spec.ssh.enabled) return false;
    return this.#o.keyCredentialSetting?.(t.name) ?? t.spec.ssh.keyCredential === true;
  }

  /** Does nixvm's key reach root in the guest (for a switch): the key credential, or a $KEYS file sshd reads for root? */
  rootKey(t: LaunchTarget): boolean {
    return this.keyCredential(t) || authorizedKeyFiles(t.spec, ['root']).length > 0;
  }

  /** The ssh user: the VM's setting, else the configuration's first normal user. */
  sshUser(t: LaunchTarget): string {
    return this.#o.sshUserSetting?.(t.name) ?? t.spec.ssh.user;
  }

  /** `nixvm-<name>`, unique among every VM known (the ssh config's Host and the HostKeyAlias). */
  sshAlias(name: string): string {
    const names = [...new Set([...(this.#o.names?.() ?? []), name])].sort();
    return sshHostAliases(names)[names.indexOf(name)]!;
  }

  /** The VM's known_hosts file and how ssh checks host keys against it. */
  hostKeys(t: LaunchTarget): { file: string; strict: 'yes' | 'accept-new' } {
    return { file: knownHostsPath(this.paths(t.name).dir), strict: strictnessFor(t.spec) };
  }

  /**
   * nixvm's key pair for the VM, when made. Read from disk once and kept (every snapshot asks):
   * only #prepareSsh makes or remakes a pair, and it updates what is kept.
   */
  sshKey(name: string): VmKey | null {
    if (!this.#keys.has(name)) {
      const dir = keysDir(this.paths(name));
      const pub = readPublicKey(dir);
      this.#keys.set(name, pub ? { privateKey: path.join(dir, KEY_FILE), publicKey: pub } : null);
    }
    return this.#keys.get(name) ?? null;
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
    return this.#of(t).problem ?? this.pathsProblem(t.name);
  }

  /** The exact argv for booting `closure` (with its store image at `storeImage`); `vfkit` defaults to the one in use. */
  argv(t: LaunchTarget, closure: string, vfkit?: string, storeImage: string | null = null): string[] {
    const program = vfkit ?? this.#vfkit?.path ?? this.#setting ?? 'vfkit';
    try {
      return vfkitArgv({
        vfkit: program,
        spec: this.runSpec(t),
        closure,
        mac: this.mac(t),
        paths: this.paths(t.name),
        disks: this.disks(t, storeImage),
        limits: this.#limits,
        extraKernelParams: [...this.#runnerParams(t, storeImage), ...this.#credentialParams(t)],
      });
    } catch (err) {
      throw new AgentError('failed', errorMessage(err));
    }
  }

  /**
   * What the runner a configuration was written for puts on the kernel command line itself:
   * vz-vm's console=hvc0 (its boot.kernelParams have none), and for a guest that loads it, the
   * store image's registration as regInfo= (without it the guest's nix knows none of its paths,
   * and its garbage collector would delete them from the writable layer).
   */
  #runnerParams(t: LaunchTarget, storeImage: string | null): string[] {
    const out: string[] = [];
    if (t.spec.runner === 'vz' && !t.spec.kernelParams.some((p) => p.startsWith('console='))) out.push('console=hvc0');
    if (t.spec.registersStorePaths && t.spec.storeImage && storeImage) {
      const info = this.#closureInfo(storeImage);
      if (info) out.push(`regInfo=${info}/registration`);
    }
    return out;
  }

  /** The closure-info path recorded beside a store image (images never change, so read once). */
  #closureInfo(storeImage: string): string | null {
    if (!this.#closureInfos.has(storeImage)) {
      let info: string | null = null;
      try {
        const rec = JSON.parse(fs.readFileSync(`${storeImage}.json`, 'utf8')) as { closureInfo?: unknown };
        info = typeof rec.closureInfo === 'string' && /^\/[^\s",]+$/.test(rec.closureInfo) ? rec.closureInfo : null;
      } catch {
        info = null;
      }
      if (info === null) return null;
      this.#closureInfos.set(storeImage, info);
    }
    return this.#closureInfos.get(storeImage)!;
  }

  #credentialParams(t: LaunchTarget): string[] {
    if (!this.keyCredential(t)) return [];
    const key = this.sshKey(t.name);
    return key ? [keyCredentialParam(key.publicKey)] : [];
  }

  /**
   * Before a run: the VM's key pair (made once), its public half where the guest's sshd reads it
   * in the $KEYS share, and its known_hosts (the pinned key, or emptied for a guest that makes
   * new host keys at every boot). A VM without sshd needs none of it.
   */
  async #prepareSsh(t: LaunchTarget, paths: VmRuntimePaths): Promise<void> {
    if (!t.spec.ssh.enabled) return;
    const dir = keysDir(paths);
    try {
      const key = await ensureVmKey(dir, t.name, this.#o.run);
      this.#keys.set(t.name, key);
      // root too: nixvm switches a running guest to a new closure as root (`apply`).
      const users = [...new Set([t.spec.ssh.user, this.sshUser(t), 'root'])];
      writeAuthorizedKeys(dir, authorizedKeyFiles(t.spec, users), key.publicKey);
    } catch (err) {
      // The VM still boots; ssh then needs a key the flake authorizes itself.
      this.#o.log(`could not make the ssh key of ${JSON.stringify(t.name)} in ${dir}: ${errorMessage(err)}`);
    }
    try {
      prepareKnownHosts(knownHostsPath(paths.dir), this.sshAlias(t.name), t.spec, true);
    } catch (err) {
      this.#o.log(`could not prepare the known_hosts of ${JSON.stringify(t.name)}: ${errorMessage(err)}`);
    }
  }

  /** The CA bundle useHostCerts copies in, or the one sentence saying none was found. */
  caBundle(t: LaunchTarget): { path: string | null; problem: string | null } {
    if (!t.spec.hostCerts) return { path: null, problem: null };
    const found = findCaBundle(this.#o.env ?? process.env);
    if (found.path) return { path: found.path, problem: null };
    return {
      path: null,
      problem: `${JSON.stringify(t.name)} sets virtualisation.useHostCerts, but nixvm found no CA certificate bundle to give it (looked at ${found.tried.join(', ')}); set NIX_SSL_CERT_FILE for the agent to a bundle, or turn useHostCerts off.`,
    };
  }

  /**
   * Everything that would refuse this VM before a build is worth it: its spec, its shared
   * directories, a vfkit to run it with. Throws AgentError('failed', one sentence).
   */
  async preflight(t: LaunchTarget): Promise<VfkitInfo> {
    const problem = this.specProblem(t);
    if (problem) throw new AgentError('failed', problem);
    const ctx = this.shareContext(t);
    for (const share of this.shares(t)) {
      // nixvm makes the scratch and keys directories itself; the rest must be there.
      if (madeByNixvm(share, ctx) || fs.existsSync(share.source)) continue;
      const fix =
        share.word?.word === 'SHARED_DIR'
          ? `create it, or change its shared folder in Settings (or SHARED_DIR)`
          : 'create it or change virtualisation.sharedDirectories';
      throw new AgentError(
        'failed',
        `For VM ${JSON.stringify(t.name)}, the shared directory ${JSON.stringify(share.tag)} (${share.source}) does not exist; ${fix}.`,
      );
    }
    const certs = this.caBundle(t);
    if (certs.problem) throw new AgentError('failed', certs.problem);
    if (!this.#vfkit) await this.locate(this.#setting);
    if (!this.#vfkit) throw new AgentError('failed', this.#problem ?? 'vfkit was not found.');
    return this.#vfkit;
  }

  /**
   * Boot `closure` (or reboot onto it), with its store image at `storeImage` when the VM uses one:
   * resolves once vfkit reports the VM running.
   */
  async launch(
    t: LaunchTarget,
    closure: Closure,
    opts: { restart: boolean; storeImage?: string | null },
  ): Promise<void> {
    const vfkit = await this.preflight(t);
    const storeImage = opts.storeImage ?? null;
    if (t.spec.storeImage && !storeImage) {
      throw new AgentError(
        'failed',
        `${JSON.stringify(t.name)} boots from a Nix store image, but none was prepared for it.`,
      );
    }
    const paths = this.paths(t.name);
    try {
      ensureKeysDir(keysDir(paths), keysRels(t.spec));
      if (t.spec.writableStore && ensureWritableImage(paths, t.name, t.spec.writableStore.sizeMiB)) {
        this.#o.log(
          `made the writable store image of ${JSON.stringify(t.name)} (${t.spec.writableStore.sizeMiB} MiB, sparse)`,
        );
      }
    } catch (err) {
      throw new AgentError(
        'failed',
        `Could not prepare the disks of ${JSON.stringify(t.name)} in ${paths.dir}: ${errorMessage(err)}`,
      );
    }
    await this.#prepareSsh(t, paths);
    // The argv comes from the same evaluation as the closure; a flake edited meanwhile shows as stale.
    const argv = this.argv(t, closure.outPath, vfkit.path, storeImage);
    const scratch = scratchPlan(this.runSpec(t), this.shareContext(t), this.caBundle(t).path);
    const vm = { name: t.name, argv, paths, ...closure, facts: this.facts(t), scratch };
    this.#o.log(`${opts.restart ? 'restarting' : 'starting'} ${JSON.stringify(t.name)} on ${closure.outPath}`);
    try {
      if (opts.restart) await this.#o.supervisor.restart(vm);
      else await this.#o.supervisor.start(vm);
    } catch (err) {
      throw new AgentError('failed', errorMessage(err));
    }
  }
}

/** The labels of the disks nixvm attaches (a root on one of them boots). */
function attachedLabels(spec: VmSpec): string[] {
  return [...(spec.storeImage ? ['nix-store'] : []), ...(spec.writableStore ? ['nix-store-write'] : [])];
}
