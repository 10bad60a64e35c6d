/**
 * Hostile VM names, users and state folders through every ssh path nixvm writes: the ssh config's
 * Host block and its ProxyCommand, the argv `nixvm ssh` runs and the `.command` file Terminal opens.
 * Real OpenSSH (`ssh -G`) reads what nixvm wrote; a real /bin/sh runs the ProxyCommand words and
 * the `.command` file's line, printing the arguments it got, so nothing is split, expanded or run.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SshDestination } from '../../src/api/types.ts';
import { commandFileBody } from '../../src/app/actions.ts';
import {
  checkSshDestination,
  proxyArgv,
  renderSshConfigChecked,
  sshArgv,
  sshHostAliases,
  sshTargetFor,
  SshTargetError,
  writeSshConfig,
  type SshConfigEntry,
} from '../../src/core/net/ssh.ts';
import { placeRuntimePaths } from '../../src/core/vm/runtime-paths.ts';
import { run } from '../../src/host/runner.ts';

const NAMES = [
  'web server',
  "o'brien",
  '100% "quoted"',
  'new\nline',
  '-oProxyCommand=touch pwned',
  '$(touch pwned)',
  '`touch pwned`',
  'Host * #',
];
const NIXVM = ['/opt/my node/bin/node', "/Users/o'brien/nix vm/bin/nixvm.js"];

let tmp: string;
let state: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'nixvm ssh-hostile-'));
  // A state folder with the characters a shell or ssh would read: spaces, %, a quote, $.
  state = path.join(tmp, "Application Support 100% o'brien $HOME");
  await mkdir(state, { recursive: true });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function destination(vm: string, alias: string): SshDestination {
  const p = placeRuntimePaths(state, path.join(tmp, 'logs'), vm, { tmpdir: tmp }).paths;
  return {
    alias,
    user: 'root',
    port: 22,
    host: '192.168.64.9',
    ipv4: '192.168.64.9',
    ipv6: 'fe80::1%bridge100',
    vsock: p.sshSocket ?? null,
    identityFile: path.join(p.dir, 'keys', 'nixvm_ed25519'),
    knownHostsFile: path.join(p.dir, 'known_hosts'),
    strictHostKeyChecking: 'accept-new',
  };
}

/** What ssh -G resolves (no connection). */
async function resolve(args: string[]): Promise<Map<string, string>> {
  const r = await run(['ssh', '-G', ...args]);
  return new Map(r.stdout.split('\n').map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]));
}

/** The words /bin/sh makes of a command line (ssh runs a ProxyCommand through the shell). */
async function shellWords(line: string, cwd: string): Promise<string[]> {
  const r = await run(['/bin/sh', '-c', `set -- ${line}; printf '%s\\0' "$@"`], { cwd });
  return r.stdout.split('\0').slice(0, -1);
}

