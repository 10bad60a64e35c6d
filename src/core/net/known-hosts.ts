/**
 * One known_hosts file per VM, in its state dir, under its HostKeyAlias. nixvm writes it only to
 * pin a host key the closure ships (nixpkgs' nix-builder-vm has a fixed, published one) and to
 * forget keys that cannot be the same any more: a guest without a fixed key whose root is a tmpfs
 * makes new host keys at every boot, so a new run starts with an empty file (trusted on first
 * contact, `accept-new`). Otherwise ssh itself records the key on first contact and refuses a
 * changed one.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { VmSpec } from '../../api/types.ts';

export const KNOWN_HOSTS_FILE = 'known_hosts';

export function knownHostsPath(vmStateDir: string): string {
  return path.join(vmStateDir, KNOWN_HOSTS_FILE);
}

/** A host public key line as known_hosts holds it: `type base64` (the comment dropped). */
export function hostKeyOf(line: string | null | undefined): string | null {
  const m = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) ([A-Za-z0-9+/=]+)(?:\s|$)/.exec(
    (line ?? '').trim(),
  );
  return m ? `${m[1]} ${m[2]}` : null;
}

/** Does every boot of this VM make new host keys (no fixed key, a tmpfs root)? */
export function freshHostKeysEachBoot(spec: VmSpec): boolean {
  if (hostKeyOf(spec.ssh.hostKey)) return false;
  const root = spec.guestMounts?.find((m) => m.target === '/');
  return !root || root.fsType === 'tmpfs';
}

/** What the file should say before a run's first ssh: the pinned key, or nothing yet. */
export function prepareKnownHosts(file: string, alias: string, spec: VmSpec, newRun: boolean): 'yes' | 'accept-new' {
  const pinned = hostKeyOf(spec.ssh.hostKey);
  if (pinned) {
    writeAtomic(file, `${alias} ${pinned}\n`);
    return 'yes';
  }
  if (newRun && freshHostKeysEachBoot(spec)) writeAtomic(file, '');
  return 'accept-new';
}

/** How ssh is told to check: `yes` for a pinned key, else accept-new. */
export function strictnessFor(spec: VmSpec): 'yes' | 'accept-new' {
  return hostKeyOf(spec.ssh.hostKey) ? 'yes' : 'accept-new';
}

function writeAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o600 });
  fs.renameSync(tmp, file);
}
