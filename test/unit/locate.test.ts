import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { locateProgram } from '../../src/host/locate.ts';
import type { ProgramNotFoundError } from '../../src/host/runner.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-locate-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

it("reads the login shell's PATH even through a chatty rc file, as launchd-started apps must", () => {
  // A "login shell" that prints a banner, then runs the command it is given with its own PATH.
  const shell = path.join(dir, 'fake-shell');
  fs.writeFileSync(
    shell,
    '#!/bin/sh\necho "Welcome! PATH=not-this-one"\nPATH=/opt/from-login/bin:/usr/bin:/bin\nexport PATH\nshift; shift\nexec $1\n',
  );
  fs.chmodSync(shell, 0o755);
  const env: NodeJS.ProcessEnv = { ...process.env, SHELL: shell, PATH: '/usr/bin:/bin' };
  delete env.NIXVM_NO_LOGIN_SHELL;
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      'const m = await import(process.argv[1]); console.log(JSON.stringify(m.loginShellPath()));',
      path.resolve('src/host/locate.ts'),
    ],
    { env, encoding: 'utf8' },
  );
  expect(r.stderr).toBe('');
  expect(JSON.parse(r.stdout)).toEqual(['/opt/from-login/bin', '/usr/bin', '/bin']);
});

it('names the setting when a configured path is not an executable', () => {
  expect(() => locateProgram('nix', { explicit: '/nope/nix' })).toThrow(
    'The nix path in the settings, /nope/nix, is not an executable file; fix or clear it.',
  );
});

it('says in short where it looked when nothing is found, and keeps every directory for doctor', () => {
  let err: unknown;
  try {
    locateProgram('nixvm-surely-missing', { extraDirs: ['/nope/extra'], installHint: 'install it' });
  } catch (e) {
    err = e;
  }
  expect((err as Error).message).toBe(
    'Could not find nixvm-surely-missing in your PATH, /opt/homebrew/bin, /usr/local/bin, /nope/extra or the Nix profiles; install it (`nixvm doctor` lists every directory searched).',
  );
  expect((err as ProgramNotFoundError).searched).toEqual(
    expect.arrayContaining([
      '/nix/var/nix/profiles/default/bin',
      '/nope/extra',
      ...(process.env.PATH ?? '').split(':').filter(Boolean),
    ]),
  );
});
