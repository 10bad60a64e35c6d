/**
 * The typed contract between the agent and every face (Electron app, control socket, CLI).
 * Plain data only: everything here must survive JSON and structured clone.
 */

export type VmRunState = 'stopped' | 'starting' | 'running' | 'stopping' | 'crashed';

export interface SharedDir {
  tag: string;
  /**
   * Absolute host path. In a VmSpec, a share spelled with one of the seed runner's words (`word`)
   * has '' here: nixvm resolves it per VM (VmSnapshot.shares carries the path it resolves to).
   */
  source: string;
  /** Mount point in the guest. */
  target: string;
  /** Set when the flake spells the source with a word nixvm resolves per VM (README: share words). */
  word?: ShareWord;
}

/**
 * A share source the seed's runner writes as a shell word:
 * - `TMPDIR`: the run's scratch directory (made before boot, removed after the run), `rel` below it;
 * - `KEYS`: the VM's private keys directory (kept), `rel` below it;
 * - `SHARED_DIR`: `${SHARED_DIR:-…}`: the VM's "shared folder" setting, else the agent's SHARED_DIR,
 *   else `fallback` (a word or an absolute path).
 */
export type ShareWord =
  | { word: 'TMPDIR' | 'KEYS'; rel: string }
  | { word: 'SHARED_DIR'; fallback: { word: 'TMPDIR' | 'KEYS'; rel: string } | { path: string } };

/** What the guest mounts (its fileSystems), as far as nixvm checks it is given what it needs. */
export interface GuestMount {
  /** Mount point in the guest. */
  target: string;
  device: string | null;
  fsType: string | null;
}

/** The persistent writable store image (writableStore without writableStoreUseTmpfs). */
export interface WritableStoreSpec {
  /** virtualisation.diskSize in MiB: the size the image is created with. */
  sizeMiB: number;
  /**
   * The device the guest formats and mounts it from, when it names one: the seed's repart device
   * (boot.initrd.systemd.repart.device), or vz-vm's fileSystems."/nix/.rw-store".device (/dev/vdb).
   */
  device: string | null;
}

export interface SshFacts {
  enabled: boolean;
  port: number;
  /** First normal user, else root. */
  user: string;
  /** services.openssh.authorizedKeysFiles as configured (nixvm writes its key to those in the $KEYS share). */
  authorizedKeysFiles?: string[];
  /** The host public key the closure ships (environment.etc."ssh/ssh_host_ed25519_key.pub"), pinned; else null. */
  hostKey?: string | null;
  /** The guest's tmpfiles write the `ssh.authorized_keys.root` credential to root's authorized_keys. */
  keyCredential?: boolean;
  /**
   * A boot-time copy of a share's `*.pub` files to where sshd reads them (nix-builder-vz-vm's
   * copy-builder-keys: /var/keys → /run/builder-keys), or null.
   */
  stagedKeys?: { from: string; to: string } | null;
}

export interface ApplyPreview {
  how: 'switch' | 'restart';
  reasons: string[];
}

/** What an `apply` of a running VM did. */
export interface ApplyOutcome {
  /** switching: under way; switch: done in place; restart: it needed a reboot (reasons say why); failed: the switch failed, the VM runs on. */
  how: 'switching' | 'switch' | 'restart' | 'failed';
  outPath: string;
  at: number;
  /** Why a restart was needed, one phrase each ("memorySize 4096 → 8192 needs a restart"). */
  reasons: string[];
  error: string | null;
  /** The switch's last output line. */
  lastLine: string | null;
  /**
   * The output so far (the store-image copy's, then the switch's): how many lines, and the last
   * of them (at most APPLY_OUTPUT_TAIL), so a face can print each line as it comes.
   */
  output?: { count: number; tail: string[] };
}

/** How many of an apply's last output lines its snapshot carries. */
export const APPLY_OUTPUT_TAIL = 20;

export type StrictHostKeys = 'yes' | 'accept-new';

/** The ways to a VM, in the order nixvm tries them. */
export type SshRoute = 'vsock' | 'ipv4' | 'ipv6';

