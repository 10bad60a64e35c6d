# A bigger VM; nixvm generates a stable MAC for it since none is set.
{
  networking.hostName = "builder-vm";

  virtualisation = {
    cores = 4;
    memorySize = 4 * 1024;
    sharedDirectories = {
      persistent = {
        source = ''"$PWD/persistent"'';
        target = "/persistent";
      };
    };
  };

  services.openssh.ports = [ 22 ];
  users.users.builder = {
    isNormalUser = true;
    extraGroups = [ "wheel" ];
  };
  system.stateVersion = "25.05";
}
