/**
 * The nix binary and the flags every call carries. Flags here must work on Nix 2.8 (tests),
 * current Nix 2.18+ and Lix (users): no --print-out-paths, results come from --json.
 */
import { locateProgram } from '../locate.ts';

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