/**
 * What a face needs to build the ssh argv itself: the agent's answer is data, never a command.
 * `host` is the first IP (null when it has none yet).
 */
export interface SshDestination {
  /** `nixvm-<name>`: the ssh config's Host alias and the HostKeyAlias. */
  alias: string;
  user: string;
  port: number;
  host: string | null;
  ipv4: string | null;
  ipv6: string | null;
  /** The host end of the VM's vsock port 22 (a unix socket vfkit listens on), or null. */
  vsock: string | null;
  /** nixvm's private key for this VM, or null. */
  identityFile: string | null;
  knownHostsFile: string | null;
  strictHostKeyChecking: StrictHostKeys;
}

/** What the inventory eval learns about one nixosConfigurations.<name>. */
export interface VmSpec {
  name: string;
  /** Absolute path of the flake directory. */
  flake: string;
  /** The toplevel's .drv path: the VM's identity for staleness. */
  drvPath: string;
  system: string | null;
  /** The system nix builds its closure for, when it differs from `system` (only stand-ins do that). */
  buildSystem?: string | null;
  kernelParams: string[];
  cpus: number;
  memoryMiB: number;
  /** As configured, or null (the agent then generates a stable one). */
  macAddress: string | null;
  rosetta: boolean;
  shares: SharedDir[];
  graphics: boolean;
  resolution: { width: number; height: number } | null;
  mountHostNixStore: boolean;
  ssh: SshFacts;
  /** virtualisation.rosetta.mountTag (default "rosetta"). */
  rosettaTag?: string;
  /** virtualisation.useNixStoreImage: an erofs image of the closure, attached read-only, instead of the host store. */
  storeImage?: boolean;
  /** The persistent writable store image, or null (none, or a tmpfs overlay). */
  writableStore?: WritableStoreSpec | null;
  /** virtualisation.useHostCerts: the host's CA bundle in $TMPDIR/certs/ca-certificates.crt. */
  hostCerts?: boolean;
  /** virtualisation.diskSize in MiB, when set to a number. */
  diskSizeMiB?: number | null;
  /** The guest's fileSystems, when the configuration has them. */
  guestMounts?: GuestMount[];
  /** How it boots (a boot loader, its root file system), read to refuse what nixvm cannot direct-boot. */
  boot?: BootFacts;
  /** The guest's nix (nix.enable, nix.settings): what it would offer as a builder. */
  nix?: GuestNixFacts;
  /**
   * The runner its configuration was written for, when nixvm must pass what that runner passes:
   * 'vz' (nixpkgs' vz-vm.nix, darwin.linux-builder-vz) adds console=hvc0 itself.
   */
  runner?: 'vz';
  /** The guest loads `regInfo=` from its kernel command line into its nix database. */
  registersStorePaths?: boolean;
}

export interface GuestNixFacts {
  /** nix.enable, or null when the configuration does not say. */
  enabled: boolean | null;
  trustedUsers: string[];
  /** nix.settings.system-features as evaluated, or null when unset. */
  systemFeatures: string[] | null;
  /** nix.settings.extra-platforms (Rosetta adds x86_64-linux). */
  extraPlatforms: string[];
}

export interface BootFacts {
  /** 'grub' or 'systemd-boot' when one is enabled, else null. */
  loader: string | null;
  /** fileSystems."/" as configured, or null when it defines none. */
  root: { device: string | null; fsType: string | null; label: string | null } | null;
}

export interface BuildProgress {
  buildsDone: number;
  buildsExpected: number;
  buildsRunning: number;
  downloadsDone: number;
  downloadsExpected: number;
  bytesDone: number;
  bytesExpected: number;
  /** Derivation currently building (store path), if known. */
  currentDrv: string | null;
  /** Builder phase (unpackPhase, buildPhase…), if known. */
  phase: string | null;
  /** The remote builder the current (else the latest) build ran on, as nix names it; null: here. */
  remote?: string | null;
  lastLine: string | null;
  /** 0–100, never decreasing during one build. */
  percent: number;
  /**
   * 'evaluating' while nix evaluates the flake, before it realises anything (a real NixOS
   * evaluation takes a while and reports no progress); absent means 'building'.
   */
  stage?: 'evaluating' | 'building';
}

