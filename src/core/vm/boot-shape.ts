/**
 * Whether a configuration boots the way nixvm runs VMs: vfkit loads its kernel and initrd
 * directly (no firmware, no boot loader) and attaches only the disks nixvm makes, so a
 * configuration that installs a boot loader, or keeps its root file system on a disk of its own,
 * is a machine and not a VM nixvm can boot. Pure: a spec in, one sentence (or null) out.
 */
import type { VmSpec } from '../../api/types.ts';

/** File systems that need no disk: what the seed's VMs boot with. */
const DISKLESS = new Set(['tmpfs', 'ramfs', 'virtiofs', 'overlay', '9p']);

/**
 * Why `spec` cannot be booted as a VM, or null. `labels` are the disk labels nixvm attaches for
 * it (none today but the store image's, which never holds a root).
 */
export function bootProblem(name: string, spec: Pick<VmSpec, 'boot'>, labels: readonly string[] = []): string | null {
  const boot = spec.boot;
  if (!boot) return null;
  if (boot.loader) {
    return `${JSON.stringify(name)} is not a VM nixvm can boot: it enables a boot loader (boot.loader.${boot.loader}.enable) and vfkit loads its kernel directly; set boot.loader.${boot.loader}.enable = false if it is meant to run as a VM.`;
  }
  const root = boot.root;
  if (!root || (root.fsType !== null && DISKLESS.has(root.fsType))) return null;
  const byLabel = root.label ?? /^\/dev\/disk\/by-label\/(.+)$/.exec(root.device ?? '')?.[1] ?? null;
  if (byLabel !== null && labels.includes(byLabel)) return null;
  const disk =
    byLabel !== null ? `the disk labelled ${byLabel}` : root.device?.startsWith('/dev/') ? root.device : null;
  if (disk === null) return null;
  return `${JSON.stringify(name)} is not a VM nixvm can boot: its root file system is on ${disk}, which nixvm does not attach; give it a tmpfs root (fileSystems."/" = { device = "tmpfs"; fsType = "tmpfs"; }) as the seed's VMs have.`;
}
