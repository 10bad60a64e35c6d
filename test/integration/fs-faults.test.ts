/**
 * File-system faults under a running agent (issue 16, Medium): a VM's state folder that became
 * read-only when the VM ends (EACCES/EROFS came out of the exit handler as an unhandled
 * rejection), a full disk when a VM starts (ENOSPC from writing the boot record). Every background
 * path catches, logs, shows one sentence, and carries on. A small tmpfs stands in for the full
 * disk and a read-only remount for the read-only folder (root; without root the read-only case
 * uses permissions and the full disk is skipped, saying why).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../helpers/agent.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { IS_ROOT, rootReason } from '../helpers/users.ts';
import { settles, waitFor } from '../helpers/wait.ts';

const noMount = rootReason('mounting a small tmpfs');
if (noMount) console.log(`fs-faults.test.ts: the full-disk test is ${noMount}`);

let t: TestAgent | null = null;
let flake: FlakeCopy | null = null;
const mounts: string[] = [];
const roots: string[] = [];

afterEach(async () => {
  // Read-only overmounts first (the agent's files are beneath them), the state roots last.
  for (const m of mounts.filter((m) => !roots.includes(m)).reverse()) {
    execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    mounts.splice(mounts.indexOf(m), 1);
  }
  if (t) {
    for (const d of fs.existsSync(path.join(t.root, 'state', 'vms'))
      ? fs.readdirSync(path.join(t.root, 'state', 'vms'))
      : []) {
      fs.chmodSync(path.join(t.root, 'state', 'vms', d), 0o700);
    }
    await t.dispose().catch(() => {});
    t = null;
  }
  for (const m of mounts.splice(0).reverse()) execFileSync('umount', ['-l', m], { stdio: 'ignore' });
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
  flake?.remove();
  flake = null;
});

/** A state root of its own: a tmpfs of `size` when we may mount one, else a plain folder. */
function stateRoot(size: string | null): string {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-fsfault-')));
  roots.push(root);
  if (size && IS_ROOT) {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', root]);
    mounts.push(root);
  }
  return root;
}

/** Watches for what must never happen: an error nobody caught. */
function uncaught(): { list: unknown[]; off(): void } {
  const list: unknown[] = [];
  const on = (e: unknown) => void list.push(e);
  process.on('unhandledRejection', on);
  process.on('uncaughtException', on);
  return {
    list,
    off() {
      process.off('unhandledRejection', on);
      process.off('uncaughtException', on);
    },
  };
}

describe('file-system faults', () => {
  it('a VM whose state folder became read-only ends without taking the agent down, and says what it could not clean up', async () => {
    const root = stateRoot(null);
    flake = await copyFixture('seed');
    t = await createTestAgent({ root, flake });
    const watch = uncaught();
    try {
      const vm = await t.agent.call('start', { vm: 'minimal-vm' });
      expect(vm.state).toBe('running');
      // Read-only: as root (who ignores permissions) an empty read-only tmpfs over the VM's
      // folder (vfkit keeps its files open in the one beneath); otherwise the folder's mode.
      if (IS_ROOT) {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', vm.stateDir]);
        mounts.push(vm.stateDir);
      } else fs.chmodSync(vm.stateDir, 0o500);
      process.kill(vm.pid!, 'SIGKILL');
      const snap = await t.waitFor(
        (s) => s.vms.find((v) => v.name === 'minimal-vm')?.state === 'crashed',
        undefined,
        'the VM to have ended',
      );
      const problems = snap.agent.problems.join('\n');
      // One sentence for the VM: the last of its files that could not be written.
      expect(problems).toMatch(
        IS_ROOT
          ? /^Could not write the boot record of VM "minimal-vm" \/\S+\/boot\.json: the file system is read-only; make it writable\.$/m
          : /^Could not write the boot record of VM "minimal-vm" \/\S+\/boot\.json: permission denied; check who owns it and its permissions\.$/m,
      );
      expect(problems).not.toMatch(/EROFS|EACCES/);
      // Still answering.
      expect((await t.agent.call('snapshot', {})).vms.length).toBe(2);
      expect(watch.list).toEqual([]);
    } finally {
      watch.off();
    }
  });

  it.skipIf(noMount !== null)('a full disk refuses a start with one sentence and leaves the agent up', async () => {
    const root = stateRoot('4m');
    flake = await copyFixture('seed');
    t = await createTestAgent({ root, flake });
    const watch = uncaught();
    try {
      // Fill what is left.
      const filler = path.join(root, 'filler');
      const fd = fs.openSync(filler, 'w');
      const chunk = Buffer.alloc(64 * 1024);
      try {
        for (;;) fs.writeSync(fd, chunk);
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        fs.closeSync(fd);
      }
      const err = await t.agent.call('start', { vm: 'minimal-vm' }).catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'failed',
        message: expect.stringMatching(
          /^Could not write the boot record of VM "minimal-vm" .*boot\.json: the disk is full; free some space\.$/,
        ),
      });
      expect((err as Error).message).not.toMatch(/ENOSPC/);
      await t.waitFor((s) => s.vms.find((v) => v.name === 'minimal-vm')?.state === 'stopped');
      expect(t.vm('minimal-vm').error).toMatch(/the disk is full/);
      // Room again: it starts.
      fs.rmSync(filler);
      expect((await t.agent.call('start', { vm: 'minimal-vm' })).state).toBe('running');
      await settles(
        waitFor(() => t!.vm('minimal-vm').error === null, { what: 'the error to clear' }),
        { what: 'the error to clear' },
      );
      expect(watch.list).toEqual([]);
    } finally {
      watch.off();
    }
  });
});
