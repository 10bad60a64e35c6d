/**
 * Shell completion: what `nixvm __complete` answers, and the scripts `nixvm completion <shell>`
 * prints, run by real bash, zsh and fish against the real `nixvm` (bin/nixvm.js) and an agent
 * port served on a real control socket (for the VM names).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram, Session } from '../../src/cli/app.ts';
import { completionScript, completions } from '../../src/cli/completion.ts';
import { defaultIo } from '../../src/cli/default-io.ts';
import { startControlServer } from '../../src/control/server.ts';
import { controlSocketPath } from '../../src/host/socket-path.ts';
import { FakePort, agentSnapshot, vmSnapshot } from '../helpers/fake-port.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));
const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-complete-')));
const env = { ...process.env, NIXVM_STATE_DIR: root, HOME: root };
let server: { close(): Promise<void> };

beforeAll(async () => {
  const port = new FakePort(agentSnapshot([vmSnapshot({ name: 'minimal-vm' }), vmSnapshot({ name: 'builder-vm' })]));
  fs.mkdirSync(path.join(root, 'state'), { recursive: true, mode: 0o700 });
  server = await startControlServer(port, controlSocketPath(path.join(root, 'state')));
  fs.mkdirSync(path.join(root, 'flakes', 'my-vms'), { recursive: true });
});
afterAll(async () => {
  await server.close();
  fs.rmSync(root, { recursive: true, force: true });
});

function program(): Command {
  return buildProgram(new Session(defaultIo()), () => {});
}

describe('nixvm __complete', () => {
  const src = { vmNames: async () => ['minimal-vm', 'builder-vm'], cwd: root };
  it('completes commands, options, choices, VM names, setting keys and folders', async () => {
    const p = program();
    expect(await completions(p, ['st'], src)).toEqual(['start', 'status', 'stop']);
    expect(await completions(p, ['start', ''], src)).toEqual(['builder-vm', 'minimal-vm']);
    // A VM already named is not offered again; commands of one VM stop after it.
    expect(await completions(p, ['start', 'minimal-vm', ''], src)).toEqual(['builder-vm']);
    expect(await completions(p, ['logs', 'minimal-vm', ''], src)).toEqual([]);
    expect(await completions(p, ['logs', '--f'], src)).toEqual(['--follow']);
    expect(await completions(p, ['start', '--'], src)).toEqual(['--all', '--help', '--json']);
    expect(await completions(p, ['login-item', ''], src)).toEqual(['off', 'on', 'status']);
    expect(await completions(p, ['completion', ''], src)).toEqual(['bash', 'fish', 'zsh']);
    expect(await completions(p, ['config', 'set', 'auto'], src)).toEqual(['autoRebuild', 'autostart']);
    expect(await completions(p, ['config', 'set', 'autoRebuild', ''], src)).toEqual([
      'apply',
      'build',
      'off',
      'restart',
    ]);
    expect(await completions(p, ['flake', 'add', 'flakes/'], src)).toEqual(['flakes/my-vms/']);
    expect(await completions(p, ['flake', ''], src)).toEqual(['add', 'default', 'exclude', 'include', 'ls', 'remove']);
    // Hidden commands are not offered.
    expect(await completions(p, ['__'], src)).toEqual([]);
  });
});

/** Asynchronously: the agent port answering the completions lives in this process. */
async function shell(program: string, args: string[]): Promise<string> {
  return (await promisify(execFile)(program, args, { env, cwd: root, encoding: 'utf8', timeout: 60_000 })).stdout;
}

describe('the completion scripts in real shells', () => {
  const script = async (sh: 'bash' | 'zsh' | 'fish'): Promise<string> => {
    const file = path.join(root, `nixvm.${sh}`);
    // Exactly what `nixvm completion <shell>` prints, from the real command.
    fs.writeFileSync(file, await shell(process.execPath, [BIN, 'completion', sh]));
    return file;
  };

  it('prints the script with this nixvm in it', () => {
    expect(completionScript('bash', ['/n/node', '/r/bin/nixvm.js'])).toContain('/n/node /r/bin/nixvm.js __complete');
  });

  it('bash: commands, then VM names from the running agent', async () => {
    const file = await script('bash');
    const complete = (words: string) =>
      shell('bash', [
        '-c',
        `source ${file}; COMP_WORDS=(${words}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _nixvm; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ]);
    expect((await complete('nixvm st')).trim().split('\n')).toEqual(['start', 'status', 'stop']);
    expect((await complete("nixvm start ''")).trim().split('\n')).toEqual(['builder-vm', 'minimal-vm']);
  });

  it('zsh: the same, through compadd', async () => {
    const file = await script('zsh');
    // compadd is zsh's completion builtin; here it prints what it was given.
    const stub =
      'compadd() { while [[ $1 == -* && $1 != -- ]]; do [[ $1 == -S ]] && shift; shift; done; [[ $1 == -- ]] && shift; print -l -- "$@"; }';
    const complete = (words: string) =>
      shell('zsh', ['-f', '-c', `${stub}; source ${file}; words=(${words}); CURRENT=\${#words}; _nixvm`]);
    expect((await complete('nixvm st')).trim().split('\n')).toEqual(['start', 'status', 'stop']);
    expect((await complete("nixvm ssh ''")).trim().split('\n')).toEqual(['builder-vm', 'minimal-vm']);
  });

  it('fish: the same, through complete -C', async () => {
    const file = await script('fish');
    const complete = (line: string) => shell('fish', ['--no-config', '-c', `source ${file}; complete -C '${line}'`]);
    expect((await complete('nixvm st')).trim().split('\n')).toEqual(['start', 'status', 'stop']);
    expect((await complete('nixvm logs ')).trim().split('\n')).toEqual(['builder-vm', 'minimal-vm']);
  });
});
