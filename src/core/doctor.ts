/**
 * `nixvm doctor`: what nixvm needs from this Mac, checked in order, each with what to do when it is
 * not right. It returns data (the CLI prints it, the app's first-run checklist renders it, both over
 * the contract's `doctor` method) and runs every program through an injected runner, so the macOS
 * commands (sw_vers, sysctl, pgrep) are tested by their argv and recorded outputs.
 *
 * A Linux builder is checked against what nix itself says this machine builds (its system,
 * extra-platforms) and the builders it knows, each probed on ssh (the agent's, when it runs).
 */
import fs from 'node:fs';
import os from 'node:os';
import type { BuilderMachineInfo, BuildersInfo, DoctorCheck, DoctorReport, SshConfigInfo } from '../api/types.ts';
import { buildabilityOf, builderFix } from './builders/capability.ts';
import { machineEndpoint, parseBuilders } from './builders/machines.ts';
import { sshBanner } from './net/ssh-probe.ts';
import { errorMessage } from '../api/errors.ts';
import { loginItemStatus, type LoginItemStatus } from '../host/launchd.ts';
import { ProgramNotFoundError, run, type RunOptions, type RunResult } from '../host/runner.ts';
import { includeLine, sshConfigIncludes, sshConfigPath, userSshConfigPath } from './net/ssh.ts';
import { nixConfig, settingWords, storeInfo } from './nix/config.ts';
import { Nix } from './nix/nix.ts';
import { compareVersions, locateVfkit, MIN_VFKIT_VERSION, parseVfkitVersion } from './vm/vfkit.ts';

export type DoctorRunner = (argv: string[], opts?: RunOptions) => Promise<RunResult>;

export interface DoctorDeps {
  run: DoctorRunner;
  platform: NodeJS.Platform;
  /** The user's name (nix's trusted-users) and uid (state dir ownership). */
  user: string;
  uid: number;
  /** The nix and vfkit binaries, or a ProgramNotFoundError saying where they were looked for. */
  locateNix(): string;
  locateVfkit(): string;
  exists(file: string): boolean;
  stat(file: string): { uid: number; mode: number; isDirectory: boolean; isSymbolicLink: boolean } | null;
  stateDir: string;
  /** The systems the VMs are built for (`aarch64-linux`…); null when not known (no agent). */
  systems: string[] | null;
  /** VMs that use Rosetta (they need it installed). */
  rosettaVms: string[];
  loginItem(): Promise<LoginItemStatus>;
  sshConfig(): Promise<SshConfigInfo>;
  now(): number;
  /** The agent's builders (probed); absent: read and probed here. */
  builders?(): Promise<BuildersInfo | null>;
}

/** The oldest Nix nixvm supports on a Mac (the README's requirement). */
export const MIN_NIX_VERSION = '2.18';
/** macOS that runs Rosetta in Linux VMs (Virtualization.framework's VZLinuxRosettaDirectoryShare). */
export const MIN_MACOS_ROSETTA = 13;
/** Where Rosetta lives once installed. */
export const ROSETTA_BINARY = '/Library/Apple/usr/share/rosetta/rosetta';
export const ROSETTA_FIX = 'softwareupdate --install-rosetta --agree-to-license';

const check = (
  id: string,
  title: string,
  status: DoctorCheck['status'],
  summary: string,
  fix: string | null = null,
  details: string[] = [],
): DoctorCheck => ({ id, title, status, summary, fix, details });

