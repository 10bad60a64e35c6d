/**
 * How this machine's nix is told to use nixvm's builder VM, decided from how nix is installed,
 * and shown in full before anything changes. Pure: facts in, a plan (file contents, argv) out.
 *
 * nixvm always keeps the builder's machine line in a machines file of its own (empty while the
 * VM is not ready), so the only edit nix's configuration ever needs is one `@<that file>` entry:
 *
 * - `agent`: the user is trusted by the nix daemon (or there is no daemon). nixvm's own builds pass
 *   the machines on `--option builders` themselves; for the user's own `nix build` it offers a
 *   nix.conf line.
 * - `system`: /etc/nix/nix.conf gets the entry, on lines marked for nixvm, with a backup, and the
 *   daemon restarts; all of it in one script run with an administrator's consent (the macOS prompt).
 * - `nix-darwin`: nix-darwin owns /etc/nix/nix.conf; nixvm prints the setting to add instead.
 */
import type { RegistrationMode, RegistrationPlan } from '../../api/types.ts';
import { shellWord } from '../../host/shell.ts';

export interface NixInstallFacts {
  user: string;
  uid: number;
  /** The groups the user is in (for `@group` in trusted-users). */
  groups: readonly string[];
  /** nix's effective trusted-users. */
  trustedUsers: readonly string[];
  /** A nix daemon serves the store (multi-user install). */
  daemon: boolean;
  /** /etc/nix/nix.conf is nix-darwin's (a link into /etc/static). */
  nixDarwin: boolean;
  /** nix's effective `builders`. */
  builders: string;
  /** /etc/nix/nix.conf as it is now, or null when there is none. */
  systemConf: string | null;
}

export const SYSTEM_CONF = '/etc/nix/nix.conf';
export const SYSTEM_CONF_BACKUP = '/etc/nix/nix.conf.before-nixvm';
/** Marks the lines nixvm adds to nix.conf; `builder off` removes exactly these. */
export const MARK = '# nixvm: builder';
/** A line nixvm replaced, kept commented out so that `builder off` can put it back. */
const WAS = '# nixvm-was: ';

/** Is the user trusted by nix (its daemon's trusted-users, or no daemon at all)? */
export function isTrusted(f: Pick<NixInstallFacts, 'user' | 'uid' | 'groups' | 'trustedUsers' | 'daemon'>): boolean {
  if (!f.daemon || f.uid === 0) return true;
  return f.trustedUsers.some((t) => t === '*' || t === f.user || (t.startsWith('@') && f.groups.includes(t.slice(1))));
}

export function modeFor(f: NixInstallFacts): RegistrationMode {
  if (isTrusted(f)) return 'agent';
  return f.nixDarwin ? 'nix-darwin' : 'system';
}

/**
 * The `builders` entry for nixvm's machines file, and the whole value nixvm sets: Nix 2.18 to
 * 2.2x read only the first `@file` of `builders`, so that file carries the other machines itself
 * (Builders writes them there).
 */
export function fileEntry(machinesFile: string): string {
  return `@${machinesFile}`;
}

/** Does nix's effective `builders` already read nixvm's file? */
export function hasEntry(builders: string, machinesFile: string): boolean {
  return builders
    .split(/[;\n]/)
    .map((p) => p.trim())
    .includes(fileEntry(machinesFile));
}

/** nix's built-in `builders`, when nix.conf sets none: the machines file beside it. */
export const DEFAULT_BUILDERS = '@/etc/nix/machines';

/** nix.conf reading nixvm's file: its `builders` line replaced (kept, commented), or one added. */
export function confWithEntry(conf: string, machinesFile: string): string {
  const lines = confWithoutEntry(conf).split('\n');
  const i = lines.findIndex((l) => /^\s*builders\s*=/.test(l));
  const ours = [MARK, `builders = ${fileEntry(machinesFile)}`];
  if (i >= 0) lines.splice(i, 1, `${WAS}${lines[i]}`, ...ours);
  else {
    while (lines.length && lines.at(-1) === '') lines.pop();
    lines.push(...ours, '');
  }
  return lines.join('\n');
}

/** nix.conf without nixvm's lines, the line they replaced put back. */
export function confWithoutEntry(conf: string): string {
  const out: string[] = [];
  const lines = conf.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l === MARK) {
      i++; // the builders line after the mark
      continue;
    }
    out.push(l.startsWith(WAS) ? l.slice(WAS.length) : l);
  }
  return out.join('\n');
}

/** AppleScript's `do shell script … with administrator privileges`: the one prompt for consent. */
export function adminArgv(script: string, prompt: string): string[] {
  const as = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  return ['osascript', '-e', `do shell script ${as(script)} with prompt ${as(prompt)} with administrator privileges`];
}

