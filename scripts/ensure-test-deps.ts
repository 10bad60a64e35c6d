/**
 * `npm test`'s first step: the suite needs real nix (Debian's nix-bin is enough) and Chromium.
 * On Debian as root it installs them; elsewhere it says exactly what is missing.
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const which = (p: string) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', p]).status === 0;
const missing: string[] = [];
if (!which('nix')) missing.push('nix-bin');
if (!existsSync('/usr/bin/chromium')) missing.push('chromium');
if (missing.length) {
  const canApt = which('apt-get') && process.getuid?.() === 0;
  if (!canApt) {
    console.error(
      `The tests need ${missing.join(' and ')} (Debian package names); install them, then run npm test again.`,
    );
    process.exit(1);
  }
  console.log(`Installing ${missing.join(', ')} with apt-get…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', ...missing],
  ]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
}
