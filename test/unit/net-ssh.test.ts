import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as shellParse } from 'shell-quote';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/host/runner.ts';
import {
  includeLine,
  renderSshConfig,
  renderSshConfigChecked,
  sshArgv,
  sshUserProblem,
  sshCommandLine,
  sshConfigIncludes,
  sshConfigPath,
  sshHostAlias,
  sshHostAliases,
  SshTargetError,
  userSshConfigPath,
  writeSshConfig,
  type SshConfigEntry,
} from '../../src/core/net/ssh.ts';

/** Config entries as the agent makes them: each VM's alias (unique among them) and its ssh target. */
function entries(
  list: Array<{ vm: string; host: string; user: string; port: number; identityFile?: string }>,
): SshConfigEntry[] {
  const aliases = sshHostAliases(list.map((e) => e.vm));
  return list.map((e, i) => ({
    vm: e.vm,
    alias: aliases[i]!,
    target: { host: e.host, user: e.user, port: e.port, identityFile: e.identityFile ?? null },
  }));
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'nixvm ssh test-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** What `ssh -G` (real OpenSSH, no connection) resolves for these arguments. */
async function sshResolve(
  args: string[],
): Promise<{ get(key: string): string | undefined; all(key: string): string[] }> {
  const r = await run(['ssh', '-G', ...args]);
  const m = new Map<string, string[]>();
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf(' ');
    if (i > 0) m.set(line.slice(0, i), [...(m.get(line.slice(0, i)) ?? []), line.slice(i + 1)]);
  }
  return { get: (k) => m.get(k)?.[0], all: (k) => m.get(k) ?? [] };
}

