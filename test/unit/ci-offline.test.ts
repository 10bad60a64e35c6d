/**
 * CI on a machine that cannot reach Debian's archive fails with one sentence saying what and what
 * to do, not with apt's or debootstrap's output alone: .ci/run when it cannot install debootstrap,
 * .ci/nix-versions.sh when it cannot make a root.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_DIR } from '../helpers/fixtures.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-ci-offline-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function stub(dir: string, name: string, body: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
}

describe('CI offline', () => {
  it('.ci/run: apt-get cannot install debootstrap: one sentence, and nothing else runs', () => {
    const bin = path.join(tmp, 'bin');
    stub(
      bin,
      'apt-get',
      'echo "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease" >&2; exit 100',
    );
    // What .ci/run would run next: it must not get there.
    const ran = path.join(tmp, 'npm-ran');
    stub(bin, 'npm', `touch ${JSON.stringify(ran)}`);
    // No /usr/sbin on PATH: no debootstrap, as on a machine without it.
    const r = spawnSync('bash', [path.join(REPO_DIR, '.ci', 'run')], {
      encoding: 'utf8',
      env: { PATH: `${bin}:/usr/bin:/bin`, TMPDIR: tmp, HOME: tmp },
    });
    expect(r.status, r.stderr).toBe(1);
    const last = r.stderr.trim().split('\n').at(-1);
    expect(last).toBe(
      `CI cannot install debootstrap, which makes the Debian roots for the newer Nix versions (apt-get failed, see ${tmp}/nixvm-ci-apt.log): check that this machine reaches its Debian mirror, or install debootstrap, then run .ci/run again.`,
    );
    // apt's own words come along, above the sentence.
    expect(r.stderr).toContain('E: Failed to fetch');
    expect(fs.existsSync(ran)).toBe(false);
  });

  const rootReason =
    process.getuid?.() !== 0
      ? 'it needs root (nix-versions.sh makes roots as root)'
      : !fs.existsSync('/usr/sbin/debootstrap')
        ? 'it needs /usr/sbin/debootstrap'
        : !fs.existsSync(path.join(REPO_DIR, 'node_modules', '.bin', 'node'))
          ? "it needs the project's Node (npm ci)"
          : null;
  if (rootReason) console.log(`ci-offline.test.ts: the Debian-root case skips: ${rootReason}`);

  it('.ci/nix-versions.sh: debootstrap cannot reach the mirror: one sentence naming the suite, the mirror and the log', (ctx) => {
    if (rootReason) ctx.skip(rootReason);
    const cache = path.join(tmp, 'cache');
    // Port 9 (discard) of the loopback address: nothing answers, at once.
    const mirror = 'http://127.0.0.1:9/debian';
    const r = spawnSync(path.join(REPO_DIR, '.ci', 'nix-versions.sh'), ['trixie'], {
      encoding: 'utf8',
      env: { ...process.env, NIXVM_CI_CACHE: cache, NIXVM_CI_MIRROR: mirror },
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toBe(
      `CI cannot make the Debian trixie root for Nix tests (debootstrap or apt-get from ${mirror} failed, see ${cache}/trixie.log); check that the mirror is reachable and run .ci/run again.`,
    );
    // Nothing half-made is left to be taken for a root.
    expect(fs.existsSync(path.join(cache, 'trixie'))).toBe(false);
    expect(fs.existsSync(path.join(cache, 'trixie.new'))).toBe(false);
  });
});
