/**
 * A VM as this machine's remote builder: whether it can be one (from what its configuration
 * evaluates to) and the machine line nix gets for it. Pure.
 *
 * nix reaches it as root over ssh-ng on its IPv4 address: the nix daemon (root, on a multi-user
 * install) has no ProxyCommand for vsock, but it has the machine line's key and host-key fields.
 * root is always trusted by the guest's nix daemon, and nixvm already delivers its key to root
 * (the ssh.authorized_keys.root credential or the $KEYS share), as it does for switching.
 */
import type { VmSpec } from '../../api/types.ts';
import { hostKeyOf } from '../net/known-hosts.ts';
import type { Machine } from './machines.ts';

/** Why this VM cannot be the builder (one phrase), or null when it can. `rootKey`: nixvm's key reaches root. */
export function builderRefusal(spec: VmSpec, rootKey: boolean): string | null {
  if (!spec.ssh.enabled) return 'it runs no sshd (set services.openssh.enable = true)';
  if (spec.nix?.enabled === false) return 'its nix is off (nix.enable = false)';
  if (spec.system !== null && !spec.system.endsWith('-linux')) return `it is a ${spec.system} system, not Linux`;
  // The nix-builder-vm profile's reason for its store options: builds need a store of the guest's own.
  if (!spec.writableStore && !spec.storeImage && spec.mountHostNixStore)
    return "its /nix/store is the host's, shared read-only (set virtualisation.writableStore = true and useNixStoreImage = true, as nixpkgs' nix-builder-vm profile does)";
  if (!spec.writableStore)
    return 'its store is not writable and kept (set virtualisation.writableStore = true and writableStoreUseTmpfs = false)';
  // Older nix hands a machine's host to ssh as it is: `host:port` is not read as a port there.
  if (spec.ssh.port !== 22) return `its sshd listens on port ${spec.ssh.port}, and nix's machine lines reach port 22`;
  if (!rootKey)
    return 'nixvm\'s key does not reach root there (add "/var/keys/%u_ed25519.pub" to services.openssh.authorizedKeysFiles with a $KEYS share, as nix-builder-vm does)';
  return null;
}

/** The systems it builds: its own, and what its nix adds (Rosetta's x86_64-linux). */
export function builderSystems(spec: VmSpec): string[] {
  return [...new Set([...(spec.system ? [spec.system] : []), ...(spec.nix?.extraPlatforms ?? [])])];
}

/** A value for a store URI's query: percent-encoded, so a path with spaces survives the machine line. */
function queryValue(v: string): string {
  return v.replace(/[^A-Za-z0-9/._~-]/g, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

export interface BuilderEndpoint {
  ipv4: string;
  /** nixvm's private key for the VM. */
  identityFile: string;
  /** The host key line the guest proved (pinned, or learned on nixvm's first connection). */
  hostKey: string;
}

/**
 * The machine line for a builder VM. The key goes in the URI's `ssh-key` parameter (percent-encoded):
 * the machine line's own key field cannot hold the space of "Application Support".
 */
export function builderMachine(spec: VmSpec, e: BuilderEndpoint): Omit<Machine, 'source'> {
  const key = hostKeyOf(e.hostKey);
  if (!key) throw new Error(`the host key of VM ${JSON.stringify(spec.name)} is not an OpenSSH public key line`);
  if (!/^\d{1,3}(?:\.\d{1,3}){3}$/.test(e.ipv4)) throw new Error(`${JSON.stringify(e.ipv4)} is not an IPv4 address`);
  return {
    uri: `ssh-ng://root@${e.ipv4}?ssh-key=${queryValue(e.identityFile)}`,
    systems: builderSystems(spec),
    sshKey: null,
    maxJobs: Math.max(1, spec.cpus),
    speedFactor: 1,
    // As its nix declares them (NixOS: nixos-test, benchmark, big-parallel, kvm…); none when unset.
    supportedFeatures: spec.nix?.systemFeatures ?? [],
    mandatoryFeatures: [],
    publicHostKey: Buffer.from(key, 'utf8').toString('base64'),
  };
}
