# The seed's hosts/builder-vm/configuration.nix, which imports nixpkgs' profiles/nix-builder-vm.nix
# (and disables qemu-vm.nix in favour of the seed's from-qemu-vm.nix options).
{
  networking.hostName = "builder-vm";
  virtualisation = {
    cores = 8; # the host's lib.mkDefault 8 (nix-builder-vm sets no cores)
    # nix-builder-vm sets memorySize = darwin-builder.memorySize (3 GiB) at normal priority,
    # which beats the host's lib.mkDefault (8 * 1024).
    memorySize = 3 * 1024;
    # nix-builder-vm: diskSize = darwin-builder.diskSize (20 GiB).
    diskSize = 20 * 1024;
    # nix-builder-vm: graphics off, the store as an image, writable and persistent, the host's certs.
    graphics = false;
    useNixStoreImage = true;
    writableStore = true;
    writableStoreUseTmpfs = false;
    useHostCerts = true;
    sharedDirectories = {
      persistent = {
        source = ''"$PWD/persistent"'';
        target = "/persistent";
      };
      # nix-builder-vm: the builder's ssh keys, from the runner's $KEYS.
      keys = {
        source = "\"$KEYS\"";
        target = "/var/keys";
      };
    };
    forwardPorts = [ ]; # lib.mkForce [ ]
    macAddress = "f6:25:e2:48:58:1e";
  };
  # nix-builder-vm: sshd for the builder user, keys from /var/keys.
  services.openssh = {
    enable = true;
    authorizedKeysFiles = [ "/var/keys/%u_ed25519.pub" ];
  };
  users.users.builder = {
    isNormalUser = true;
    extraGroups = [ "wheel" ];
  };
  services.getty.autologinUser = "builder";
  # nix-builder-vm: the builder user is trusted, and garbage collection keeps some space free;
  # system-features is NixOS's default (nixos/modules/config/nix.nix) for an aarch64 host.
  nix.settings = {
    trusted-users = [ "builder" ];
    min-free = 1024 * 1024 * 1024;
    max-free = 3 * 1024 * 1024 * 1024;
    system-features = [
      "nixos-test"
      "benchmark"
      "big-parallel"
      "kvm"
    ];
  };
  # nix-builder-vm: a fixed, published host key in the closure (here the fixture's own pair).
  environment.etc = {
    "ssh/ssh_host_ed25519_key".source = ../keys/ssh_host_ed25519_key;
    "ssh/ssh_host_ed25519_key.pub".source = ../keys/ssh_host_ed25519_key.pub;
  };
  system.stateVersion = "24.05";
}
