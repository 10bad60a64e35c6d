/**
 * How many CPUs and how much memory a VM may ask for on this host. Virtualization.framework
 * refuses a configuration beyond its maximumAllowedCPUCount / maximumAllowedMemorySize, which
 * Node cannot ask for; a VM can use no more CPUs than the Mac has anyway, and memory beyond the
 * Mac's would only swap. So on macOS the bound is the Mac itself (os.availableParallelism,
 * os.totalmem); elsewhere (Linux build machines, where the vfkit simulator stands in for a Mac we
 * know nothing about) only the framework's ceiling applies.
 */
import os from 'node:os';

export interface HostLimits {
  cpus: number;
  memoryMiB: number;
  /** Whose limit it is, for sentences: this Mac's, or Virtualization.framework's ceiling. */
  source: 'host' | 'framework';
}

/** Virtualization.framework's ceiling on virtual CPUs (approximated: no Apple silicon Mac has more cores). */
export const VZ_MAX_CPUS = 64;
/** And on memory (approximated: 1 TiB, beyond the largest Apple silicon Mac's memory). */
export const VZ_MAX_MEMORY_MIB = 1024 * 1024;

export function hostLimits(platform: NodeJS.Platform = process.platform): HostLimits {
  if (platform !== 'darwin') return { cpus: VZ_MAX_CPUS, memoryMiB: VZ_MAX_MEMORY_MIB, source: 'framework' };
  return {
    cpus: Math.min(VZ_MAX_CPUS, os.availableParallelism()),
    memoryMiB: Math.min(VZ_MAX_MEMORY_MIB, Math.floor(os.totalmem() / (1024 * 1024))),
    source: 'host',
  };
}