export type BuildStatus = 'idle' | 'building' | 'succeeded' | 'failed' | 'cancelled';

export interface BuildInfo {
  status: BuildStatus;
  progress: BuildProgress | null;
  /** One sentence a user can act on; nix's own message follows in `detail`. */
  error: string | null;
  detail: string | null;
  /** Full log of the last build, on disk. */
  logPath: string | null;
  /** A second build was requested while one runs: it will run once more after. */
  again: boolean;
  startedAt: number | null;
  finishedAt: number | null;
}

/** A disk image in nixvm's state dir. */
export interface DiskImage {
  /** `nix-store`: the erofs image of a closure (a cache); `writable-store`: a VM's persistent writable store. */
  role: 'nix-store' | 'writable-store';
  path: string;
  /** The file's length, in bytes. */
  apparentBytes: number;
  /** What it occupies on disk (a sparse image occupies only what was written). */
  allocatedBytes: number;
  readOnly: boolean;
}

/** A store image being prepared just before boot. */
export interface StoreImageProgress {
  phase: 'realising erofs-utils' | 'listing the closure' | 'building the store image';
  /** Bytes of the closure written into the image so far. */
  bytesWritten: number;
  /** The closure's size (the sum of its NAR sizes), once known. */
  bytesExpected: number | null;
  startedAt: number;
}

/** A VM's disks, for status, `ls --json` and the dropdown. */
export interface VmDisks {
  /** The images this VM uses (that exist). */
  images: DiskImage[];
  /** Set while its store image is being prepared. */
  preparing: StoreImageProgress | null;
  /** The last store image preparation failed: one sentence. */
  error: string | null;
  /** The writable store image and virtualisation.diskSize disagree (grow offered, or cannot shrink). */
  notice: string | null;
  /** The writable image could grow to diskSize (`nixvm disk grow`). */
  canGrow: boolean;
}

/** One image in the state dir, for `nixvm disk ls`. */
export interface DiskListing extends DiskImage {
  /** The VM it belongs to (writable) or the VMs whose closure it holds (nix-store). */
  vms: string[];
  /** The closure a nix-store image holds. */
  closure: string | null;
  /** No VM the flakes define uses it. */
  orphan: boolean;
}

export interface VmExit {
  code: number | null;
  signal: string | null;
  /** Last console lines, for "why did it crash". */
  lastLines: string[];
  at: number;
}

export interface VmSnapshot {
  /** Unique within the agent. */
  name: string;
  flake: string;
  /** Null when this VM's config failed to evaluate (see `error`). */
  spec: VmSpec | null;
  state: VmRunState;
  /** The current drvPath differs from the closure it booted (or last built). */
  stale: boolean;
  drvPath: string | null;
  builtDrvPath: string | null;
  builtOutPath: string | null;
  bootedDrvPath: string | null;
  bootedOutPath: string | null;
  /** A running VM switched in place since it booted (`apply`): the closure it runs now; null otherwise. */
  switchedOutPath?: string | null;
  /** What the last `apply` of it did (switch in place, restart and why, or a failed switch); null before any. */
  applied?: ApplyOutcome | null;
  /** For a running stale VM: what `apply` would do (switch in place, or restart and why); else null. */
  applyPreview?: ApplyPreview | null;
  cpus: number | null;
  memoryMiB: number | null;
  /** Effective MAC (configured or generated). */
  mac: string | null;
  /** Link-local with zone, e.g. fe80::…%bridge100. */
  ipv6: string | null;
  ipv4: string | null;
  shares: SharedDir[];
  /** Evaluation or run error, one sentence. */
  error: string | null;
  build: BuildInfo;
  pid: number | null;
  startedAt: number | null;
  exit: VmExit | null;
  /** The ssh command line, shell-quoted, ready to paste. */
  sshCommand: string | null;
  autostart: boolean;
  consoleLog: string | null;
  stateDir: string;
  /** Its disk images (store image, writable store). */
  disks?: VmDisks;
  /** Other VMs that resolve to the same MAC address (they cannot run at the same time). */
  macShared?: string[];
  /** What its vfkit uses right now, while a face asks for it (SubscribeOptions.usage); else null. */
  usage?: VmUsage | null;
  /** Where its system is built and whether it can run on this Mac, known before a start. */
  platform?: VmPlatform | null;
}

