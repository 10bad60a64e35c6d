/**
 * File-system names derived from VM names. One owner, because several folders (state, console
 * logs, build logs) are keyed by the same VM and must agree on the name.
 */
import crypto from 'node:crypto';

export function shortHash(s: string): string {
  return crypto.createHash('sha256').update(s).digest('hex').slice(0, 12);
}

/**
 * A file-system-safe directory name for a VM: the name itself when it is plain
 * (letters, digits, `.`, `_`, `-`, not starting with `.`), else a readable part plus a hash so two
 * different names never share a directory.
 */
export function vmDirName(vm: string): string {
  if (vm.length > 0 && /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(vm) && Buffer.byteLength(vm) <= 64) return vm;
  const readable = vm
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._]+/, '')
    .slice(0, 40);
  return `${readable || 'vm'}-${shortHash(vm)}`;
}
