/**
 * `npm test`'s first step: checks for every program the suite runs. On Debian as root it installs
 * the missing ones with apt-get; elsewhere it says exactly what is missing.
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

/** Each program the tests run, and the Debian package that has it. */
const NEEDED: { program: string; pkg: string; why: string }[] = [
  { program: 'nix', pkg: 'nix-bin', why: 'real evaluations and builds' },
  { program: 'nix-store', pkg: 'nix-bin', why: 'GC root checks' },
  { program: '/usr/bin/chromium', pkg: 'chromium', why: 'the UI tests' },
  {
    program: 'ssh',
    pkg: 'openssh-client',
    why: 'ssh -G checks of the ssh commands nixvm writes, and real ssh into VMs',
  },
  { program: 'ssh-keygen', pkg: 'openssh-client', why: "the VMs' key pairs nixvm makes" },
  { program: '/usr/sbin/sshd', pkg: 'openssh-server', why: "the simulated guest's sshd (sshd -i behind vsock)" },
  { program: 'git', pkg: 'git', why: 'git flakes' },
  { program: 'ps', pkg: 'procps', why: 'process checks of the agent and the supervisor' },
  // The fixture's virtualisation.host.pkgs.erofs-utils wraps Debian's, at these paths.
  { program: '/usr/bin/mkfs.erofs', pkg: 'erofs-utils', why: 'real Nix store images' },
  { program: '/usr/bin/fsck.erofs', pkg: 'erofs-utils', why: 'checking the store images' },
  { program: '/usr/bin/dump.erofs', pkg: 'erofs-utils', why: 'listing what the store images hold' },
  { program: 'blkid', pkg: 'util-linux', why: "reading a store image's label as the guest's udev does" },
  { program: 'python3', pkg: 'python3', why: "the vfkit simulator's console pty (Node cannot open one)" },
  { program: 'bash', pkg: 'bash', why: 'the bash completion script' },
  { program: 'zsh', pkg: 'zsh', why: 'the zsh completion script' },
  { program: 'fish', pkg: 'fish', why: 'the fish completion script' },
];

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
    if (r.status !== 0) process.exit(r.status ?? 1);
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