/** What a running VM uses as the process table shows it: its vfkit, and on macOS the VM service running its guest. */
export interface VmUsage {
  /** ps's %cpu: percent of one core (so it can pass 100 with several vCPUs busy). */
  cpuPercent: number;
  /** Resident memory, in bytes. */
  rssBytes: number;
  /** Virtualization.framework's VM service process (where a guest runs on macOS) is counted in, not vfkit alone. */
  vmService: boolean;
  /** When it was sampled (epoch ms). */
  at: number;
}

/** Where a VM's system is built (this machine, a builder, nothing here) and whether it runs here. */
export interface VmPlatform {
  buildsOn: 'local' | 'builder' | 'none';
  /** The builders (machine URIs) that would build it. */
  builders: string[];
  /** One sentence with the fix when nothing here builds it (or no builder answers); null when fine. */
  problem: string | null;
  /** Why Virtualization.framework cannot run it here (x86_64-linux on Apple silicon); null when it can. */
  cannotRun: string | null;
  /** It is this machine's builder VM (settings.builderVm). */
  isBuilder?: boolean;
  /** Why it cannot be this machine's builder (a phrase), or null when it can. */
  builderRefusal?: string | null;
}

/** One remote builder nix knows, or nixvm's builder VM. */
export interface BuilderMachineInfo {
  uri: string;
  systems: string[];
  maxJobs: number;
  supportedFeatures: string[];
  /** `builders` (nix.conf) or the machines file it is listed in. */
  source: string;
  /** It answered on ssh (true), did not (false), or was not probed (null). */
  answers: boolean | null;
  /** nixvm's builder VM, by name; null for the others. */
  vm: string | null;
}

export type RegistrationMode = 'agent' | 'system' | 'nix-darwin';

/** How nix is told about nixvm's builder VM, shown in full before anything changes. */
export interface RegistrationPlan {
  mode: RegistrationMode;
  /** What will change, one line each. */
  changes: string[];
  /** For `system`: the file as it will be, the staged copy nixvm writes first, and the admin argv. */
  system: { file: string; contents: string; staged: string; argv: string[] } | null;
  /** For `agent`: a line for ~/.config/nix/nix.conf, so that the user's own builds use the builder too. */
  userConfLine: string | null;
  /** For `nix-darwin`: what to add to the configuration. */
  snippet: string | null;
  /** Already in place: nothing to change. */
  inPlace: boolean;
}

export interface BuildersInfo {
  /** nix's `system` and `extra-platforms`: what builds here without a builder. */
  localSystems: string[];
  machines: BuilderMachineInfo[];
  /** What nixvm could not read (a machines file, a line nix would refuse). */
  problems: string[];
  /** The VM nixvm uses as this machine's builder (settings), or null. */
  vm: string | null;
  /** off: none; waiting: it is starting or its ssh does not answer yet; ready: nix can use it; failed: see note. */
  status: 'off' | 'waiting' | 'ready' | 'failed';
  /** One sentence on where it stands (why it failed, what it waits for). */
  note: string | null;
  /** How nix is told (null before nix was asked). */
  mode: RegistrationMode | null;
  /** nixvm's own machines file (it lists the builder VM while it is ready). */
  machinesFile: string;
}

