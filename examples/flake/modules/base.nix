# What every VM gets, like the seed's modules/nixos/base.nix.
{
  nixpkgs.hostPlatform.system = "x86_64-linux";
  # Efficient x86_64 emulation via Apple's Rosetta 2 translator.
  virtualisation.rosetta.enable = true;
  # The virtio console is known as hvc0 in the guest.
  boot.kernelParams = [ "console=hvc0" ];
  services.openssh.enable = true;
}