describe('sshArgv', () => {
  it('checks host keys (accept-new on first contact, never "no") and puts the host last, alone', () => {
    expect(sshArgv({ host: '192.168.64.3', user: 'alice', port: 2222 })).toEqual([
      'ssh',
      '-o',
      'StrictHostKeyChecking=accept-new',
      '-o',
      'LogLevel=ERROR',
      '-p',
      '2222',
      '-l',
      'alice',
      '192.168.64.3',
    ]);
    const pinned = sshArgv({
      host: 'nixvm-web',
      user: 'builder',
      knownHostsFile: '/state/vms/web/known_hosts',
      hostKeyAlias: 'nixvm-web',
      strictHostKeyChecking: 'yes',
      proxyCommand: ['/usr/bin/node', '/opt/nixvm/bin/nixvm.js', 'proxy', '--unix', '/state/vms/web/ssh.sock'],
    });
    expect(pinned).toEqual([
      'ssh',
      '-o',
      'HostKeyAlias=nixvm-web',
      '-o',
      'UserKnownHostsFile=/state/vms/web/known_hosts',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'ProxyCommand=/usr/bin/node /opt/nixvm/bin/nixvm.js proxy --unix /state/vms/web/ssh.sock',
      '-o',
      'LogLevel=ERROR',
      '-p',
      '22',
      '-l',
      'builder',
      'nixvm-web',
    ]);
  });

  it('is what real ssh resolves for the vsock route: the ProxyCommand, the alias, the VM’s known_hosts', async () => {
    const dir = path.join(tmp, 'Application Support', '100% VM');
    await mkdir(dir, { recursive: true });
    const key = path.join(dir, 'nixvm_ed25519');
    await writeFile(key, '');
    const argv = sshArgv({
      host: 'nixvm-web',
      user: 'root',
      identityFile: key,
      knownHostsFile: path.join(dir, 'known_hosts'),
      hostKeyAlias: 'nixvm-web',
      proxyCommand: ['/opt/my node/node', '/opt/nixvm/bin/nixvm.js', 'proxy', '--unix', path.join(dir, 'ssh.sock')],
      connectTimeout: 10,
    });
    const got = await sshResolve(['-F', '/dev/null', ...argv.slice(1)]);
    expect(got.get('hostkeyalias')).toBe('nixvm-web');
    expect(got.get('userknownhostsfile')).toBe(path.join(dir, 'known_hosts'));
    expect(got.get('stricthostkeychecking')).toBe('accept-new');
    expect(got.get('connecttimeout')).toBe('10');
    // ssh -G shows the value before it expands its tokens (%% is a literal %).
    expect(got.all('identityfile')).toContain(key.replace(/%/g, '%%'));
    // ssh runs it with the user's shell: one word per argument; %% is the literal % it expands to.
    expect(got.get('proxycommand')).toBe(
      `'/opt/my node/node' /opt/nixvm/bin/nixvm.js proxy --unix '${path.join(dir, 'ssh.sock').replace(/%/g, '%%')}'`,
    );
  });

  it('adds an identity file and extra options; extra options can override the defaults', () => {
    const argv = sshArgv({
      host: 'h',
      user: 'u',
      identityFile: '/keys/id',
      extraOptions: { ServerAliveInterval: 5, ForwardAgent: true, LogLevel: 'DEBUG' },
    });
    expect(argv).toContain('ServerAliveInterval=5');
    expect(argv).toContain('ForwardAgent=yes');
    expect(argv).toContain('IdentityFile=/keys/id');
    expect(argv.filter((a) => a.startsWith('LogLevel='))).toEqual(['LogLevel=DEBUG']);
    expect(argv.slice(-5)).toEqual(['-p', '22', '-l', 'u', 'h']);
  });

  it('refuses what ssh would misread, in a sentence', () => {
    expect(() => sshArgv({ host: '-oProxyCommand=evil', user: 'u' })).toThrow(SshTargetError);
    expect(() => sshArgv({ host: 'a b', user: 'u' })).toThrow(/not a usable address/);
    expect(() => sshArgv({ host: 'h', user: '' })).toThrow(/ssh user "" cannot be handed to ssh: it is empty/);
    expect(() => sshArgv({ host: 'h', user: 'a\nb' })).toThrow(/control characters/);
    expect(() => sshArgv({ host: 'h', user: 'u', port: 70000 })).toThrow(/between 1 and 65535/);
    expect(() => sshArgv({ host: 'h', user: 'u', extraOptions: { 'Bad Key': 'x' } })).toThrow(/not an ssh option name/);
  });

  it('is what real ssh resolves, for an IPv6 link-local with its zone', async () => {
    // ssh drops an -i file that does not exist, so make one.
    await writeFile(path.join(tmp, 'id key'), '');
    const argv = sshArgv({
      host: 'fe80::5054:ff:fe12:3456%bridge100',
      user: 'my user',
      port: 2222,
      identityFile: path.join(tmp, 'id key'),
    });
    const got = await sshResolve(['-F', '/dev/null', ...argv.slice(1)]);
    expect(got.get('hostname')).toBe('fe80::5054:ff:fe12:3456%bridge100');
    expect(got.get('user')).toBe('my user');
    expect(got.get('port')).toBe('2222');
    expect(got.get('stricthostkeychecking')).toBe('accept-new');
    expect(got.get('loglevel')).toBe('ERROR');
    expect(got.all('identityfile')).toContain(path.join(tmp, 'id key'));
  });
});

const HOSTILE = [
  "o'brien",
  'a "quoted" name',
  'two  spaces',
  '$(touch pwned)',
  '`touch pwned`',
  '${HOME}',
  'semi;colon & amp | pipe > out',
  'new\nline',
  'tab\there',
  '-leading-dash',
  '=zsh-equals',
  '*glob?[ab]',
  'back\\slash\\',
  '!bang !!',
  '%percent%',
  '~tilde',
  '#hash',
  'ünïcödé 名前',
  'mixed \'single\' and "double" and \\ and $x',
];