/** What `builder use` / `builder off` did, or would do with consent. */
/** What setting up the first Linux builder (nixpkgs' darwin.linux-builder-vz) takes. */
export interface BootstrapPlan {
  /** nixvm's flake for it (it joins the user's flakes). */
  flake: string;
  /** The VM's name in it. */
  vm: string;
  /** The nixpkgs it comes from, as locked (github:NixOS/nixpkgs/<rev>). */
  nixpkgs: string;
  /** Its system's store path. */
  toplevel: string;
  /** The substituter that has it. */
  substituter: string;
  /** Store paths to fetch (those not already here). */
  paths: number;
  /** Their compressed size, or null when the cache does not say. */
  downloadBytes: number | null;
  unpackedBytes: number;
}

/** `builderSetup`: the download and the nix change it makes, and whether it was made. */
export interface BuilderSetupOutcome extends BuilderOutcome {
  setup: BootstrapPlan;
  /** The download in one sentence. */
  sentence: string;
}

export interface BuilderOutcome {
  plan: RegistrationPlan;
  /** False: the plan needs an administrator's consent first (call again with consent). */
  done: boolean;
  builders: BuildersInfo;
}

/**
 * Where a flake stands: `evaluating` while its first evaluation runs (no VMs known yet), `ok` or
 * `failed` after the last one, `nix-missing` when nix was not found, `no-such-dir` when its folder
 * is gone. Faces say each in its own sentence (src/api/describe.ts).
 */
export type FlakeState = 'evaluating' | 'ok' | 'failed' | 'nix-missing' | 'no-such-dir';

export interface FlakeSnapshot {
  dir: string;
  /** An evaluation is running (the first one, or a re-evaluation after an edit). */
  evaluating: boolean;
  /** Whole-flake error (syntax error, not a flake…), one sentence plus nix's text. */
  error: string | null;
  warnings: string[];
  lastEvalAt: number | null;
  state: FlakeState;
  /** When the running evaluation started (epoch ms), null when none runs. */
  evaluatingSince: number | null;
  /** What `error` is: nix's error kind ('network', 'syntax', 'no-configurations', …), or null. */
  errorKind: string | null;
  /** Where nixvm has it from: the settings, or this agent's command line (`nixvm daemon --flake`). */
  source: 'settings' | 'command-line';
  /** Its nixosConfigurations that are not VMs (not shown), by name. */
  hidden: string[];
}

export type AutoRebuild = 'off' | 'build' | 'apply' | 'restart';
export type OnQuit = 'keep' | 'stop';

export interface Settings {
  flakes: string[];
  autoRebuild: AutoRebuild;
  /** VM name → start when the agent starts. */
  autostart: Record<string, boolean>;
  /** VM name → ssh user override. */
  sshUser: Record<string, string>;
  /** VM name → deliver nixvm's key as the ssh.authorized_keys.root credential (default: where the guest reads it). */
  sshKeyCredential: Record<string, boolean>;
  stopTimeoutSec: number;
  bridgeInterface: string | null;
  onQuit: OnQuit;
  nixPath: string | null;
  vfkitPath: string | null;
  /** Terminal used by "Open ssh in Terminal": Terminal, iTerm, or another app name. */
  terminalApp: string;
  /** VM name → the host folder `${SHARED_DIR:-…}` shares resolve to ("shared folder"). */
  sharedDir: Record<string, string>;
  /** Flake directory → configurations shown as VMs even though they set no option nixvm reads. */
  includeConfigurations: Record<string, string[]>;
  /** Flake directory → configurations never shown, even if they look like VMs. */
  excludeConfigurations: Record<string, string[]>;
  /** The VM nixvm makes this machine's remote builder (`nixvm builder use`), or null. */
  builderVm: string | null;
  /** The nixpkgs `nixvm builder setup` takes darwin.linux-builder-vz from (a flake reference or an absolute path). */
  builderNixpkgs: string;
}

export interface AgentInfo {
  pid: number;
  startedAt: number;
  version: string;
  nix: string | null;
  vfkit: { path: string; version: string } | null;
  /** Problems with the agent itself (missing nix/vfkit, corrupt settings moved aside…). */
  problems: string[];
  /** nixvm's own ssh config (one Host alias per VM) and whether ~/.ssh/config includes it. */
  sshConfig: SshConfigInfo;
  /** The remote builders nix knows, and nixvm's builder VM. */
  builders?: BuildersInfo;
}

