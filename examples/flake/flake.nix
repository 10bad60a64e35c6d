{
  # The example nixvm runs: two VMs laid out like phaer/nixos-vm-on-macos (one file per host
  # under hosts/, a shared base module, a "$PWD/persistent" share).
  #
  # To keep the example instant and offline, the "systems" here are plain derivations that
  # produce what nixvm boots (<toplevel>/kernel, initrd and init) rather than real NixOS: nixvm
  # reads the same options from them that it reads from a real `nixpkgs.lib.nixosSystem`
  # (virtualisation.cores, memorySize, macAddress, rosetta.enable, sharedDirectories, graphics,
  # resolution, mountHostNixStore; boot.kernelParams; services.openssh; users.users). For real
  # VMs, point nixvm at a flake like phaer/nixos-vm-on-macos instead.
  description = "nixvm example: two VMs";

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
