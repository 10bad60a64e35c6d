/**
 * "Install Command Line Tool…": where the `nixvm` symlink to the app's bundled launcher goes, and
 * the exact commands that put it there. Decided here, pure over the facts it is handed (which
 * directories exist, are writable, are on the user's PATH, what is at the link's path), so every
 * case is tested by argv; src/main gathers the facts, asks for consent and runs the argv.
 *
 * A directory on PATH that the user can write needs no password: /usr/local/bin (in every
 * macOS shell's PATH through /etc/paths), /opt/homebrew/bin or ~/.local/bin, in that order. When
 * none is, /usr/local/bin it is, made and linked by `osascript … with administrator privileges`
 * (macOS's own password prompt), with the paths as arguments, never spliced into a script.
 */
import path from 'node:path';

export type PathEntry = { kind: 'none' } | { kind: 'link'; target: string } | { kind: 'other' };

export interface CliToolFacts {
  /** The launcher the app carries (Contents/Resources/cli/nixvm); null when running from a checkout. */
  launcher: string | null;
  home: string;
  /** The directories of the user's PATH (their login shell's, not the app's launchd PATH). */
  pathDirs: readonly string[];
  exists(dir: string): boolean;
  writable(dir: string): boolean;
  entry(p: string): PathEntry;
  /** Where to look, best first; default: /usr/local/bin, /opt/homebrew/bin, ~/.local/bin. */
  candidates?: readonly string[];
}

export const OSASCRIPT = '/usr/bin/osascript';
export const ADMIN_DIR = '/usr/local/bin';

export type CliToolPlan =
  | { state: 'unavailable'; reason: string }
  | { state: 'installed'; link: string }
  | {
      state: 'install';
      dir: string;
      link: string;
      /** What the link replaces, in words (a file, an older link), or null. */
      replaces: string | null;
      admin: boolean;
      /** Run in order; each must exit 0. */
      argv: string[][];
      consent: { message: string; detail: string; button: string };
    };

export function defaultCandidates(home: string): string[] {
  return [ADMIN_DIR, '/opt/homebrew/bin', path.join(home, '.local', 'bin')];
}

/** The osascript argv that makes `dir` and links `link` to `launcher` as an administrator. */
export function adminLinkArgv(dir: string, launcher: string, link: string): string[] {
  const script =
    'do shell script "/bin/mkdir -p " & quoted form of (item 1 of argv) & " && /bin/ln -sfn " & ' +
    'quoted form of (item 2 of argv) & " " & quoted form of (item 3 of argv) with administrator privileges';
  return [OSASCRIPT, '-e', 'on run argv', '-e', script, '-e', 'end run', dir, launcher, link];
}

function describeEntry(e: PathEntry, launcher: string): string | null {
  if (e.kind === 'none') return null;
  if (e.kind === 'link') return e.target === launcher ? null : `the link to ${e.target} there`;
  return 'the file there';
}

export function planCliTool(f: CliToolFacts): CliToolPlan {
  if (!f.launcher) {
    return {
      state: 'unavailable',
      reason:
        'This NixVM runs from a checkout: its command-line tool is `npx nixvm` there. The packaged NixVM.app installs its own.',
    };
  }
  const launcher = f.launcher;
  const candidates = f.candidates ?? defaultCandidates(f.home);
  const onPath = new Set(f.pathDirs.map((d) => path.resolve(d)));
  // Already there, pointing at this app: nothing to do (wherever it was put).
  for (const dir of candidates) {
    const link = path.join(dir, 'nixvm');
    const e = f.entry(link);
    if (e.kind === 'link' && e.target === launcher) return { state: 'installed', link };
  }
  const underHome = (dir: string) => dir.startsWith(`${path.resolve(f.home)}${path.sep}`);
  const usable = candidates.find(
    (dir) => onPath.has(path.resolve(dir)) && (f.exists(dir) ? f.writable(dir) : underHome(dir)),
  );
  const dir = usable ?? ADMIN_DIR;
  const admin = usable === undefined;
  const link = path.join(dir, 'nixvm');
  const replaces = describeEntry(f.entry(link), launcher);
  const argv = admin
    ? [adminLinkArgv(dir, launcher, link)]
    : [
        ['/bin/mkdir', '-p', dir],
        ['/bin/ln', '-sfn', launcher, link],
      ];
  const detail = [
    `NixVM will make ${link} a link to the nixvm inside NixVM.app, so \`nixvm\` works in any terminal (it follows the app when you update it).`,
    replaces ? `It replaces ${replaces}.` : '',
    admin ? `You cannot write to ${dir}, so macOS will ask for an administrator's password.` : '',
    !onPath.has(path.resolve(dir)) ? `${dir} is not on your shell's PATH yet: add it there to use nixvm.` : '',
  ]
    .filter(Boolean)
    .join(' ');
  return {
    state: 'install',
    dir,
    link,
    replaces,
    admin,
    argv,
    consent: { message: 'Install the nixvm command-line tool?', detail, button: admin ? 'Install…' : 'Install' },
  };
}

/** Marks the line with the PATH in a login shell's output (its rc files may print too). */
export const PATH_MARK = '__NIXVM_PATH__=';

/** The argv that prints the user's PATH as their login shell sets it up (`-i`: .zshrc too). */
export function userPathArgv(shell: string): string[] {
  return [shell, '-i', '-l', '-c', `printf '\\n${PATH_MARK}%s\\n' "$PATH"`];
}

/** The directories from that output; null when the mark is missing (the shell failed). */
export function parseUserPath(stdout: string): string[] | null {
  const line = stdout.split('\n').find((l) => l.startsWith(PATH_MARK));
  return line === undefined ? null : line.slice(PATH_MARK.length).split(':').filter(Boolean);
}