export interface SshConfigInfo {
  path: string;
  /** The line to add to ~/.ssh/config; nixvm offers it and never writes that file itself. */
  includeLine: string;
  status: 'included' | 'not-included' | 'missing' | 'unreadable';
}

export interface AgentSnapshot {
  agent: AgentInfo;
  flakes: FlakeSnapshot[];
  vms: VmSnapshot[];
  settings: Settings;
}

export type LogKind = 'console' | 'build';

export interface Notice {
  level: 'info' | 'error';
  title: string;
  body: string;
  vm?: string;
  /** What clicking the notification opens. */
  log?: LogKind;
}

export type AgentEvent =
  | { type: 'snapshot'; snapshot: AgentSnapshot }
  | { type: 'log'; vm: string; kind: LogKind; lines: string[] }
  | { type: 'notice'; notice: Notice };

export interface VmRef {
  vm: string;
}

/** One check of `nixvm doctor` (and the app's first-run checklist). */
export interface DoctorCheck {
  /** Stable id: 'nix', 'nix-daemon', 'flakes', 'trusted-user', 'vfkit', 'macos', 'apple-silicon', 'rosetta', 'builder', 'state-dir', 'login-item', 'ssh-include'. */
  id: string;
  /** What was checked, e.g. "nix". */
  title: string;
  /** ok; warn: works, but worth fixing; fail: nixvm cannot run VMs until fixed; skip: not applicable here. */
  status: 'ok' | 'warn' | 'fail' | 'skip';
  /** What was found, one sentence. */
  summary: string;
  /** What to do about it (a command to run, a setting), when not ok. */
  fix: string | null;
  /** More facts (every directory searched, versions, paths), one per line. */
  details: string[];
}

export interface DoctorReport {
  checks: DoctorCheck[];
  /** Epoch ms. */
  at: number;
}

/** Every command a face can send: method → params and result. */
export interface AgentMethods {
  snapshot: { params: Record<string, never>; result: AgentSnapshot };
  start: { params: VmRef; result: VmSnapshot };
  stop: { params: VmRef; result: VmSnapshot };
  restart: { params: VmRef; result: VmSnapshot };
  build: { params: VmRef; result: VmSnapshot };
  cancelBuild: { params: VmRef; result: VmSnapshot };
  /** Rebuild, then restart if running (or start if asked). */
  apply: { params: VmRef; result: VmSnapshot };
  rebuildStale: { params: Record<string, never>; result: string[] };
  reevaluate: { params: Record<string, never>; result: FlakeSnapshot[] };
  /** `target` is what a face rebuilds the argv from (it runs its own ssh, never `argv` as given). */
  sshCommand: {
    params: VmRef;
    /** `route` is the way the agent found to answer (vsock once sshd answered there, else an address). */
    result: { argv: string[]; command: string; target: SshDestination; route: SshRoute };
  };
  ips: { params: VmRef; result: { ipv6: string | null; ipv4: string | null } };
  logs: { params: VmRef & { kind: LogKind; lines: number }; result: { path: string | null; lines: string[] } };
  inspect: { params: VmRef; result: { spec: VmSpec | null; argv: string[] } };
  getSettings: { params: Record<string, never>; result: Settings };
  setSettings: { params: Partial<Settings>; result: Settings };
  /** Every disk image in the state dir, orphans included. */
  disks: { params: Record<string, never>; result: DiskListing[] };
  /**
   * Delete a stopped VM's writable store image (made afresh at its next start); null when the
   * image was that of a VM no flake defines any more.
   */
  diskReset: { params: VmRef; result: VmSnapshot | null };
  /** Grow a stopped VM's writable store image to its virtualisation.diskSize (sparse). */
  diskGrow: { params: VmRef; result: VmSnapshot };
  /** The checks of `nixvm doctor`, run by the agent (its nix, vfkit, VMs' systems and state dir). */
  doctor: { params: Record<string, never>; result: DoctorReport };
  /** The builders nix knows (probed afresh) and nixvm's builder VM. */
  builders: { params: Record<string, never>; result: BuildersInfo };
  /** Make a VM this machine's Linux builder: start it, then tell nix (an admin change needs `consent`). */
  builderUse: { params: VmRef & { consent?: boolean }; result: BuilderOutcome };
  /** Stop using the builder VM and undo what nixvm changed (an admin change needs `consent`). */
  builderOff: { params: { consent?: boolean }; result: BuilderOutcome };
  /**
   * No builder yet: run nixpkgs' prebuilt darwin.linux-builder-vz as the builder. Without
   * `consent` it only says what it would download and change.
   */
  builderSetup: { params: { nixpkgs?: string; consent?: boolean }; result: BuilderSetupOutcome };
}