function versionParts(v: string): [number, number, number] | null {
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

async function output(d: DoctorDeps, argv: string[]): Promise<RunResult | null> {
  try {
    return await d.run(argv, { allowFailure: true, timeoutMs: 20_000 });
  } catch {
    return null;
  }
}

const strings = settingWords;

async function nixChecks(d: DoctorDeps): Promise<{ checks: DoctorCheck[]; config: Record<string, unknown> | null }> {
  let nix: string;
  try {
    nix = d.locateNix();
  } catch (err) {
    const searched = err instanceof ProgramNotFoundError ? err.searched.map((dir) => `looked in ${dir}`) : [];
    return {
      checks: [
        check(
          'nix',
          'nix',
          'fail',
          errorMessage(err),
          'install Nix (https://nixos.org/download) or set its path with `nixvm config set nixPath /path/to/nix`',
          searched,
        ),
      ],
      config: null,
    };
  }
  const out: DoctorCheck[] = [];
  const v = await output(d, [nix, '--version']);
  const version = v?.exitCode === 0 ? (/(\d+\.\d+(?:\.\d+)?\S*)/.exec(v.stdout)?.[1] ?? null) : null;
  const lix = v?.stdout.includes('Lix') ?? false;
  const parts = version ? versionParts(version) : null;
  const min = versionParts(MIN_NIX_VERSION)!;
  if (!version) {
    out.push(
      check(
        'nix',
        'nix',
        'fail',
        `${nix} did not say its version; it may not be nix.`,
        'fix or clear the nixPath setting',
      ),
    );
  } else if (!lix && parts && compareVersions(parts, min) < 0) {
    out.push(
      check(
        'nix',
        'nix',
        'warn',
        `nix ${version} at ${nix} is older than ${MIN_NIX_VERSION}, the oldest nixvm supports on a Mac.`,
        'upgrade nix (for example `nix upgrade-nix`, or with your installer)',
      ),
    );
  } else out.push(check('nix', 'nix', 'ok', `${lix ? 'Lix' : 'nix'} ${version} at ${nix}.`));

  const store = await storeInfo(d.run, nix);
  const url = 'url' in store ? store.url : null;
  if ('error' in store) {
    out.push(
      check(
        'nix-daemon',
        'nix daemon',
        'fail',
        `nix cannot reach its store${store.error ? ` (${store.error})` : ''}.`,
        'start the nix daemon: `sudo launchctl kickstart -k system/org.nixos.nix-daemon`',
      ),
    );
  } else {
    out.push(
      check(
        'nix-daemon',
        'nix daemon',
        'ok',
        url === 'daemon'
          ? 'nix reaches its daemon.'
          : `nix uses its store directly (${url ?? 'the default store'}, no daemon).`,
      ),
    );
  }

  const config = await nixConfig(d.run, nix);
  const raw = config?.['experimental-features'];
  const features = strings(raw);
  if (!config) {
    out.push(check('flakes', 'flakes', 'skip', 'nix did not show its configuration.'));
  } else if (Array.isArray(raw) && raw.some((f) => typeof f !== 'string')) {
    // Nix 2.8 lists them as numbers of an internal enum: nothing to read safely.
    out.push(
      check(
        'flakes',
        'flakes',
        'skip',
        'this nix does not name its experimental features; nixvm enables flakes for its own calls.',
      ),
    );
  } else if (features.includes('flakes')) {
    out.push(check('flakes', 'flakes', 'ok', 'flakes are enabled.'));
  } else {
    out.push(
      check(
        'flakes',
        'flakes',
        'warn',
        'flakes are not enabled in nix.conf: nixvm enables them for its own calls, but `nix build .#…` in your flake needs them.',
        'add `experimental-features = nix-command flakes` to ~/.config/nix/nix.conf',
      ),
    );
  }

  const trusted = 'trusted' in store ? store.trusted : null;
  if (trusted !== null) {
    out.push(
      trusted
        ? check('trusted-user', 'trusted user', 'ok', `the nix daemon trusts ${d.user}.`)
        : check(
            'trusted-user',
            'trusted user',
            'warn',
            `the nix daemon does not trust ${d.user}: nixvm cannot hand nix a builder of its own for your builds.`,
            `add \`trusted-users = root ${d.user}\` to /etc/nix/nix.conf and restart the nix daemon, if you want that`,
          ),
    );
  } else if (url !== null && url !== 'daemon') {
    out.push(check('trusted-user', 'trusted user', 'skip', 'no daemon: nix runs with your own rights.'));
  } else {
    const users = strings(config?.['trusted-users']);
    const known = users.includes(d.user) || users.includes('*');
    out.push(
      check(
        'trusted-user',
        'trusted user',
        known ? 'ok' : 'skip',
        known ? `trusted-users names ${d.user}.` : 'this nix does not say whether its daemon trusts you.',
      ),
    );
  }
  return { checks: out, config };
}

async function vfkitCheck(d: DoctorDeps): Promise<DoctorCheck> {
  let bin: string;
  try {
    bin = d.locateVfkit();
  } catch (err) {
    const searched = err instanceof ProgramNotFoundError ? err.searched.map((dir) => `looked in ${dir}`) : [];
    return check(
      'vfkit',
      'vfkit',
      'fail',
      errorMessage(err),
      '`brew install vfkit` or `nix profile install nixpkgs#vfkit` (or `nixvm config set vfkitPath /path/to/vfkit`)',
      searched,
    );
  }
  const r = await output(d, [bin, '--version']);
  if (r?.exitCode !== 0) {
    return check('vfkit', 'vfkit', 'fail', `${bin} did not run (\`${bin} --version\` failed).`, 'reinstall vfkit');
  }
  const v = parseVfkitVersion(r.stdout + r.stderr);
  const min = parseVfkitVersion(`version: ${MIN_VFKIT_VERSION}`).parts!;
  if (v.parts && compareVersions(v.parts, min) < 0) {
    return check(
      'vfkit',
      'vfkit',
      'fail',
      `vfkit ${v.version} at ${bin} is older than ${MIN_VFKIT_VERSION}, which nixvm needs (--pidfile, a graceful stop).`,
      '`brew upgrade vfkit` or `nix profile upgrade`',
    );
  }
  return check('vfkit', 'vfkit', 'ok', `vfkit ${v.version ?? '(a build without a version)'} at ${bin}.`);
}

async function macChecks(d: DoctorDeps): Promise<DoctorCheck[]> {
  if (d.platform !== 'darwin') {
    return [
      check(
        'macos',
        'macOS',
        'warn',
        `This is ${d.platform}, not macOS: nixvm runs VMs with Virtualization.framework on a Mac only (elsewhere the agent runs for development, against the vfkit simulator).`,
      ),
      check('apple-silicon', 'Apple silicon', 'skip', 'not a Mac.'),
      check('rosetta', 'Rosetta', 'skip', 'not a Mac.'),
    ];
  }
  const out: DoctorCheck[] = [];
  const sw = await output(d, ['/usr/bin/sw_vers', '-productVersion']);
  const macos = sw?.exitCode === 0 ? sw.stdout.trim() : null;
  const major = macos ? Number(macos.split('.')[0]) : Number.NaN;
  if (!macos || Number.isNaN(major))
    out.push(check('macos', 'macOS', 'warn', 'sw_vers did not say which macOS this is.'));
  else if (major < MIN_MACOS_ROSETTA) {
    out.push(
      check(
        'macos',
        'macOS',
        'warn',
        `macOS ${macos}: VMs run, but Rosetta in Linux VMs needs macOS ${MIN_MACOS_ROSETTA} or newer.`,
        'update macOS (System Settings → General → Software Update)',
      ),
    );
  } else out.push(check('macos', 'macOS', 'ok', `macOS ${macos}.`));

  const arm = await output(d, ['/usr/sbin/sysctl', '-n', 'hw.optional.arm64']);
  const appleSilicon = arm?.exitCode === 0 && arm.stdout.trim() === '1';
  const translated = await output(d, ['/usr/sbin/sysctl', '-n', 'sysctl.proc_translated']);
  if (!appleSilicon) {
    out.push(
      check(
        'apple-silicon',
        'Apple silicon',
        'warn',
        'This Mac has an Intel processor: VMs run, but Rosetta (x86_64 programs in aarch64 VMs) needs Apple silicon.',
        'set virtualisation.rosetta.enable = false in your VMs',
      ),
    );
    out.push(check('rosetta', 'Rosetta', 'skip', 'not available on Intel Macs.'));
    return out;
  }
  out.push(
    translated?.stdout.trim() === '1'
      ? check(
          'apple-silicon',
          'Apple silicon',
          'warn',
          'Apple silicon, but this Node runs under Rosetta (an x86_64 build).',
          'install the arm64 Node (npm install brings one into node_modules/.bin)',
        )
      : check('apple-silicon', 'Apple silicon', 'ok', 'Apple silicon.'),
  );
  const pgrep = await output(d, ['/usr/bin/pgrep', '-q', 'oahd']);
  const installed = d.exists(ROSETTA_BINARY) || pgrep?.exitCode === 0;
  const users = d.rosettaVms.length
    ? ` (${d.rosettaVms.map((v) => JSON.stringify(v)).join(', ')} use${d.rosettaVms.length === 1 ? 's' : ''} it)`
    : '';
  out.push(
    installed
      ? check('rosetta', 'Rosetta', 'ok', 'Rosetta is installed.')
      : check(
          'rosetta',
          'Rosetta',
          d.rosettaVms.length ? 'fail' : 'warn',
          `Rosetta is not installed${users}.`,
          `\`${ROSETTA_FIX}\``,
        ),
  );
  return out;
}

/** The builders nix knows, each probed on ssh (what the agent's Builders does, for a doctor without one). */
async function probedBuilders(config: Record<string, unknown>, timeoutMs = 3000): Promise<BuilderMachineInfo[]> {
  const builders = typeof config.builders === 'string' ? config.builders : '@/etc/nix/machines';
  const read = (f: string) => {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch {
      return null;
    }
  };
  const { machines } = parseBuilders(builders, read);
  return Promise.all(
    machines.map(async (m) => {
      const e = machineEndpoint(m.uri);
      const answers = e ? (await sshBanner({ host: e.host, port: e.port }, timeoutMs)) !== null : null;
      return {
        uri: m.uri,
        systems: m.systems,
        maxJobs: m.maxJobs,
        supportedFeatures: m.supportedFeatures,
        source: m.source,
        answers,
        vm: null,
      };
    }),
  );
}

async function builderCheck(d: DoctorDeps, config: Record<string, unknown> | null): Promise<DoctorCheck> {
  if (d.systems === null)
    return check('builder', 'Linux builder', 'skip', 'start the agent to check the systems its VMs need.');
  if (d.systems.length === 0)
    return check('builder', 'Linux builder', 'skip', 'no VM says which system it is built for.');
  if (!config) return check('builder', 'Linux builder', 'skip', 'nix did not show its configuration.');
  const here = [typeof config.system === 'string' ? config.system : null, ...strings(config['extra-platforms'])].filter(
    (x): x is string => x !== null,
  );
  const machines = (await d.builders?.())?.machines ?? (await probedBuilders(config));
  const details = [
    `this machine builds: ${here.join(', ') || 'nothing nix names'}`,
    ...machines.map(
      (m) =>
        `builder ${m.uri}${m.vm ? ` (nixvm's builder VM ${JSON.stringify(m.vm)})` : ''}: ${m.systems.join(', ') || 'this system'}; ${
          m.answers === true ? 'answers' : m.answers === false ? 'does not answer' : 'not probed'
        }`,
    ),
  ];
  const cap = {
    localSystems: here,
    machines: machines.map((m) => ({
      ...m,
      sshKey: null,
      speedFactor: 1,
      mandatoryFeatures: [],
      publicHostKey: null,
    })),
    answers: new Map(machines.flatMap((m) => (m.answers === null ? [] : [[m.uri, m.answers] as const]))),
  };
  const verdicts = d.systems.map((sys) => ({ sys, b: buildabilityOf(sys, cap) }));
  const none = verdicts.filter((v) => v.b.how === 'none').map((v) => v.sys);
  const silent = verdicts.flatMap((v) => (v.b.how === 'builder' && v.b.answering === false ? [v] : []));
  const remote = verdicts.flatMap((v) => (v.b.how === 'builder' ? [v.sys] : []));
  if (none.length) {
    return check(
      'builder',
      'Linux builder',
      'fail',
      `nothing here builds ${none.join(', ')}, which your VMs need${machines.length ? ` (none of the ${machines.length} builders nix knows does)` : ''}.`,
      builderFix(none[0]!),
      details,
    );
  }
  if (silent.length) {
    return check(
      'builder',
      'Linux builder',
      'warn',
      `the builders for ${silent.map((v) => v.sys).join(', ')} do not answer on ssh, so builds for them will fail.`,
      'start the builder (or check its address and your network), then run `nixvm doctor` again',
      details,
    );
  }
  return check(
    'builder',
    'Linux builder',
    'ok',
    remote.length
      ? `${remote.join(', ')} build${remote.length === 1 ? 's' : ''} on a builder that answers.`
      : `this machine builds ${d.systems.join(', ')} itself.`,
    null,
    details,
  );
}

function stateDirCheck(d: DoctorDeps): DoctorCheck {
  const st = d.stat(d.stateDir);
  if (!st)
    return check('state-dir', 'state folder', 'ok', `${d.stateDir} does not exist yet; the agent makes it (mode 700).`);
  if (st.isSymbolicLink || !st.isDirectory) {
    return check(
      'state-dir',
      'state folder',
      'fail',
      `${d.stateDir} is not a plain folder.`,
      `move it away: \`mv ${d.stateDir} ${d.stateDir}.old\``,
    );
  }
  if (st.uid !== d.uid) {
    return check(
      'state-dir',
      'state folder',
      'fail',
      `${d.stateDir} belongs to uid ${st.uid}, not you.`,
      `\`sudo chown -R ${d.user} ${d.stateDir}\``,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    return check(
      'state-dir',
      'state folder',
      'warn',
      `${d.stateDir} is open to others (mode ${(st.mode & 0o777).toString(8)}): it holds VM sockets and logs.`,
      `\`chmod 700 ${d.stateDir}\``,
    );
  }
  return check('state-dir', 'state folder', 'ok', `${d.stateDir} is yours, mode 700.`);
}

async function loginItemCheck(d: DoctorDeps): Promise<DoctorCheck> {
  let s: LoginItemStatus;
  try {
    s = await d.loginItem();
  } catch (err) {
    return check('login-item', 'login item', 'skip', errorMessage(err));
  }
  if (!s.installed) {
    return check(
      'login-item',
      'login item',
      'ok',
      d.platform === 'darwin'
        ? 'off: the agent runs while NixVM.app or `nixvm daemon` does.'
        : 'off (login items need macOS).',
      d.platform === 'darwin' ? '`nixvm login-item on` starts it at login' : null,
    );
  }
  const gone = (s.programArguments ?? []).slice(0, 2).filter((p) => p.startsWith('/') && !d.exists(p));
  if (gone.length) {
    return check(
      'login-item',
      'login item',
      'fail',
      `the login item runs ${gone[0]}, which is not there any more (a moved or deleted checkout?).`,
      '`nixvm login-item off && nixvm login-item on` from where nixvm is now',
    );
  }
  if (s.problem)
    return check('login-item', 'login item', 'warn', s.problem, '`nixvm login-item off && nixvm login-item on`');
  return check('login-item', 'login item', 'ok', `on (${s.loaded ? 'loaded in launchd' : 'loads at next login'}).`);
}

async function sshCheck(d: DoctorDeps): Promise<DoctorCheck> {
  let info: SshConfigInfo;
  try {
    info = await d.sshConfig();
  } catch (err) {
    return check('ssh-include', 'ssh Include', 'skip', errorMessage(err));
  }
  if (info.status === 'included')
    return check(
      'ssh-include',
      'ssh Include',
      'ok',
      "~/.ssh/config includes nixvm's ssh config: `ssh nixvm-<vm>` works.",
    );
  const why =
    info.status === 'missing'
      ? 'there is no ~/.ssh/config'
      : info.status === 'unreadable'
        ? '~/.ssh/config cannot be read'
        : '~/.ssh/config does not include it';
  return check(
    'ssh-include',
    'ssh Include',
    'warn',
    `${why}, so \`ssh nixvm-<vm>\` does not work (\`nixvm ssh <vm>\` does).`,
    `add this line at the top of ~/.ssh/config: ${info.includeLine}`,
  );
}

/** Every check, in the order a new user meets them. */
export async function runDoctor(d: DoctorDeps): Promise<DoctorReport> {
  const { checks: nixChecksOut, config } = await nixChecks(d);
  const checks = [
    ...nixChecksOut,
    await vfkitCheck(d),
    ...(await macChecks(d)),
    await builderCheck(d, config),
    stateDirCheck(d),
    await loginItemCheck(d),
    await sshCheck(d),
  ];
  return { checks, at: d.now() };
}

/** The real world's half of DoctorDeps (runner, file system, this user); the rest comes from the caller. */
export function hostDoctorDeps(): Pick<DoctorDeps, 'platform' | 'user' | 'uid' | 'exists' | 'stat' | 'now'> {
  return {
    platform: process.platform,
    user: os.userInfo().username,
    uid: typeof process.getuid === 'function' ? process.getuid() : 0,
    exists: (f) => fs.existsSync(f),
    stat: (f) => {
      try {
        const st = fs.lstatSync(f);
        return { uid: st.uid, mode: st.mode, isDirectory: st.isDirectory(), isSymbolicLink: st.isSymbolicLink() };
      } catch {
        return null;
      }
    },
    now: () => Date.now(),
  };
}

export interface DoctorHereOptions {
  nixPath: string | null;
  vfkitPath: string | null;
  stateDir: string;
  systems: string[] | null;
  rosettaVms: string[];
  /** Default: read ~/.ssh/config for the Include of the state dir's ssh config. */
  sshConfig?: () => Promise<SshConfigInfo>;
  /** The agent's builders; default: read and probed here. */
  builders?: () => Promise<BuildersInfo | null>;
}

/** The checks on this machine with the real runner: what the agent's `doctor` method and `nixvm doctor` without an agent run. */
export function doctorHere(o: DoctorHereOptions): Promise<DoctorReport> {
  return runDoctor({
    ...hostDoctorDeps(),
    run,
    locateNix: () => Nix.locate(o.nixPath).bin,
    locateVfkit: () => locateVfkit(o.vfkitPath),
    stateDir: o.stateDir,
    systems: o.systems,
    rosettaVms: o.rosettaVms,
    loginItem: () => loginItemStatus(),
    ...(o.builders ? { builders: o.builders } : {}),
    sshConfig:
      o.sshConfig ??
      (async () => {
        const file = sshConfigPath(o.stateDir);
        return {
          path: file,
          includeLine: includeLine(file),
          status: await sshConfigIncludes(userSshConfigPath(), file),
        };
      }),
  });
}