describe('sshCommandLine', () => {
  // Control characters are refused in users and option values, and a user ssh would misread
  // (sshUserProblem) is refused: those names go into the path (and the option value) only.
  const argvFor = (name: string): string[] => {
    const printable = !/[\n\t]/.test(name);
    return sshArgv({
      host: 'fe80::5054:ff:fe12:3456%bridge100',
      user: sshUserProblem(name) === null ? name : 'root',
      // nixvm's folder names have no control characters (host/names.ts); a path with one is refused.
      identityFile: `/Users/me/Library/Application Support/NixVM/vms/${printable ? name : 'x'}/id_ed25519`,
      extraOptions: printable ? { SetEnv: `NIXVM_VM=${name}` } : {},
    });
  };

  it('is readable for plain values', () => {
    expect(sshCommandLine(sshArgv({ host: '192.168.64.3', user: 'alice' }))).toBe(
      'ssh -o StrictHostKeyChecking=accept-new -o LogLevel=ERROR -p 22 -l alice 192.168.64.3',
    );
    expect(sshCommandLine(['ssh', 'fe80::1%bridge100'])).toBe('ssh fe80::1%bridge100');
  });

  it('keeps every hostile value one argument (shell-quote parse round trip)', () => {
    for (const name of HOSTILE) {
      const argv = argvFor(name);
      const parsed = shellParse(sshCommandLine(argv)).map((e) =>
        // shell-quote's parser reports an escaped glob as a glob token; its text is the argument.
        typeof e === 'string' ? e : 'pattern' in e ? e.pattern : JSON.stringify(e),
      );
      expect(parsed, name).toEqual(argv);
    }
  });

  it('keeps every hostile value one argument in real shells (/bin/sh and bash)', async () => {
    // Files a stray glob would match, and a marker a stray command substitution would create.
    const cwd = path.join(tmp, 'shell-cwd');
    await mkdir(cwd, { recursive: true });
    await writeFile(path.join(cwd, '*globX[ab]'), '');
    await writeFile(path.join(cwd, 'aglob1a'), '');
    for (const shell of ['/bin/sh', '/usr/bin/bash']) {
      for (const name of HOSTILE) {
        const argv = argvFor(name);
        const r = await run([shell, '-c', `set -- ${sshCommandLine(argv)}; printf '%s\\0' "$@"`], { cwd });
        expect(r.stdout.split('\0').slice(0, -1), `${shell}: ${name}`).toEqual(argv);
      }
    }
    expect(await readdir(cwd)).not.toContain('pwned');
  });

  it('refuses a NUL, which no command line can carry', () => {
    expect(() => sshCommandLine(['ssh', 'a\0b'])).toThrow(/NUL/);
  });
});

