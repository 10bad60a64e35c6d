/**
 * `npm test`'s first step: checks for every program the suite runs. On Debian as root it installs
 * the missing ones with apt-get; elsewhere it says exactly what is missing. The list: scripts/test-deps.ts.
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { NEEDED } from './test-deps.ts';

const which = (p: string) =>
  p.startsWith('/') ? existsSync(p) : spawnSync('sh', ['-c', 'command -v "$1"', 'sh', p]).status === 0;
const absent = NEEDED.filter((n) => !which(n.program));
const missing = [...new Set(absent.map((n) => n.pkg))];
if (missing.length) {
  const canApt = which('apt-get') && process.getuid?.() === 0;
  if (!canApt) {
    const what = absent.map((n) => `${n.program} (${n.pkg}, for ${n.why})`).join(', ');
    console.error(`The tests need ${what}; install them, then run npm test again.`);
    process.exit(1);
  }
  console.log(`Installing ${missing.join(', ')} with apt-get…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', ...missing],
  ]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0) {
      // apt's own output is above; say what it means (offline, most often).
      const what = absent.map((n) => n.program).join(', ');
      console.error(
        `npm test could not install ${missing.join(', ')} with apt-get (for ${what}): check that this machine reaches its Debian mirror, or install them, then run npm test again.`,
      );
      process.exit(r.status ?? 1);
    }
  }
}

// A fresh nix-bin has no /nix/store until its first operation, and the simulator (like vfkit) refuses
// a share whose directory is missing: the host-store share of every composed argv. On a Mac with
// Nix the store always exists, so make it exist here too, before any test composes one.
if (!existsSync('/nix/store')) {
  const r = spawnSync('nix-store', ['--init'], { stdio: 'inherit' });
  if (r.status !== 0 || !existsSync('/nix/store')) {
    console.error('nix-store --init did not make /nix/store; run a nix command once as root, then npm test again.');
    process.exit(1);
  }
}