describe('hostile names and folders in what nixvm hands ssh', () => {
  it('the ssh config: one Host per VM, the ProxyCommand exactly nixvm proxy on its socket', async () => {
    const aliases = sshHostAliases(NAMES);
    for (const a of aliases) expect(a).toMatch(/^nixvm-[a-z0-9._-]+$/);
    const entries: SshConfigEntry[] = NAMES.map((vm, i) => ({
      vm,
      alias: aliases[i]!,
      target: sshTargetFor(destination(vm, aliases[i]!), { nixvm: NIXVM, route: 'vsock' }),
    }));
    const file = path.join(state, 'ssh_config');
    expect(await writeSshConfig(file, entries, tmp)).toEqual([]);
    const cwd = path.join(tmp, 'cwd');
    await mkdir(cwd, { recursive: true });
    for (const [i, vm] of NAMES.entries()) {
      const d = destination(vm, aliases[i]!);
      const got = await resolve(['-F', file, aliases[i]!]);
      expect(got.get('hostkeyalias'), vm).toBe(aliases[i]);
      expect(got.get('user'), vm).toBe('root');
      // %% is ssh's literal %, which it turns back before the shell sees the line.
      const line = got.get('proxycommand')!.replace(/%%/g, '%');
      expect(await shellWords(line, cwd), vm).toEqual(proxyArgv(NIXVM, d.vsock!));
    }
    expect(await readdir(cwd)).toEqual([]);
  });

  it('the argv nixvm ssh runs, and the .command file Terminal opens, keep every value one argument', async () => {
    const cwd = path.join(tmp, 'cwd2');
    await mkdir(cwd, { recursive: true });
    for (const [i, vm] of NAMES.entries()) {
      const alias = sshHostAliases(NAMES)[i]!;
      const d = destination(vm, alias);
      await mkdir(path.dirname(d.identityFile!), { recursive: true });
      await writeFile(d.identityFile!, '');
      for (const route of ['vsock', 'ipv4', 'ipv6'] as const) {
        const argv = sshArgv(sshTargetFor(d, { nixvm: NIXVM, route }));
        const got = await resolve(['-F', '/dev/null', ...argv.slice(1)]);
        expect(got.get('userknownhostsfile'), `${vm} ${route}`).toBe(d.knownHostsFile);
        expect(got.get('hostname'), `${vm} ${route}`).toBe(
          route === 'vsock' ? alias : route === 'ipv4' ? d.ipv4 : d.ipv6,
        );
        // The .command file's exec line is this argv, word for word.
        const body = commandFileBody(argv);
        const exec = body.split('\n').find((l) => l.startsWith('exec '))!;
        expect(await shellWords(exec.slice(5), cwd), `${vm} ${route}`).toEqual(argv);
      }
    }
    expect(await readdir(cwd)).toEqual([]);
  });

  // A user with `%` or `${` has no spelling that means one thing to every OpenSSH: the 2025
  // releases expand %-tokens and ${VAR} in User, -l and user@host, while earlier ones (this
  // machine's 9.2 among them) keep `%%` as two characters. A leading `-` reads as an option where
  // the user starts an argument; shell characters OpenSSH refuses on its own command line.
  const REFUSED_USERS = [
    '100%h',
    'a%%b',
    '${HOME}',
    'pre${USER}post',
    '-oProxyCommand=touch pwned',
    'x -oProxyCommand=id',
    "o'brien",
    'semi;colon',
    '`id`',
    '$(id)',
    'trailing\\',
  ];

  it('refuses a user ssh would expand or misread, in one sentence, in the argv, the config and the destination', () => {
    const d = destination('web', 'nixvm-web');
    for (const user of REFUSED_USERS) {
      for (const route of ['vsock', 'ipv4'] as const) {
        let err: unknown = null;
        try {
          sshArgv(sshTargetFor({ ...d, user }, { nixvm: NIXVM, route }));
        } catch (e) {
          err = e;
        }
        expect(err, `${user} ${route}: ran`).toBeInstanceOf(SshTargetError);
        const msg = (err as Error).message;
        expect(msg, user).toMatch(
          /^The ssh user ".+" cannot be handed to ssh: [^.]+; set a plain user name for this VM/,
        );
        expect(msg.split('. ').length, `${user}: one sentence`).toBe(1);
      }
      // The ssh config leaves that VM out, says why, and keeps the others.
      const { text, skipped } = renderSshConfigChecked([
        { vm: 'bad', alias: 'nixvm-bad', target: sshTargetFor({ ...d, user }, { nixvm: NIXVM, route: 'ipv4' }) },
        { vm: 'web', alias: 'nixvm-web', target: sshTargetFor(d, { nixvm: NIXVM, route: 'ipv4' }) },
      ]);
      expect(text, user).not.toContain('Host nixvm-bad');
      expect(text, user).toContain('Host nixvm-web');
      expect(skipped, user).toHaveLength(1);
      expect(skipped[0], user).toContain(`nixvm's ssh config has no entry for VM "bad": the ssh user`);
      // What the agent names is checked by the faces the same way, naming the VM and the fix.
      expect(() => checkSshDestination('web', { ...d, user }), user).toThrow(
        /^The ssh user ".+" of VM "web" cannot be handed to ssh: .+; set a plain one with `nixvm config set sshUser\.web NAME`\.$/,
      );
    }
    expect(() => checkSshDestination('my vm', { ...d, user: '%u' })).toThrow(
      "set a plain one with `nixvm config set 'sshUser.my vm' NAME`.",
    );
  });

  it('hands an odd but safe user to real ssh unchanged, on the command line and through the config', async () => {
    const users = ['my user', 'a#b=c', 'first.last-1_x', 'alice@EXAMPLE.ORG', 'a$b', 'a!b'];
    const d = destination('web', 'nixvm-web');
    const entries: SshConfigEntry[] = users.map((user, i) => ({
      vm: `vm${i}`,
      alias: `nixvm-vm${i}`,
      target: sshTargetFor({ ...d, alias: `nixvm-vm${i}`, user }, { nixvm: NIXVM, route: 'ipv4' }),
    }));
    const file = path.join(state, 'ssh_config_users');
    expect(await writeSshConfig(file, entries, tmp)).toEqual([]);
    for (const [i, user] of users.entries()) {
      const argv = sshArgv(sshTargetFor({ ...d, user }, { nixvm: NIXVM, route: 'ipv4' }));
      expect((await resolve(['-F', '/dev/null', ...argv.slice(1)])).get('user'), `${user} (-l)`).toBe(user);
      expect((await resolve(['-F', file, `nixvm-vm${i}`])).get('user'), `${user} (config)`).toBe(user);
    }
  });
});
