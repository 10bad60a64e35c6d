/**
 * nixvm's ssh config under bad values and stopped VMs (issue 16): one VM with a port out of range
 * or a user name with a newline emptied the whole file, `ssh-command` for it said "no address yet",
 * and VMs that were not running kept their aliases, unlike the README. Also: a FIFO where
 * ~/.ssh/config is hung the agent's start.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { waitFor } from '../helpers/wait.ts';

let t: TestAgent | null = null;
const dirs: string[] = [];
afterEach(async () => {
  await t?.dispose();
  t = null;
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function hosts(file: string): string[] {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  return [...text.matchAll(/^Host (\S+)$/gm)].map((m) => m[1]!);
}

describe("nixvm's ssh config", () => {
  it('leaves out only the VM whose ssh values it cannot hold, says which and why, and lists only running VMs', async () => {
    t = await createTestAgent({ fixture: 'bad-ssh' });
    const file = t.agent.snapshot().agent.sshConfig.path;
    for (const vm of ['bad-port', 'bad-user', 'good'])
      expect((await t.agent.call('start', { vm })).state).toBe('running');
    await waitFor(() => hosts(file).length === 1 && t!.agent.snapshot().agent.problems.length === 2, {
      what: 'the ssh config to be written without the two bad VMs',
      detail: () => `${hosts(file).join(', ')} / ${t!.agent.snapshot().agent.problems.join(' / ')}`,
    });
    expect(hosts(file)).toEqual(['nixvm-good']);
    expect(t.agent.snapshot().agent.problems).toEqual([
      'nixvm\'s ssh config has no entry for VM "bad-port": the ssh port 70000 is out of range; use a port between 1 and 65535.',
      expect.stringMatching(/^nixvm's ssh config has no entry for VM "bad-user": the ssh user "alice\\nHost evil"/),
    ]);
    expect(fs.readFileSync(file, 'utf8')).not.toContain('Host evil');
    // And `ssh-command` says what is wrong, not "no address yet".
    await expect(t.agent.call('sshCommand', { vm: 'bad-port' })).rejects.toMatchObject({
      code: 'failed',
      message: 'Cannot ssh into "bad-port": the ssh port 70000 is out of range; use a port between 1 and 65535.',
    });
    // A VM that stops loses its alias.
    await t.agent.call('stop', { vm: 'good' });
    await waitFor(() => hosts(file).length === 0, {
      what: 'the stopped VM’s alias to go',
      detail: () => hosts(file).join(', '),
    });
  });

  it('never opens a FIFO where ~/.ssh/config (or a file it includes) should be', async () => {
    const home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-fifo-home-')));
    dirs.push(home);
    fs.mkdirSync(path.join(home, '.ssh'));
    execFileSync('mkfifo', [path.join(home, '.ssh', 'config')]);
    const saved = process.env.HOME;
    process.env.HOME = home;
    try {
      // The agent's start reads ~/.ssh/config: with a FIFO there it used to wait forever.
      t = await createTestAgent();
      expect(t.agent.snapshot().agent.sshConfig.status).toBe('unreadable');
    } finally {
      process.env.HOME = saved;
    }
    // An Include of a FIFO: skipped, the rest still read.
    fs.rmSync(path.join(home, '.ssh', 'config'));
    execFileSync('mkfifo', [path.join(home, '.ssh', 'fifo')]);
    const ours = t.agent.snapshot().agent.sshConfig;
    fs.writeFileSync(path.join(home, '.ssh', 'config'), `Include fifo\n${ours.includeLine}\n`);
    const { sshConfigIncludes } = await import('../../src/core/net/ssh.ts');
    expect(await sshConfigIncludes(path.join(home, '.ssh', 'config'), ours.path, home)).toBe('included');
  });
});
