/**
 * scripts/test-deps.ts names every program the suite runs (npm test's pretest checks and installs
 * them): a static scan of the tests, their helpers, the simulator, src/ and the scripts the tests
 * run, for the programs they start. A test file that starts running a program the list does not
 * name fails here, instead of on a machine without it.
 *
 * How the scan reads a file: test/helpers/program-scan.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NEEDED, NOT_PACKAGES } from '../../scripts/test-deps.ts';
import { programsIn } from '../helpers/program-scan.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** The scripts the tests run (test/unit/app-build.test.ts, packaged-cli.test.ts, readme.test.ts). */
const SCRIPTS = ['scripts/app-cli.ts', 'scripts/build.ts', 'scripts/make-icons.ts', 'scripts/start.ts'];

function sources(): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(REPO, rel), { withFileTypes: true })) {
      const p = path.join(rel, e.name);
      // Fixtures are flakes and data, not code the tests run; the renderer runs in Chromium.
      if (e.isDirectory()) {
        if (p !== path.join('test', 'fixtures') && p !== path.join('src', 'renderer')) walk(p);
      } else if (/\.(ts|js|mjs)$/.test(e.name)) out.push(p);
    }
  };
  walk('test');
  walk('src');
  // This file's own examples are not programs.
  return [
    ...out.filter((f) => f !== path.join('test', 'unit', 'test-deps.test.ts')),
    path.join('test', 'vfkit-sim', 'vfkit'),
    ...SCRIPTS,
  ];
}

describe("the test prerequisites' list (scripts/test-deps.ts)", () => {
  const listed = new Set(NEEDED.map((n) => path.basename(n.program)));
  const scanned = new Map<string, Set<string>>();
  for (const f of sources()) {
    for (const p of programsIn(fs.readFileSync(path.join(REPO, f), 'utf8'))) {
      const name = path.basename(p);
      if (!scanned.has(name)) scanned.set(name, new Set());
      scanned.get(name)!.add(f);
    }
  }

  it('names every program the tests, their helpers, the simulator and src/ start', () => {
    const unlisted = [...scanned]
      .filter(([name]) => !listed.has(name) && !(name in NOT_PACKAGES))
      .map(([name, files]) => `${name} (${[...files].join(', ')})`);
    expect(unlisted, 'add each to NEEDED in scripts/test-deps.ts, with its Debian package').toEqual([]);
  });

  it('finds the programs the README says the suite needs (the scan still sees them)', () => {
    for (const p of ['nix', 'ssh', 'ssh-keygen', 'sshd', 'git', 'ps', 'mkfs.erofs', 'python3', 'setpriv', 'unshare'])
      expect(scanned.has(p), p).toBe(true);
  });

  it('lists nothing twice and gives each a package and a reason', () => {
    expect(new Set(NEEDED.map((n) => n.program)).size).toBe(NEEDED.length);
    for (const n of NEEDED) expect(n.pkg && n.why, n.program).toBeTruthy();
  });

  it('reads each way of starting a program', () => {
    expect(
      programsIn(
        [
          "spawn('a1', [])",
          "execFileSync('/usr/bin/a2', ['x'])",
          "const as = () => ['a3', '--flag'];",
          "await this.#o.run(['a4', 'y']);",
          "executablePath: '/opt/a5'",
          "execa('sh', ['-c', 'FOO=1 a6 x && a7 y; echo no | a8'])",
          '"/bin/sh",["-c","not-a-program"]',
          '\'exec a9 --mount sh -c "mkdir -p /x && a10 --bind"\'',
          "run(['not-a-program', 'x'])",
          "return env.PROG || '/usr/sbin/a11';",
          "const dir = process.env.X ?? '/tmp/not-a-program';",
        ].join('\n'),
      ),
    ).toEqual([
      'a1',
      '/usr/bin/a2',
      'sh',
      'a4',
      'a3',
      '/opt/a5',
      '/usr/sbin/a11',
      'a6',
      'a7',
      'a8',
      'a9',
      'mkdir',
      'a10',
    ]);
    expect(programsIn("import { run } from '../src/host/runner.ts';\nrun(['b1', 'x'])")).toEqual(['b1']);
  });
});
