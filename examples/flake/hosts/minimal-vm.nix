# A small VM with a static MAC (so it gets the same IP every time) and ./persistent shared.
{
  networking.hostName = "minimal-vm";

  virtualisation = {
    cores = 2;
    memorySize = 2 * 1024;
    macAddress = "f6:25:e2:48:58:1e";
    sharedDirectories = {
      persistent = {
        # The seed's spelling: a shell-style path relative to the flake directory.
        source = ''"$PWD/persistent"'';
        target = "/persistent";
      };
    };
  };

  users.users.alice.isNormalUser = true;
  system.stateVersion = "25.05";
}
