/**
 * Hostile VM names and state folders through every ssh path nixvm writes: the ssh config's Host
 * block and its ProxyCommand, the argv `nixvm ssh` runs and the `.command` file Terminal opens.
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
  proxyArgv,
  sshArgv,
  sshHostAliases,
  sshTargetFor,
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
});