export type AgentMethod = keyof AgentMethods;
export type ParamsOf<M extends AgentMethod> = AgentMethods[M]['params'];
export type ResultOf<M extends AgentMethod> = AgentMethods[M]['result'];

/** Runtime list of methods; the `satisfies` makes the compiler check it is complete. */
export const AGENT_METHODS = {
  snapshot: true,
  start: true,
  stop: true,
  restart: true,
  build: true,
  cancelBuild: true,
  apply: true,
  rebuildStale: true,
  reevaluate: true,
  sshCommand: true,
  ips: true,
  logs: true,
  inspect: true,
  getSettings: true,
  setSettings: true,
  disks: true,
  diskReset: true,
  diskGrow: true,
  doctor: true,
  builders: true,
  builderUse: true,
  builderOff: true,
  builderSetup: true,
} as const satisfies Record<AgentMethod, true>;

export function isAgentMethod(m: unknown): m is AgentMethod {
  return typeof m === 'string' && Object.hasOwn(AGENT_METHODS, m);
}

/** Which live logs a subscriber wants; snapshot and notice events always come. */
export interface SubscribeOptions {
  logs?: { vm: string; kind: LogKind }[];
  /**
   * This subscriber shows what running VMs use (the dropdown, while it is open): the agent samples
   * each vfkit's CPU and memory only while some subscriber asks (VmSnapshot.usage).
   */
  usage?: boolean;
}

/** What an attachment to a VM's serial console hears. */
export type ConsoleEvent =
  /** What the guest wrote (recent history first, on attach). */
  | { kind: 'data'; data: Uint8Array }
  /** Whether this attachment's keystrokes reach the guest now (one attachment at a time). */
  | { kind: 'input'; writer: boolean }
  /** The console is gone (the VM ended, the agent stopped); one sentence. */
  | { kind: 'end'; reason: string };

/** A console event where only JSON goes (the control socket, the app's IPC): the bytes as base64. */
export type WireConsoleEvent =
  | { kind: 'data'; data: string }
  | { kind: 'input'; writer: boolean }
  | { kind: 'end'; reason: string };

export interface ConsoleAttachOptions {
  /** Ask for the input (the newest attachment asking holds it; the others watch). */
  input: boolean;
}

/** One client's attachment to a VM's serial console. */
export interface ConsoleAttachment {
  readonly vm: string;
  /** The console's pty on the Mac (for `screen`). */
  readonly pty: string;
  /** Keystrokes; dropped unless this attachment holds the input. */
  write(data: Uint8Array): void;
  detach(): void;
}

/** What every face calls: the Agent itself in-process, or a client of the control socket. */
export interface AgentPort {
  call<M extends AgentMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>>;
  /** Snapshot and notice events always; 'log' events only for the logs named in opts. */
  subscribe(fn: (ev: AgentEvent) => void, opts?: SubscribeOptions): () => void;
  /**
   * Attach to a running VM's interactive serial console; rejects with one sentence when it has
   * none (stopped, unknown, or started with a log-file console).
   */
  attachConsole(vm: string, opts: ConsoleAttachOptions, fn: (ev: ConsoleEvent) => void): Promise<ConsoleAttachment>;
}
