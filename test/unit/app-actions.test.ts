import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { shellWord as shellQuote } from '../../src/host/shell.ts';
import {
  commandFileBody,
  commandFilePath,
  createUiHandlers,
  type UiHost,
  consoleAppArgv,
  ipClipboardText,
  terminalOpenArgv,
} from '../../src/app/actions.ts';
import type { AgentPort, AgentSnapshot } from '../../src/api/types.ts';
import { AgentError } from '../../src/api/errors.ts';
import { flake as flakeSnap, settings, snapshot, vm } from './snapshot-factory.ts';

const NASTY = [
  'plain',
  'two words',
  "it's",
  '"dq"',
  '$HOME',
  '`id`',
  '$(id)',
  'a;b',
  'x\ny',
  '*',
  '~',
  '',
  '-o',
  'StrictHostKeyChecking=no',
  'ümlaut',
];

describe('shell quoting for the .command file', () => {
  it('every argument survives /bin/sh as exactly one argument', () => {
    const script = `printf '%s\\0' ${NASTY.map(shellQuote).join(' ')}`;
    const r = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.split('\0').slice(0, -1)).toEqual(NASTY);
  });

  it('leaves plain words readable', () => {
    expect(shellQuote('alice@192.168.64.7')).toBe('alice@192.168.64.7');
    expect(shellQuote('fe80::1%bridge100')).toBe('fe80::1%bridge100');
    expect(shellQuote('two words')).toBe("'two words'");
  });
});

describe('the .command file', () => {
  it('is a shell script that execs the exact argv', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nixvm-cmd-'));
    const file = path.join(dir, 'ssh.command');
    writeFileSync(file, commandFileBody(['printf', '%s|', ...NASTY]));
    chmodSync(file, 0o755);
    const r = spawnSync(file, { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(NASTY.map((a) => `${a}|`).join(''));
    rmSync(dir, { recursive: true });
  });

  it('lives in the VM state folder and is opened with open -a, Terminal by default', () => {
    expect(commandFilePath({ stateDir: '/s/web' })).toBe('/s/web/ssh.command');
    expect(terminalOpenArgv('', '/s/web/ssh.command')).toEqual(['open', '-a', 'Terminal', '/s/web/ssh.command']);
    expect(terminalOpenArgv('iTerm', '/f')).toEqual(['open', '-a', 'iTerm', '/f']);
    expect(consoleAppArgv('/l/console.log')).toEqual(['open', '-a', 'Console', '/l/console.log']);
  });
});

describe('Copy IP', () => {
  it('copies the requested family', () => {
    const v = { name: 'web', ipv6: 'fe80::1%bridge100', ipv4: '192.168.64.3' };
    expect(ipClipboardText(v, 'ipv6')).toBe('fe80::1%bridge100');
    expect(ipClipboardText(v, 'ipv4')).toBe('192.168.64.3');
  });

  it('says why there is no address instead of copying nothing', () => {
    const v = { name: 'web', ipv6: 'fe80::1%bridge100', ipv4: null };
    expect(() => ipClipboardText(v, 'ipv4')).toThrow(/"web" has no IPv4 address yet \(no DHCP lease\)/);
    const err = (() => {
      try {
        ipClipboardText({ ...v, ipv6: null }, 'ipv6');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).code).toBe('not-running');
  });
});

describe('Open Flake Folder', () => {
  // A minimal port: only the snapshot the verb reads.
  const port = (snap: AgentSnapshot): AgentPort => ({
    call: (async (method: string) => {
      if (method !== 'snapshot') throw new Error(`unexpected ${method}`);
      return snap;
    }) as AgentPort['call'],
    subscribe: () => () => {},
    attachConsole: () => Promise.reject(new Error('no console here')),
  });
  const host = (opened: string[]): UiHost =>
    ({ openFolder: async (d: string) => void opened.push(d) }) as unknown as UiHost;

  it("opens the agent's flake (also one a headless daemon got with --flake) and refuses any other path", async () => {
    const opened: string[] = [];
    // settings.flakes is empty: the agent runs /flakes/demo because it was given --flake.
    const snap = snapshot([vm({ flake: '/flakes/demo' })], {
      flakes: [flakeSnap({ dir: '/flakes/demo', evaluating: false, error: null, warnings: [], lastEvalAt: 1 })],
      settings: settings({ flakes: [] }),
    });
    const ui = createUiHandlers(port(snap), host(opened));
    await ui.openFlakeFolder({});
    await ui.openFlakeFolder({ dir: '/flakes/demo' });
    // shell.openPath runs apps and .command files: a page must not be able to ask for those.
    await expect(ui.openFlakeFolder({ dir: '/state/vms/web/ssh.command' })).rejects.toThrow(
      /not one of NixVM's flake folders/,
    );
    expect(opened).toEqual(['/flakes/demo', '/flakes/demo']);
  });

  // Issue 16 (Electron): openPath opens, and opening an application bundle runs it.
  it('refuses to open a flake folder that is an application bundle', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-bundle-'));
    try {
      const named = path.join(root, 'Evil.app');
      const shaped = path.join(root, 'looks-plain');
      fs.mkdirSync(path.join(shaped, 'Contents'), { recursive: true });
      fs.writeFileSync(path.join(shaped, 'Contents', 'Info.plist'), '<plist/>');
      fs.mkdirSync(named);
      const opened: string[] = [];
      for (const dir of [named, `${named}/`, shaped]) {
        const snap = snapshot([vm({ flake: dir })], {
          flakes: [flakeSnap({ dir })],
          settings: settings({ flakes: [dir] }),
        });
        const ui = createUiHandlers(port(snap), host(opened));
        await expect(ui.openFlakeFolder({ dir }), dir).rejects.toMatchObject({
          code: 'bad-request',
          message: `${dir} is an application bundle, which opening would run; NixVM only opens plain folders (show it in Finder instead).`,
        });
        await expect(ui.openFlakeFolder({})).rejects.toThrow(/application bundle/);
      }
      expect(opened).toEqual([]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('Open Serial Console in Terminal', () => {
  it('writes console.command that runs `nixvm console -- <vm>`, any VM name as one argument', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nixvm-console-cmd-'));
    try {
      // A stand-in for the CLI: prints its arguments, one per line.
      const stub = path.join(dir, 'nixvm stub');
      writeFileSync(stub, '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n');
      chmodSync(stub, 0o755);
      for (const name of ['minimal-vm', '-oProxyCommand=id', "it's $(id) `id`"]) {
        const snap = snapshot([vm({ name, stateDir: dir })], { settings: settings({ terminalApp: '' }) });
        const port: AgentPort = {
          call: (async () => snap) as AgentPort['call'],
          subscribe: () => () => {},
          attachConsole: () => Promise.reject(new Error('not here')),
        };
        const opened: Array<{ file: string; body: string; app: string }> = [];
        const host = {
          nixvmCommand: () => [stub],
          openTerminal: async (file: string, body: string, app: string) => {
            writeFileSync(file, body);
            chmodSync(file, 0o755);
            opened.push({ file, body, app });
          },
        } as unknown as UiHost;
        const r = await createUiHandlers(port, host).openConsoleInTerminal({ vm: name });
        expect(r.file).toBe(path.join(dir, 'console.command'));
        const out = spawnSync(r.file, { encoding: 'utf8' });
        expect(out.status, out.stderr).toBe(0);
        expect(out.stdout.split('\n').slice(0, -1)).toEqual(['console', '--', name]);
        expect(opened[0]!.body).toContain('# Written by NixVM for "Open Serial Console in Terminal"');
      }
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
