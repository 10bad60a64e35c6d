/**
 * The key pair nixvm makes for each VM (ed25519, with `ssh-keygen`, through the runner) in the
 * VM's private keys directory, the one shared as `$KEYS`, and where a guest finds the public half:
 *
 * - in the `$KEYS` share, under each name the guest's `services.openssh.authorizedKeysFiles` reads
 *   there (nixpkgs' nix-builder-vm reads `/var/keys/%u_ed25519.pub`: `builder_ed25519.pub`);
 * - on the kernel command line as the systemd credential `ssh.authorized_keys.root`, for guests
 *   whose tmpfiles write it to root's authorized_keys (a public key only; never a private one).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { VmSpec } from '../../api/types.ts';
import { run as runProgram, type RunOptions, type RunResult } from '../../host/runner.ts';

/** The private key's file name in the keys directory (the public one adds `.pub`). */
export const KEY_FILE = 'nixvm_ed25519';

export type Run = (argv: string[], opts?: RunOptions) => Promise<RunResult>;

export interface VmKey {
  privateKey: string;
  /** The public key line (`ssh-ed25519 AAAA… comment`). */
  publicKey: string;
}

/** The public key line, when the pair is there and looks like one. */
export function readPublicKey(keysDir: string): string | null {
  try {
    const line = fs.readFileSync(path.join(keysDir, `${KEY_FILE}.pub`), 'utf8').trim();
    if (!fs.existsSync(path.join(keysDir, KEY_FILE))) return null;
    return /^ssh-ed25519 [A-Za-z0-9+/=]+( [\x20-\x7e]*)?$/.test(line) ? line : null;
  } catch {
    return null;
  }
}

/** A comment ssh-keygen and authorized_keys both keep intact: `nixvm@<vm>`, plain characters only. */
export function keyComment(vm: string): string {
  const base = vm.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 64) || 'vm';
  return `nixvm@${base}`;
}

/**
 * The VM's key pair, made once (with ssh-keygen) and kept: a half-made pair (one file missing, or
 * not a key) is made again. The keys directory must exist (ensureKeysDir).
 */
export async function ensureVmKey(keysDir: string, vm: string, run: Run = runProgram): Promise<VmKey> {
  const privateKey = path.join(keysDir, KEY_FILE);
  const existing = readPublicKey(keysDir);
  if (existing) return { privateKey, publicKey: existing };
  fs.rmSync(privateKey, { force: true });
  fs.rmSync(`${privateKey}.pub`, { force: true });
  await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', keyComment(vm), '-f', privateKey], {
    timeoutMs: 30_000,
  });
  const made = readPublicKey(keysDir);
  if (!made) throw new Error(`ssh-keygen made no usable key pair at ${privateKey}`);
  return { privateKey, publicKey: made };
}

/**
 * The files, relative to the keys directory, where the guest looks for `user`'s authorized keys:
 * each authorizedKeysFiles entry inside a `$KEYS` share's mount point, with sshd's `%u` (the
 * user) and `%%` filled in. Entries with other tokens (`%h`, `%U`…) or outside the share are not
 * nixvm's to write.
 */
export function authorizedKeyFiles(spec: VmSpec, users: readonly string[]): string[] {
  const out = new Set<string>();
  for (const share of spec.shares) {
    if (share.word?.word !== 'KEYS' || !share.target) continue;
    const mount = share.target.replace(/\/+$/, '');
    for (const configured of spec.ssh.authorizedKeysFiles ?? []) {
      const entry = unstaged(configured, spec.ssh.stagedKeys ?? null);
      if (!entry.startsWith(`${mount}/`)) continue;
      const rest = entry.slice(mount.length + 1);
      if (/%[^u%]/.test(rest) || rest.endsWith('%')) continue;
      for (const user of users) {
        if (!/^[A-Za-z0-9._-]+$/.test(user)) continue;
        const rel = path.posix.normalize(rest.replace(/%(u|%)/g, (_, t: string) => (t === 'u' ? user : '%')));
        if (rel.startsWith('..') || path.posix.isAbsolute(rel)) continue;
        out.add(path.join(share.word.rel, rel));
      }
    }
  }
  return [...out].sort();
}

/**
 * An authorizedKeysFiles entry in the directory a boot-time copy fills (nix-builder-vz-vm copies
 * `<from>/*.pub` to `<to>/`) as the file it is copied from; any other entry as it is.
 */
function unstaged(entry: string, staged: { from: string; to: string } | null): string {
  if (!staged || !entry.startsWith(`${staged.to}/`)) return entry;
  const name = entry.slice(staged.to.length + 1);
  return !name.includes('/') && name.endsWith('.pub') ? `${staged.from}/${name}` : entry;
}

/** Write the public key where the guest reads it (each file replaced atomically, 0644). */
export function writeAuthorizedKeys(keysDir: string, rels: readonly string[], publicKey: string): void {
  for (const rel of rels) {
    const file = path.join(keysDir, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${publicKey}\n`, { mode: 0o644 });
    fs.renameSync(tmp, file);
  }
}

/** The systemd credential that carries the public key to root (systemd.set_credential_binary). */
export function keyCredentialParam(publicKey: string): string {
  return `systemd.set_credential_binary=ssh.authorized_keys.root:${Buffer.from(`${publicKey}\n`).toString('base64')}`;
}
