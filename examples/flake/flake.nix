{
  # The example nixvm runs: the two VMs of phaer/nixos-vm-on-macos with the options they set
  # (hosts/*, a base module, the runner's scratch shares "$TMPDIR"/xchg and
  # "${SHARED_DIR:-$TMPDIR/xchg}", and for builder-vm nixpkgs' nix-builder-vm profile: a Nix store
  # image, a persistent writable store, the host's certificates, a "$KEYS" share). Both set the
  # same MAC, as the seed does: only one runs at a time.
  #
  # To keep the example instant and offline, the "systems" are plain derivations that produce what
  # nixvm boots (<toplevel>/kernel, initrd, init, and the etc/fstab a guest mounts from) rather than
  # real NixOS; builder-vm's store image is made with Debian's mkfs.erofs (erofs-utils). For real
  # VMs, point nixvm at a flake like phaer/nixos-vm-on-macos instead.
  description = "nixvm example: the seed's minimal-vm and builder-vm";

  outputs =
    { self }:
    let
      mkVm = import ./lib/mk-vm.nix;
    in
    {
      nixosConfigurations = {
        minimal-vm = mkVm ./hosts/minimal-vm.nix;
        builder-vm = mkVm ./hosts/builder-vm.nix;
      };
    };
}
