/**
 * "Install Command Line Tool…" decided by argv: which directory, whether an administrator is
 * needed, and the exact commands; and the app verb that asks, runs them and checks the result.
 */
import { describe, expect, it } from 'vitest';
import { createAppHandlers, type AppHost } from '../../src/app/app-verbs.ts';
import {
  adminLinkArgv,
  parseUserPath,
  planCliTool,
  userPathArgv,
  type CliToolFacts,
  type PathEntry,
} from '../../src/app/cli-tool.ts';

const LAUNCHER = '/Applications/NixVM.app/Contents/Resources/cli/nixvm';
const HOME = '/Users/me';

function facts(o: {
  pathDirs?: string[];
  writable?: string[];
  exists?: string[];
  entries?: Record<string, PathEntry>;
  launcher?: string | null;
}): CliToolFacts {
  const exists = o.exists ?? ['/usr/local/bin', '/opt/homebrew/bin'];
  return {
    launcher: o.launcher === undefined ? LAUNCHER : o.launcher,
    home: HOME,
    pathDirs: o.pathDirs ?? ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'],
    exists: (d) => exists.includes(d),
    writable: (d) => (o.writable ?? []).includes(d),
    entry: (p) => o.entries?.[p] ?? { kind: 'none' },
  };
}

describe('planCliTool', () => {
  it('links into /usr/local/bin without a password when the user can write it', () => {
    expect(planCliTool(facts({ writable: ['/usr/local/bin'] }))).toMatchObject({
      state: 'install',
      dir: '/usr/local/bin',
      link: '/usr/local/bin/nixvm',
      admin: false,
      replaces: null,
      argv: [
        ['/bin/mkdir', '-p', '/usr/local/bin'],
        ['/bin/ln', '-sfn', LAUNCHER, '/usr/local/bin/nixvm'],
      ],
    });
  });

  it("takes /opt/homebrew/bin or ~/.local/bin when writable and on the user's PATH, before asking for a password", () => {
    const brew = planCliTool(
      facts({ writable: ['/opt/homebrew/bin'], pathDirs: ['/opt/homebrew/bin', '/usr/local/bin', '/usr/bin'] }),
    );
    expect(brew).toMatchObject({ dir: '/opt/homebrew/bin', admin: false });
    // ~/.local/bin on PATH but not made yet: made, no password.
    const local = planCliTool(facts({ pathDirs: ['/Users/me/.local/bin', '/usr/local/bin', '/usr/bin'] }));
    expect(local).toMatchObject({
      dir: '/Users/me/.local/bin',
      admin: false,
      argv: [
        ['/bin/mkdir', '-p', '/Users/me/.local/bin'],
        ['/bin/ln', '-sfn', LAUNCHER, '/Users/me/.local/bin/nixvm'],
      ],
    });
    // Writable but not on PATH: nixvm would not be found there, so it is passed over.
    expect(planCliTool(facts({ writable: ['/opt/homebrew/bin'] }))).toMatchObject({
      dir: '/usr/local/bin',
      admin: true,
    });
  });

  it('asks macOS for an administrator only when no directory on PATH is writable, with the paths as arguments', () => {
    const p = planCliTool(facts({}));
    expect(p).toMatchObject({ state: 'install', dir: '/usr/local/bin', admin: true });
    if (p.state !== 'install') throw new Error('unreachable');
    expect(p.argv).toEqual([
      [
        '/usr/bin/osascript',
        '-e',
        'on run argv',
        '-e',
        'do shell script "/bin/mkdir -p " & quoted form of (item 1 of argv) & " && /bin/ln -sfn " & quoted form of (item 2 of argv) & " " & quoted form of (item 3 of argv) with administrator privileges',
        '-e',
        'end run',
        '/usr/local/bin',
        LAUNCHER,
        '/usr/local/bin/nixvm',
      ],
    ]);
    expect(p.consent).toEqual({
      message: 'Install the nixvm command-line tool?',
      detail:
        "NixVM will make /usr/local/bin/nixvm a link to the nixvm inside NixVM.app, so `nixvm` works in any terminal (it follows the app when you update it). You cannot write to /usr/local/bin, so macOS will ask for an administrator's password.",
      button: 'Install…',
    });
    // An app in a folder with quotes in its name: still only an argument, never part of the script.
    const odd = `/Users/me/Apps/it's "NixVM"/NixVM.app/Contents/Resources/cli/nixvm`;
    const argv = adminLinkArgv('/usr/local/bin', odd, '/usr/local/bin/nixvm');
    expect(argv.slice(0, 7).join(' ')).not.toContain('NixVM.app');
    expect(argv.at(-2)).toBe(odd);
  });

  it('says what it replaces, and is done when the link already points at this app', () => {
    const stale = planCliTool(
      facts({
        writable: ['/usr/local/bin'],
        entries: {
          '/usr/local/bin/nixvm': {
            kind: 'link',
            target: '/Users/me/Downloads/NixVM.app/Contents/Resources/cli/nixvm',
          },
        },
      }),
    );
    expect(stale).toMatchObject({
      replaces: 'the link to /Users/me/Downloads/NixVM.app/Contents/Resources/cli/nixvm there',
    });
    expect(stale.state === 'install' && stale.consent.detail).toContain('It replaces the link to /Users/me/Downloads/');
    const file = planCliTool(
      facts({ writable: ['/usr/local/bin'], entries: { '/usr/local/bin/nixvm': { kind: 'other' } } }),
    );
    expect(file).toMatchObject({ replaces: 'the file there' });
    const done = planCliTool(facts({ entries: { '/Users/me/.local/bin/nixvm': { kind: 'link', target: LAUNCHER } } }));
    expect(done).toEqual({ state: 'installed', link: '/Users/me/.local/bin/nixvm' });
  });

  it('offers nothing from a checkout', () => {
    expect(planCliTool(facts({ launcher: null }))).toEqual({
      state: 'unavailable',
      reason:
        'This NixVM runs from a checkout: its command-line tool is `npx nixvm` there. The packaged NixVM.app installs its own.',
    });
  });

  it("reads the user's PATH from their login shell, past whatever the shell prints first", () => {
    expect(userPathArgv('/bin/zsh')).toEqual([
      '/bin/zsh',
      '-i',
      '-l',
      '-c',
      `printf '\\n__NIXVM_PATH__=%s\\n' "$PATH"`,
    ]);
    expect(parseUserPath('Last login: today\n\n__NIXVM_PATH__=/opt/homebrew/bin:/usr/local/bin::/usr/bin\n')).toEqual([
      '/opt/homebrew/bin',
      '/usr/local/bin',
      '/usr/bin',
    ]);
    expect(parseUserPath('zsh: command not found\n')).toBeNull();
  });
});

