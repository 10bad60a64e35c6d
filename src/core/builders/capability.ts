/**
 * What this machine can build and run, decided before anything is built: a VM's system against
 * nix's own `system` and `extra-platforms`, the builders nix knows (and whether each answers), and
 * what Virtualization.framework can run at all. Pure: the facts come in, verdicts go out.
 */
import type { Machine } from './machines.ts';
import { machineBuilds } from './machines.ts';

export interface BuildCapacity {
  /** nix's `system` and `extra-platforms`: what builds here without a builder. */
  localSystems: string[];
  machines: readonly Machine[];
  /** machine URI → it answered (true), did not (false), or is not known yet (absent). */
  answers: ReadonlyMap<string, boolean>;
}

export type Buildability =
  | { how: 'local' }
  | { how: 'builder'; machines: string[]; answering: boolean | null }
  | { how: 'none'; reason: string; fix: string };

/** The fix when nothing builds a system: nixvm's own builder first, then nix's ways. */
export function builderFix(system: string): string {
  return system.endsWith('-linux')
    ? `run \`nixvm builder setup\` (nixpkgs' prebuilt Linux builder, no Linux machine needed), or make a VM that builds ${system} (nixpkgs' nix-builder-vm profile) the builder with \`nixvm builder use <vm>\`; with nix-darwin, \`nix.linux-builder.enable = true;\`; or add a ${system} machine to nix's \`builders\``
    : `add a ${system} machine to nix's \`builders\``;
}

/** How a VM of `system` would be built here. */
export function buildabilityOf(system: string | null, cap: BuildCapacity): Buildability {
  if (system === null || cap.localSystems.includes(system)) return { how: 'local' };
  const local = cap.localSystems[0] ?? null;
  const machines = cap.machines.filter((m) => machineBuilds(m, system, local)).map((m) => m.uri);
  if (machines.length) {
    const known = machines.map((u) => cap.answers.get(u));
    const answering = known.some((a) => a === true) ? true : known.every((a) => a === false) ? false : null;
    return { how: 'builder', machines, answering };
  }
  const here = cap.localSystems.length
    ? cap.localSystems.length > 2
      ? `${cap.localSystems.slice(0, 2).join(', ')} and ${cap.localSystems.length - 2} more`
      : cap.localSystems.join(', ')
    : 'nothing nix names';
  return {
    how: 'none',
    reason: `nothing here builds ${system} (this machine builds ${here}, and ${
      cap.machines.length ? `none of its ${cap.machines.length} builders does` : 'nix has no builders'
    })`,
    fix: builderFix(system),
  };
}

export interface HostMachine {
  platform: NodeJS.Platform;
  /** process.arch: 'arm64' on Apple silicon. */
  arch: string;
}

/**
 * Why Virtualization.framework cannot run a VM of this system on this Mac, or null when it can.
 * Rosetta runs x86_64 programs inside an aarch64 guest; it does not make an x86_64 guest bootable.
 * Off macOS (the simulator) every system is let through.
 */
export function cannotRun(system: string | null, host: HostMachine): string | null {
  if (host.platform !== 'darwin' || system === null) return null;
  const cpu = system.split('-')[0];
  const native = host.arch === 'arm64' ? 'aarch64' : host.arch === 'x64' ? 'x86_64' : null;
  if (native === null || cpu === native) return null;
  if (native === 'aarch64' && cpu === 'x86_64')
    return `it is built for ${system}, and Virtualization.framework on Apple silicon boots only aarch64 guests (Rosetta runs x86_64 programs inside an aarch64-linux VM: set nixpkgs.hostPlatform = "aarch64-linux" and virtualisation.rosetta.enable = true)`;
  return `it is built for ${system}, and this Mac boots only ${native} guests (set nixpkgs.hostPlatform = "${native}-linux")`;
}
