# The seed's hosts/minimal-vm/configuration.nix (profiles/minimal.nix + the base module).
{
  networking.hostName = "minimal-vm";
  virtualisation = {
    cores = 4; # lib.mkDefault 4
    memorySize = 4 * 1024; # lib.mkDefault (4 * 1024)
    sharedDirectories = {
      persistent = {
        source = ''"$PWD/persistent"'';
        target = "/persistent";
      };
    };
    # The same static MAC as builder-vm: the two cannot run at the same time.
    macAddress = "f6:25:e2:48:58:1e";
  };
  # Not in the seed's minimal-vm: sshd, so that `nixvm ssh-command minimal-vm` has a command to give.
  services.openssh.enable = true;
  users.users.alice.isNormalUser = true;
  services.getty.autologinUser = "root";
  system.stateVersion = "25.05";
}
