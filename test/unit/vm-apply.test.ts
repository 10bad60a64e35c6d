/**
 * The Applier's switch in place with fakes for the agent's nouns and /bin/sh scripts standing in
 * for ssh and nix: a guest with no ssh route, a `nix copy` into a store-image guest that fails,
 * a switch that fails (its error ends with the last lines), and the output reaching the snapshot
 * line by line. None of them touches the VM: no stop, no restart, nothing marked switched.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import type { AgentError } from '../../src/api/errors.ts';
import type { ApplyOutcome } from '../../src/api/types.ts';
import { Applier, type ApplierOwners } from '../../src/core/vm-apply.ts';

const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-apply-')));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const OUT = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web';
const BUILT = { drvPath: `${OUT}.drv`, outPath: OUT };
const logDir = path.join(root, 'logs');
const marker = path.join(root, 'switched');
const applyLog = () => fs.readFileSync(path.join(logDir, 'apply.log'), 'utf8');

/** ssh stand-in: a shell running `script`; runSwitch's own arguments land in $0, $1, $2. */
const sh = (script: string) => ['/bin/sh', '-c', script, 'sh'];

interface Fakes {
  ssh: string[] | null;
  nixScript: string | null;
  marked: Array<{ drvPath: string; outPath: string }>;
  notices: string[];
  /** What the snapshot would have shown at each change. */
  seen: ApplyOutcome[];
  nixArgs: string[][];
}

let f: Fakes;
let applier: Applier;
beforeEach(() => {
  fs.rmSync(marker, { force: true });
  f = { ssh: null, nixScript: null, marked: [], notices: [], seen: [], nixArgs: [] };
  const owners = {
    vms: {
      rootSshArgv: () => f.ssh,
      rootSshTarget: () => (f.ssh ? { alias: 'nixvm-web', target: { host: 'nixvm-web', user: 'root' } } : null),
    },
    launcher: { paths: () => ({ logDir, sshSocket: path.join(root, 'state', 'ssh.sock') }) },
    // Only what a switch may touch: any stop or restart would be a TypeError here.
    supervisor: { markSwitched: (_: string, c: { drvPath: string; outPath: string }) => f.marked.push(c) },
    hub: { notify: (n: { title: string }) => f.notices.push(n.title) },
    nix: () =>
      f.nixScript === null
        ? null
        : {
            argv: (...args: string[]) => {
              f.nixArgs.push(args);
              return sh(f.nixScript!);
            },
          },
    changed: () => {
      const o = applier.outcome('web');
      if (o) f.seen.push(structuredClone(o));
    },
    log: () => {},
  } as unknown as ApplierOwners;
  applier = new Applier(owners);
});

const failure = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e: AgentError) => e,
  );

describe('Applier.switchInPlace', () => {
  it('says in one sentence that it cannot reach a guest with no ssh route, and leaves the VM alone', async () => {
    const err = await failure(applier.switchInPlace('web', BUILT));
    expect(err?.code).toBe('failed');
    expect(err?.message).toBe(
      'nixvm cannot reach "web" over ssh to switch it (it has no address and no vsock answer yet); restart to apply.',
    );
    expect(applier.outcome('web')).toMatchObject({ how: 'failed', outPath: OUT, error: err?.message });
    expect(f.marked).toEqual([]);
  });

  it('stops at a failed nix copy into a store-image guest: one sentence plus nix’s last lines, no switch', async () => {
    f.ssh = sh(`echo switched >> ${marker}`);
    f.nixScript = [
      `echo "copying path '${OUT}' to 'ssh-ng://nixvm-web'..." >&2`,
      `echo "error: cannot open connection to remote store 'ssh-ng://nixvm-web'" >&2`,
      'exit 1',
    ].join('\n');
    const err = await failure(applier.switchInPlace('web', BUILT, true));
    expect(err?.message).toBe(
      `Copying the new closure into the store of "web" failed (error: cannot open connection to remote store 'ssh-ng://nixvm-web'); it keeps running on what it has; restart to apply.\n` +
        `  copying path '${OUT}' to 'ssh-ng://nixvm-web'...\n` +
        `  error: cannot open connection to remote store 'ssh-ng://nixvm-web'`,
    );
    // nix copied to the guest's alias, unchecked signatures (the closure is the host's own build).
    expect(f.nixArgs).toEqual([['copy', '--no-check-sigs', '--to', 'ssh-ng://nixvm-web', OUT]]);
    expect(fs.existsSync(marker), 'the switch ran after a failed copy').toBe(false);
    expect(f.marked).toEqual([]);
    expect(applier.outcome('web')?.how).toBe('failed');
    expect(applyLog()).toContain('error: cannot open connection');
  });

  it('copies first, then switches, when the copy works', async () => {
    f.ssh = sh(`echo "switch after: $(cat ${root}/copied)" >> ${marker}; echo 'activating the configuration...'`);
    f.nixScript = `echo copied > ${root}/copied; echo "copying 1 paths..." >&2`;
    await applier.switchInPlace('web', BUILT, true);
    expect(fs.readFileSync(marker, 'utf8')).toBe('switch after: copied\n');
    expect(applyLog().split('\n').slice(1, 3)).toEqual(['copying 1 paths...', 'activating the configuration...']);
    expect(f.marked).toEqual([BUILT]);
    expect(f.notices).toEqual(['Applied "web"']);
  });

  it('ends a failed switch’s error with its last lines, and keeps them in the snapshot and apply.log', async () => {
    f.ssh = sh(
      "echo 'activating the configuration...'; echo 'setting up /etc...'; echo 'error: /etc/passwd: read-only file system' >&2; exit 3",
    );
    const err = await failure(applier.switchInPlace('web', BUILT));
    const lines = err?.message.split('\n') ?? [];
    expect(lines[0]).toMatch(/^Switching "web" failed \(exit 3\); it keeps running; see .*apply\.log, or restart it/);
    expect(lines.slice(1)).toEqual([
      '  activating the configuration...',
      '  setting up /etc...',
      '  error: /etc/passwd: read-only file system',
    ]);
    expect(applier.outcome('web')).toMatchObject({
      how: 'failed',
      error: err?.message,
      output: {
        count: 3,
        tail: ['activating the configuration...', 'setting up /etc...', 'error: /etc/passwd: read-only file system'],
      },
    });
    expect(applyLog()).toMatch(/^# nixvm apply .*switch-to-configuration switch\nactivating the configuration\.\.\.\n/);
    expect(f.marked).toEqual([]);
  });

  it('shows each line in the snapshot while the switch runs, not only at the end', async () => {
    f.ssh = sh("echo 'activating the configuration...'; echo 'setting up /etc...'");
    await applier.switchInPlace('web', BUILT);
    const during = f.seen.filter((o) => o.how === 'switching');
    expect(during.map((o) => o.output?.count)).toEqual([0, 1, 2]);
    expect(during.at(-1)).toMatchObject({
      lastLine: 'setting up /etc...',
      output: { count: 2, tail: ['activating the configuration...', 'setting up /etc...'] },
    });
    expect(applier.outcome('web')).toMatchObject({ how: 'switch', output: { count: 2 } });
  });
});
