/**
 * The `nixvm` NixVM.app carries, run from the app's layout with nothing of the checkout: its
 * Contents/Resources/cli built by scripts/app-cli.ts as `npm run package` builds it, in a temp
 * directory outside the checkout, reached through a symlink on PATH as "Install Command Line
 * Tool…" makes one. Electron's binary cannot be had here, so Contents/MacOS/NixVM is a script that
 * notes what the launcher handed it and runs a copy of this Node (which needs no
 * ELECTRON_RUN_AS_NODE, as the app's Electron does); the launcher is the one that ships, unchanged. Also: a checkout's CLI refuses to write a login item.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAppCli } from '../../scripts/app-cli.ts';
import pkg from '../../package.json' with { type: 'json' };

const REPO = path.resolve(import.meta.dirname, '..', '..');
let tmp: string;
let app: string;
let onPath: string;
let sys: string;

beforeAll(async () => {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-packaged-')));
  app = path.join(tmp, 'Applications', 'NixVM.app');
  await buildAppCli(path.join(app, 'Contents', 'Resources', 'cli'));
  // In Electron's place: a script that notes the environment the launcher gave it (is it told to
  // run as Node?), then runs a copy of this Node with the same arguments.
  const macos = path.join(app, 'Contents', 'MacOS');
  fs.mkdirSync(macos, { recursive: true });
  fs.copyFileSync(process.execPath, path.join(macos, 'node-for-test'));
  fs.chmodSync(path.join(macos, 'node-for-test'), 0o755);
  fs.writeFileSync(
    path.join(macos, 'NixVM'),
    `#!/bin/sh\nprintf '%s\\n' "ELECTRON_RUN_AS_NODE=$ELECTRON_RUN_AS_NODE $*" >> '${path.join(tmp, 'electron-runs')}'\nexec "$(dirname "$0")/node-for-test" "$@"\n`,
    { mode: 0o755 },
  );
  onPath = path.join(tmp, 'bin');
  fs.mkdirSync(onPath);
  fs.symlinkSync(path.join(app, 'Contents', 'Resources', 'cli', 'nixvm'), path.join(onPath, 'nixvm'));
  fs.mkdirSync(path.join(tmp, 'home'));
  // The few programs the launcher and doctor run, and no node: /usr/bin has one on this machine.
  sys = path.join(tmp, 'sys');
  fs.mkdirSync(sys);
  for (const p of ['dirname', 'readlink', 'nix', 'uname', 'id'])
    if (fs.existsSync(`/usr/bin/${p}`)) fs.symlinkSync(`/usr/bin/${p}`, path.join(sys, p));
}, 120_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The environment of a shell that has the app's nixvm on PATH and no Node, npm or checkout. */
function env(): NodeJS.ProcessEnv {
  return {
    PATH: `${onPath}:${sys}`,
    HOME: path.join(tmp, 'home'),
    NIXVM_STATE_DIR: path.join(tmp, 'state'),
    NIXVM_LAUNCH_AGENTS_DIR: path.join(tmp, 'LaunchAgents'),
    TMPDIR: tmp,
  };
}

function nixvm(...args: string[]) {
  return spawnSync('nixvm', args, { cwd: tmp, env: env(), encoding: 'utf8', timeout: 60_000 });
}

describe("NixVM.app's nixvm", () => {
  it('is laid out as the app carries it: the bundle, its chunks and an executable launcher, no node_modules', () => {
    const cli = path.join(app, 'Contents', 'Resources', 'cli');
    const names = fs.readdirSync(cli, { recursive: true }).map(String);
    expect(names).toEqual(expect.arrayContaining(['nixvm', 'nixvm.mjs', 'chunks']));
    expect(names.filter((n) => n.includes('node_modules'))).toEqual([]);
    expect(fs.statSync(path.join(cli, 'nixvm')).mode & 0o111).toBe(0o111);
    // The launcher is the shipped file, byte for byte: no test-only override in it.
    expect(fs.readFileSync(path.join(cli, 'nixvm'), 'utf8')).toBe(
      fs.readFileSync(path.join(REPO, 'scripts', 'app-cli', 'nixvm'), 'utf8'),
    );
    // `node` itself is not on this PATH: only the app's binary can run the CLI.
    expect(spawnSync('/bin/sh', ['-c', 'command -v node'], { env: env(), encoding: 'utf8' }).status).not.toBe(0);
  });

  it('prints its version through the PATH symlink', () => {
    const r = nixvm('--version');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
    // The app's binary was told to run as Node, with the bundle and the arguments.
    const cli = path.join(app, 'Contents', 'Resources', 'cli');
    expect(fs.readFileSync(path.join(tmp, 'electron-runs'), 'utf8').split('\n')).toContain(
      `ELECTRON_RUN_AS_NODE=1 ${cli}/nixvm.mjs --version`,
    );
  });

  it('runs doctor --json from there, checking this machine without an agent', () => {
    const r = nixvm('doctor', '--json');
    // Off a Mac, vfkit and macOS fail: exit 1 with the report still printed.
    expect([0, 1]).toContain(r.status);
    const report = JSON.parse(r.stdout) as { agent: boolean; checks: { id: string; status: string }[] };
    expect(report.agent).toBe(false);
    const ids = report.checks.map((c) => c.id);
    expect(ids).toEqual(expect.arrayContaining(['nix', 'vfkit']));
    // It ran nix (its version is in the summary) and used this state dir: it ran here, with this environment.
    expect(JSON.stringify(report.checks.find((c) => c.id === 'nix'))).toMatch(/nix \d+\.\d+\.\d+ at \//);
    expect(JSON.stringify(report.checks.find((c) => c.id === 'state-dir'))).toContain(path.join(tmp, 'state'));
  });

  it("names itself by the app's launcher, which ssh's ProxyCommand and completion run again", () => {
    const r = nixvm('completion', 'bash');
    expect(r.status).toBe(0);
    const launcher = path.join(app, 'Contents', 'Resources', 'cli', 'nixvm');
    expect(r.stdout).toContain(launcher);
    // Not the Electron binary, which without ELECTRON_RUN_AS_NODE would start the app.
    expect(r.stdout).not.toContain(path.join('MacOS', 'NixVM'));
  });

  it("a checkout's nixvm refuses to write a login item that the checkout's moving would break", () => {
    const r = spawnSync(process.execPath, [path.join(REPO, 'bin', 'nixvm.js'), 'login-item', 'on'], {
      cwd: tmp,
      env: { ...env(), PATH: `${path.dirname(process.execPath)}:${sys}` },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('This nixvm runs from a checkout');
    expect(r.stderr).toContain('Install NixVM.app');
    expect(fs.existsSync(path.join(tmp, 'LaunchAgents'))).toBe(false);
  });
});
