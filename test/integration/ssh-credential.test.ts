/**
 * nixvm's key delivered as the systemd credential `ssh.authorized_keys.root` on the kernel command
 * line, to a guest without a $KEYS share whose tmpfiles write that credential to root's
 * authorized_keys (upstream's provision.conf rule). On by default exactly where the guest has the
 * rule; the per-VM setting turns it on or off. The simulated guest decodes the credential from
 * its command line as systemd does, and a real `sshd -i` checks the key.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSshDestination, sshArgv, sshTargetFor } from '../../src/core/net/ssh.ts';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { rootOnly } from '../helpers/users.ts';

const BIN = fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url));
const root =
  rootOnly(
    'ssh-credential.test.ts',
    'real ssh in as root with the credential',
    'sshd -i runs as the user running the tests and logs root in only when that is root',
  ) === null;

let t: TestAgent;
beforeAll(async () => {
  if (root) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  t = await createTestAgent({ fixture: 'ssh-credential', agent: { nixvmCommand: [process.execPath, BIN] } });
}, 120_000);
afterAll(async () => {
  await t?.dispose();
});

const credential = (argv: string[]) =>
  argv
    .find((a) => a.startsWith('linux,'))
    ?.match(/systemd\.set_credential_binary=ssh\.authorized_keys\.root:([A-Za-z0-9+/=]+)/)?.[1];

describe("nixvm's key as a systemd credential", () => {
  it('is on where the guest writes the credential to root, off elsewhere', async () => {
    expect(t.agent.snapshot().vms.find((v) => v.name === 'cred')?.spec?.ssh.keyCredential).toBe(true);
    expect(t.agent.snapshot().vms.find((v) => v.name === 'plain')?.spec?.ssh.keyCredential).toBe(false);
    await t.agent.call('start', { vm: 'cred' });
    const booted = (await t.agent.call('inspect', { vm: 'cred' })).argv;
    const b64 = credential(booted);
    // The public key only, exactly the one nixvm made for the VM.
    const pub = fs.readFileSync(path.join(t.root, 'state', 'vms', 'cred', 'keys', 'nixvm_ed25519.pub'), 'utf8');
    expect(Buffer.from(b64 ?? '', 'base64').toString('utf8')).toBe(pub);
    expect(booted.join(' ')).not.toContain('PRIVATE KEY');
    expect(credential((await t.agent.call('inspect', { vm: 'plain' })).argv)).toBeUndefined();
  }, 120_000);

  it.skipIf(!root)(
    'lets real ssh in as root with that key over vsock',
    async () => {
      await t.waitFor((s) => s.vms.some((v) => v.name === 'cred' && v.sshCommand?.includes('ProxyCommand') === true));
      const { target } = await t.agent.call('sshCommand', { vm: 'cred' });
      const d = checkSshDestination('cred', target);
      expect(d.user).toBe('root');
      const argv = sshArgv(sshTargetFor(d, { nixvm: [process.execPath, BIN], route: 'vsock' }));
      const r = await execa(argv[0]!, [...argv.slice(1), 'echo', 'credential-ok'], {
        reject: false,
        timeout: 60_000,
        stdin: 'ignore',
      });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe('credential-ok');
    },
    120_000,
  );

  it('follows the per-VM setting, and a changed setting marks the running VM stale', async () => {
    await t.agent.call('setSettings', { sshKeyCredential: { plain: true, cred: false } });
    expect(credential((await t.agent.call('inspect', { vm: 'plain' })).argv)).toBeUndefined(); // no key made yet
    await t.agent.call('start', { vm: 'plain' });
    expect(credential((await t.agent.call('inspect', { vm: 'plain' })).argv)).toBeDefined();
    expect(credential((await t.agent.call('inspect', { vm: 'cred' })).argv)).toBeUndefined();
    await t.waitFor((s) => s.vms.some((v) => v.name === 'cred' && v.stale));
  }, 120_000);
});

// A test of the refusal the settings give a value that is not a boolean.
describe('the sshKeyCredential setting', () => {
  it('takes only booleans per VM', async () => {
    await expect(t.agent.call('setSettings', { sshKeyCredential: { cred: 'yes' as never } })).rejects.toMatchObject({
      code: 'bad-request',
    });
    expect(os.EOL).toBe('\n');
  });
});
