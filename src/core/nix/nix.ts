/**
 * The nix binary and the flags every call carries. Flags here must work on Nix 2.8 (tests),
 * current Nix 2.18+ and Lix (users): no --print-out-paths, results come from --json.
 */
import { locateProgram } from '../../host/locate.ts';

/** Enables flakes per call, so users need not have touched nix.conf. */
export const NIX_FEATURE_ARGS = ['--extra-experimental-features', 'nix-command flakes'] as const;

export class Nix {
  readonly bin: string;
  constructor(bin: string) {
    this.bin = bin;
  }

  /** Find nix: setting, then NIXVM_NIX, then the login shell's PATH, then the Nix profiles. */
  static locate(explicit?: string | null): Nix {
    return new Nix(
      locateProgram('nix', {
        explicit: explicit ?? undefined,
        envVar: 'NIXVM_NIX',
        installHint: 'install Nix (https://nixos.org/download) or set its path in Settings',
      }),
    );
  }

  /** The full argv for a nix subcommand, feature flags included. */
  argv(...args: string[]): string[] {
    return [this.bin, ...NIX_FEATURE_ARGS, ...args];
  }
}

/**
 * Flags for every evaluation and build of a user's flake. nix would otherwise write (or rewrite)
 * flake.lock in the user's directory: that edits a file nobody asked us to touch, and the write
 * would wake the flake watcher and loop. Valid on Nix 2.8, current Nix and Lix.
 */
export const EVAL_ARGS = ['--no-write-lock-file'] as const;

/**
 * One attribute name as an installable path element: quoted when nix's attr-path syntax needs it.
 * That syntax has no escapes (attr-path.cc reads up to the next `"`), so a name holding `"`
 * cannot be written at all: the inventory refuses such names (see unbuildableName).
 */
function attrElement(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_'-]*$/.test(name) ? name : `"${name}"`;
}

/** Why nix could never build a VM of this name through its flake attribute, or null. */
export function unbuildableName(name: string): string | null {
  if (name.includes('"')) return 'it contains a double quote, which a nix attribute path cannot hold';
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'it contains control characters';
  if (/[\ud800-\udfff]/u.test(name)) return 'it is not valid Unicode';
  return null;
}

/**
 * `<flakeDir>#a.b.c` for a local flake. The fragment is percent-decoded by nix, so anything
 * unusual in a VM name (spaces, '#', '%') is percent-encoded to survive the URL parsing.
 */
export function flakeInstallable(flakeDir: string, attrPath: readonly string[]): string {
  const fragment = attrPath
    .map(attrElement)
    .join('.')
    .replace(/[^A-Za-z0-9_.'"-]/gu, (c) =>
      Array.from(new TextEncoder().encode(c), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
    );
  return `${flakeDir}#${fragment}`;
}

/** The installable of a VM's system closure. */
export function toplevelInstallable(flakeDir: string, vm: string): string {
  return flakeInstallable(flakeDir, ['nixosConfigurations', vm, 'config', 'system', 'build', 'toplevel']);
}
