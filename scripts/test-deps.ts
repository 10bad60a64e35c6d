/**
 * Every program the test suite runs, and the Debian package that has it: `npm test`'s pretest
 * (scripts/ensure-test-deps.ts) checks for each and installs what is missing. test/unit/test-deps.test.ts
 * scans test/, src/ and the scripts the tests run for the programs they start, and fails on one
 * this list does not name.
 */
export interface Needed {
  /** A name looked up on PATH, or an absolute path. */
  program: string;
  pkg: string;
  why: string;
}

export const NEEDED: Needed[] = [
  { program: 'nix', pkg: 'nix-bin', why: 'real evaluations and builds' },
  { program: 'nix-store', pkg: 'nix-bin', why: 'GC root checks' },
  { program: 'nix-daemon', pkg: 'nix-bin', why: "the remote builders' nix (nix-daemon --stdio over ssh)" },
  { program: '/usr/bin/chromium', pkg: 'chromium', why: 'the UI tests' },
  {
    program: 'ssh',
    pkg: 'openssh-client',
    why: 'ssh -G checks of the ssh commands nixvm writes, and real ssh into VMs',
  },
  { program: 'ssh-keygen', pkg: 'openssh-client', why: "the VMs' key pairs nixvm makes" },
  { program: 'ssh-keyscan', pkg: 'openssh-client', why: "the builder VM's host key, when its closure pins none" },
  {
    program: '/usr/sbin/sshd',
    pkg: 'openssh-server',
    why: "the simulated guest's sshd and the loopback builders' (sshd -i)",
  },
  { program: 'git', pkg: 'git', why: 'git flakes' },
  { program: 'ps', pkg: 'procps', why: 'process checks of the agent and the supervisor' },
  // The fixture's virtualisation.host.pkgs.erofs-utils wraps Debian's, at these paths.
  { program: '/usr/bin/mkfs.erofs', pkg: 'erofs-utils', why: 'real Nix store images' },
  { program: '/usr/bin/fsck.erofs', pkg: 'erofs-utils', why: 'checking the store images' },
  { program: '/usr/bin/dump.erofs', pkg: 'erofs-utils', why: 'listing what the store images hold' },
  { program: 'blkid', pkg: 'util-linux', why: "reading a store image's label as the guest's udev does" },
  { program: 'mount', pkg: 'mount', why: "tmpfs faults, and the simulated guests' own /nix" },
  { program: 'umount', pkg: 'mount', why: 'undoing the tmpfs faults' },
  { program: 'unshare', pkg: 'util-linux', why: "private mount namespaces (a guest's /nix, a planted /tmp)" },
  { program: 'setpriv', pkg: 'util-linux', why: 'running as another local user' },
  { program: 'script', pkg: 'bsdutils', why: 'a terminal for the CLI tests that need one' },
  { program: 'useradd', pkg: 'passwd', why: 'the other local user of the hostile-user tests' },
  { program: 'id', pkg: 'coreutils', why: "that user's uid and gid" },
  { program: 'tar', pkg: 'tar', why: 'the tar streams mkfs.erofs reads' },
  { program: 'python3', pkg: 'python3', why: "the vfkit simulator's console pty (Node cannot open one)" },
  { program: 'sh', pkg: 'dash', why: 'shell commands of the tests and the simulated guests' },
  { program: 'bash', pkg: 'bash', why: 'the bash completion script' },
  { program: 'zsh', pkg: 'zsh', why: 'the zsh completion script' },
  { program: 'fish', pkg: 'fish', why: 'the fish completion script' },
  // Coreutils: on every Debian, named because the tests run them.
  { program: 'sleep', pkg: 'coreutils', why: 'long-running stand-in processes' },
  { program: 'true', pkg: 'coreutils', why: 'processes that end at once' },
  { program: 'env', pkg: 'coreutils', why: "the simulated guests' session commands" },
  { program: 'nice', pkg: 'coreutils', why: "the niceness nixvm's builds run at" },
  { program: 'chmod', pkg: 'coreutils', why: 'store image permissions' },
  { program: 'mkdir', pkg: 'coreutils', why: "the loopback builders' /nix" },
  { program: 'mkfifo', pkg: 'coreutils', why: 'an ssh config that is a pipe' },
  { program: 'echo', pkg: 'coreutils', why: "the runner's own tests" },
];

/**
 * Programs the tests start that are no Debian package's, or that are named to be absent: the scan
 * of test/unit/test-deps.test.ts accepts these, for the reason given.
 */
export const NOT_PACKAGES: Record<string, string> = {
  node: "the project's own Node (npm install brings it into node_modules/.bin)",
  npm: "comes with the project's Node",
  npx: "comes with the project's Node",
  nixvm: "this project's CLI (bin/nixvm, node_modules/.bin/nixvm)",
  vfkit: "the simulator (test/vfkit-sim/vfkit), put first on the tests' PATH",
  'nixvm-no-such-program': 'named to be missing (the runner says so)',
  open: "macOS's open: argv the UI tests assert, never run here",
  osascript: "macOS's admin prompt (src/core/builders/registration.ts): tests assert its argv, never run it",
};