describe('installCliTool', () => {
  function host(f: CliToolFacts, answers: { consent: boolean; results: { exitCode: number; stderr: string }[] }) {
    const ran: string[][] = [];
    const consents: string[] = [];
    let linked = false;
    const h: AppHost = {
      packaged: true,
      signed: false,
      platform: 'darwin',
      cliToolFacts: async () => ({
        ...f,
        entry: (p) => (linked && p === '/usr/local/bin/nixvm' ? { kind: 'link', target: LAUNCHER } : f.entry(p)),
      }),
      confirm: async (c) => {
        consents.push(c.message);
        return answers.consent;
      },
      run: async (argv) => {
        ran.push(argv);
        const r = answers.results.shift() ?? { exitCode: 0, stderr: '' };
        if (r.exitCode === 0 && argv.includes('/usr/local/bin/nixvm')) linked = true;
        return r;
      },
    };
    return { h, ran, consents };
  }

  it('runs nothing without consent; links, then checks the link, with it', async () => {
    const refused = host(facts({ writable: ['/usr/local/bin'] }), { consent: false, results: [] });
    expect(await createAppHandlers(refused.h).installCliTool({})).toEqual({
      status: { state: 'not-installed', link: '/usr/local/bin/nixvm', admin: false },
      cancelled: true,
    });
    expect(refused.ran).toEqual([]);
    const ok = host(facts({ writable: ['/usr/local/bin'] }), { consent: true, results: [] });
    expect(await createAppHandlers(ok.h).installCliTool({})).toEqual({
      status: { state: 'installed', link: '/usr/local/bin/nixvm' },
      cancelled: false,
    });
    expect(ok.ran.map((a) => a[0])).toEqual(['/bin/mkdir', '/bin/ln']);
  });

  it('a cancelled password prompt is a cancel; another failure says how to link it by hand', async () => {
    const cancel = host(facts({}), {
      consent: true,
      results: [{ exitCode: 1, stderr: '0:93: execution error: User canceled. (-128)' }],
    });
    expect(await createAppHandlers(cancel.h).installCliTool({})).toMatchObject({ cancelled: true });
    expect(cancel.ran[0]![0]).toBe('/usr/bin/osascript');
    const broken = host(facts({}), {
      consent: true,
      results: [{ exitCode: 1, stderr: 'ln: /usr/local/bin/nixvm: Read-only file system' }],
    });
    await expect(createAppHandlers(broken.h).installCliTool({})).rejects.toThrow(
      `Could not link /usr/local/bin/nixvm (ln: /usr/local/bin/nixvm: Read-only file system); link it yourself: sudo ln -sfn ${LAUNCHER} /usr/local/bin/nixvm`,
    );
  });
});