describe('ssh config', () => {
  it('makes valid, lower-case, unique Host aliases', () => {
    expect(sshHostAlias('web')).toBe('nixvm-web');
    expect(sshHostAlias('My VM (test)*')).toBe('nixvm-my-vm-test');
    expect(sshHostAlias('!,?*')).toBe('nixvm-vm');
    const aliases = sshHostAliases(['Web', 'web', 'db']);
    expect(new Set(aliases).size).toBe(3);
    expect(aliases[2]).toBe('nixvm-db');
    expect(aliases[0]).toMatch(/^nixvm-web-[0-9a-f]{6}$/);
    // Stable: the same names give the same aliases next time.
    expect(sshHostAliases(['Web', 'web', 'db'])).toEqual(aliases);
    for (const a of sshHostAliases(HOSTILE)) expect(a).toMatch(/^nixvm-[a-z0-9._-]+$/);
  });

  it('renders one Host block per VM with the host-key options', () => {
    const text = renderSshConfig(
      entries([
        { vm: 'web', host: '192.168.64.3', user: 'alice', port: 22 },
        { vm: 'db', host: 'fe80::1%bridge100', user: 'root', port: 2222, identityFile: '/k/id' },
      ]),
    );
    expect(text).toContain('Host nixvm-web\n  HostName 192.168.64.3\n  User alice\n  Port 22\n');
    expect(text).toContain(
      'Host nixvm-db\n  HostName fe80::1%%bridge100\n  User root\n  Port 2222\n  IdentityFile /k/id\n',
    );
    expect(text.match(/StrictHostKeyChecking accept-new/g)).toHaveLength(2);
    expect(text).not.toContain('/dev/null');
  });

  it('is read by real ssh as intended, hostile names included', async () => {
    const list = HOSTILE.filter((n) => !/[\n\t]/.test(n)).map((name, i) => ({
      vm: name,
      host: i % 2 ? `fe80::5054:ff:fe12:${(0x3400 + i).toString(16)}%bridge100` : `192.168.64.${i + 2}`,
      // A user ssh takes, that an ssh config must quote (spaces, #, =).
      user: 'user with spaces # and =x',
      port: 2200 + i,
      identityFile: path.join(tmp, `keys of ${name.replace(/\//g, '_')}`, 'id'),
    }));
    const file = path.join(tmp, 'state dir', 'ssh_config');
    await writeSshConfig(file, entries(list), tmp);
    const aliases = sshHostAliases(list.map((e) => e.vm));
    for (const [i, e] of list.entries()) {
      const got = await sshResolve(['-F', file, aliases[i]!]);
      expect(got.get('hostname'), e.vm).toBe(e.host);
      expect(got.get('user'), e.vm).toBe(e.user);
      expect(got.get('port'), e.vm).toBe(String(e.port));
      expect(got.get('stricthostkeychecking')).toBe('accept-new');
    }
  });

  // Issue 16: one VM's bad value (a port out of range, a user with a newline) left the whole file empty.
  it('leaves out only the entry whose values an ssh config cannot hold, naming that VM', () => {
    const { text, skipped } = renderSshConfigChecked(
      entries([
        { vm: 'web', host: '192.168.64.3', user: 'alice', port: 22 },
        { vm: 'bad-port', host: '192.168.64.4', user: 'alice', port: 70000 },
        { vm: 'bad-user', host: '192.168.64.5', user: 'a\nHost evil', port: 22 },
        { vm: 'db', host: '192.168.64.6', user: 'root', port: 2222 },
      ]),
    );
    expect(text).toContain('Host nixvm-web\n');
    expect(text).toContain('Host nixvm-db\n');
    expect(text).not.toContain('nixvm-bad');
    expect(text).not.toContain('evil');
    expect(skipped).toEqual([
      expect.stringMatching(/^nixvm's ssh config has no entry for VM "bad-port": the ssh port 70000 is out of range/),
      expect.stringMatching(/^nixvm's ssh config has no entry for VM "bad-user": .*control characters/),
    ]);
    expect(renderSshConfig(entries([{ vm: 'x', host: 'h', user: 'a\nHost evil', port: 22 }]))).not.toContain(
      'Host evil',
    );
  });

  it('writes atomically into its own file with mode 0600, leaving no temp files', async () => {
    const dir = path.join(tmp, 'atomic');
    const file = sshConfigPath(dir);
    await writeSshConfig(file, entries([{ vm: 'a', host: '10.0.0.1', user: 'u', port: 22 }]), tmp);
    const before = await stat(file);
    expect(before.mode & 0o777).toBe(0o600);
    await writeSshConfig(file, entries([{ vm: 'b', host: '10.0.0.2', user: 'u', port: 22 }]), tmp);
    const after = await stat(file);
    expect(after.ino).not.toBe(before.ino); // replaced by rename, never rewritten in place
    expect(await readFile(file, 'utf8')).toContain('Host nixvm-b');
    // A bad entry is left out, named; the others are written.
    const skipped = await writeSshConfig(
      file,
      entries([
        { vm: 'c', host: '-x', user: 'u', port: 22 },
        { vm: 'b', host: '10.0.0.2', user: 'u', port: 22 },
      ]),
      tmp,
    );
    expect(skipped).toEqual([expect.stringContaining('no entry for VM "c"')]);
    expect(await readFile(file, 'utf8')).toContain('Host nixvm-b');
    expect(await readFile(file, 'utf8')).not.toContain('nixvm-c');
    expect(await readdir(dir)).toEqual(['ssh_config']);
  });

  it('never writes the user’s ~/.ssh/config, even through a symlink', async () => {
    const home = path.join(tmp, 'home-guard');
    await mkdir(path.join(home, '.ssh'), { recursive: true });
    await writeFile(userSshConfigPath(home), 'Host mine\n');
    await expect(writeSshConfig(userSshConfigPath(home), entries([]), home)).rejects.toThrow(
      /does not write .*your own ssh config/,
    );
    await symlink(userSshConfigPath(home), path.join(home, 'link'));
    await expect(writeSshConfig(path.join(home, 'link'), [], home)).rejects.toThrow(SshTargetError);
    expect(await readFile(userSshConfigPath(home), 'utf8')).toBe('Host mine\n');
  });
});

describe('the Include nixvm offers', () => {
  let home: string;
  let ours: string;
  let userConfig: string;
  beforeAll(async () => {
    home = path.join(tmp, 'home');
    await mkdir(path.join(home, '.ssh', 'config.d'), { recursive: true });
    ours = path.join(home, 'Library', 'Application Support', 'NixVM', 'ssh_config');
    await writeSshConfig(ours, entries([{ vm: 'web', host: '192.168.64.3', user: 'alice', port: 2222 }]), home);
    userConfig = userSshConfigPath(home);
  });

  it('quotes a path with spaces, and real ssh follows it', async () => {
    expect(includeLine(ours)).toBe(`Include "${ours}"`);
    expect(includeLine('/plain/path')).toBe('Include /plain/path');
    await writeFile(userConfig, `${includeLine(ours)}\n\nHost other\n  User bob\n`);
    const got = await sshResolve(['-F', userConfig, 'nixvm-web']);
    expect(got.get('hostname')).toBe('192.168.64.3');
    expect(got.get('port')).toBe('2222');
    expect(await sshConfigIncludes(userConfig, ours, home)).toBe('included');
  });

  it('recognises the ways people write it', async () => {
    const rel = path.relative(path.join(home, '.ssh'), ours);
    const cases: [string, string][] = [
      [`include = "${ours}"\n`, 'included'],
      [`Include "~/${path.relative(home, ours)}"\n`, 'included'],
      [`Include "${rel}"\n`, 'included'],
      [`Include /etc/nothing "${ours}"\n`, 'included'],
      [`Host *\n  Include "${ours}"\n`, 'included'],
      [`Match all\n  Include "${ours}"\n`, 'included'],
      [`Host *\n  User x\n`, 'not-included'],
      [`# Include "${ours}"\n`, 'not-included'],
      // Inside a block for one host, the aliases would not resolve for nixvm-*.
      [`Host devbox\n  Include "${ours}"\n`, 'not-included'],
      ['', 'not-included'],
    ];
    for (const [text, want] of cases) {
      await writeFile(userConfig, text);
      expect(await sshConfigIncludes(userConfig, ours, home), text).toBe(want);
    }
  });

  it('follows Includes of Includes, globs included', async () => {
    await writeFile(path.join(home, '.ssh', 'config.d', '50-nixvm'), `Include "${ours}"\n`);
    await writeFile(userConfig, 'Include config.d/*\nHost x\n  User y\n');
    expect(await sshConfigIncludes(userConfig, ours, home)).toBe('included');
    await rm(path.join(home, '.ssh', 'config.d', '50-nixvm'));
    expect(await sshConfigIncludes(userConfig, ours, home)).toBe('not-included');
    // Self-inclusion loops terminate.
    await writeFile(userConfig, 'Include config\n');
    expect(await sshConfigIncludes(userConfig, ours, home)).toBe('not-included');
  });

  it('says missing or unreadable, and only ever reads (a read-only file stays untouched)', async () => {
    expect(await sshConfigIncludes(path.join(home, 'nope', 'config'), ours, home)).toBe('missing');
    expect(await sshConfigIncludes(path.join(home, '.ssh', 'config.d'), ours, home)).toBe('unreadable');
    await writeFile(userConfig, 'Host a\n  User b\n');
    await chmod(userConfig, 0o444);
    const before = await stat(userConfig);
    expect(await sshConfigIncludes(userConfig, ours, home)).toBe('not-included');
    const after = await stat(userConfig);
    expect([after.mtimeMs, after.size, after.mode]).toEqual([before.mtimeMs, before.size, before.mode]);
    if (process.getuid?.() !== 0) {
      await chmod(userConfig, 0o000);
      expect(await sshConfigIncludes(userConfig, ours, home)).toBe('unreadable');
    } else {
      // Root reads a mode-000 file: the check means nothing here, and says so.
      console.log('net-ssh.test.ts: the unreadable-config check is skipped: root reads a mode-000 file');
    }
    await chmod(userConfig, 0o644);
  });
});