/** Restart whichever nix daemon this Mac runs (the official installer's, or Determinate's). */
export const DAEMON_RESTART =
  'launchctl kickstart -k system/org.nixos.nix-daemon 2>/dev/null || launchctl kickstart -k system/systems.determinate.nix-daemon';

/** The plan to make nix read nixvm's machines file. `staged` is where nixvm writes the new nix.conf. */
export function registrationPlan(f: NixInstallFacts, machinesFile: string, staged: string): RegistrationPlan {
  const mode = modeFor(f);
  const inPlace = hasEntry(f.builders, machinesFile);
  const value = fileEntry(machinesFile);
  if (mode === 'agent') {
    return {
      mode,
      changes: [
        "nixvm's own builds pass the builder VM to nix on `--option builders` (you are trusted by nix: no system file changes).",
        `${machinesFile} lists the builder VM while it runs.`,
      ],
      system: null,
      userConfLine: inPlace ? null : `builders = ${value}`,
      snippet: null,
      inPlace,
    };
  }
  if (mode === 'nix-darwin') {
    return {
      mode,
      changes: inPlace
        ? [`your nix-darwin configuration already reads ${machinesFile}.`]
        : [
            'nix-darwin owns /etc/nix/nix.conf, so nixvm changes nothing there: add the setting below to your configuration and run darwin-rebuild switch.',
          ],
      system: null,
      userConfLine: null,
      snippet: inPlace ? null : `nix.settings.builders = ${JSON.stringify(value)};`,
      inPlace,
    };
  }
  const contents = confWithEntry(f.systemConf ?? '', machinesFile);
  const script = [
    `/bin/cp -p ${SYSTEM_CONF} ${SYSTEM_CONF_BACKUP} 2>/dev/null || true`,
    `/usr/bin/install -m 0644 -o root ${shellWord(staged)} ${SYSTEM_CONF}`,
    DAEMON_RESTART,
  ].join(' && ');
  return {
    mode,
    changes: inPlace
      ? [`${SYSTEM_CONF} already reads ${machinesFile}.`]
      : [
          `${SYSTEM_CONF}: \`builders = @${machinesFile}\` (nixvm's machines file, which lists the machines nix had too), on lines marked "${MARK}" (the old line kept, commented out; \`nixvm builder off\` puts it back).`,
          `a backup of the old file at ${SYSTEM_CONF_BACKUP}.`,
          'the nix daemon restarts to read it (running builds are interrupted).',
          'macOS asks for an administrator password once.',
        ],
    system: inPlace
      ? null
      : {
          file: SYSTEM_CONF,
          contents,
          staged,
          argv: adminArgv(script, 'NixVM wants to make your Linux builder VM a builder for nix.'),
        },
    userConfLine: null,
    snippet: null,
    inPlace,
  };
}

/** The plan to undo it: the same shapes, the other way. */
export function unregistrationPlan(f: NixInstallFacts, machinesFile: string, staged: string): RegistrationPlan {
  const mode = modeFor(f);
  const inPlace = !hasEntry(f.builders, machinesFile) && !(f.systemConf ?? '').includes(MARK);
  if (mode !== 'system' || inPlace) {
    return {
      mode,
      changes: [
        `nixvm's builds stop passing the builder, and ${machinesFile} is emptied.`,
        ...(mode === 'nix-darwin' && hasEntry(f.builders, machinesFile)
          ? [
              `remove ${JSON.stringify(fileEntry(machinesFile))} from nix.settings.builders in your nix-darwin configuration.`,
            ]
          : []),
        ...(mode === 'agent' && hasEntry(f.builders, machinesFile)
          ? [`remove ${fileEntry(machinesFile)} from \`builders\` in your nix.conf (nixvm does not edit it).`]
          : []),
      ],
      system: null,
      userConfLine: null,
      snippet: null,
      inPlace,
    };
  }
  const contents = confWithoutEntry(f.systemConf ?? '');
  const script = [`/usr/bin/install -m 0644 -o root ${shellWord(staged)} ${SYSTEM_CONF}`, DAEMON_RESTART].join(' && ');
  return {
    mode,
    changes: [
      `${SYSTEM_CONF}: nixvm's marked lines removed, the line they replaced put back.`,
      'the nix daemon restarts to read it.',
      'macOS asks for an administrator password once.',
    ],
    system: {
      file: SYSTEM_CONF,
      contents,
      staged,
      argv: adminArgv(script, 'NixVM wants to stop using its Linux builder VM.'),
    },
    userConfLine: null,
    snippet: null,
    inPlace: false,
  };
}
