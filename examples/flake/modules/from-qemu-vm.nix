# The seed's modules/nixos/from-qemu-vm.nix and build.nix: the option defaults (qemu-vm.nix's,
# minus qemu), the scratch shares every VM gets, and the host package set. `v` is what the host
# sets under virtualisation; the result is every option's value.
v:
let
  useNixStoreImage = v.useNixStoreImage or false;
  useBootLoader = v.useBootLoader or false;
  mountHostNixStore = v.mountHostNixStore or (!useNixStoreImage && !useBootLoader);
  writableStore = v.writableStore or mountHostNixStore;
  useHostCerts = v.useHostCerts or false;
in
{
  memorySize = 1024;
  cores = 1;
  graphics = false;
  resolution = {
    x = 1024;
    y = 768;
  };
  # disk-size-option.nix: 1024 since the seed sets diskSizeAutoSupported = false.
  diskSize = 1024;
  writableStoreUseTmpfs = true;
  additionalPaths = [ ];
  forwardPorts = [ ];
  macAddress = null;
  # The base module's lib.mkDefault true; nixpkgs' rosetta.nix defaults for tag and mount point.
  rosetta = {
    enable = true;
    mountTag = "rosetta";
    mountPoint = "/run/rosetta";
  };
}
// v
// {
  inherit
    useNixStoreImage
    useBootLoader
    mountHostNixStore
    writableStore
    useHostCerts
    ;
  sharedDirectories = {
    xchg = {
      source = ''"$TMPDIR"/xchg'';
      securityModel = "none";
      target = "/tmp/xchg";
    };
    shared = {
      source = ''"''${SHARED_DIR:-$TMPDIR/xchg}"'';
      target = "/tmp/shared";
      securityModel = "none";
    };
  }
  // (
    if useHostCerts then
      {
        certs = {
          source = ''"$TMPDIR"/certs'';
          target = "/etc/ssl/certs";
          securityModel = "none";
        };
      }
    else
      { }
  )
  // (v.sharedDirectories or { });
  # build.nix points host.pkgs at a Darwin package set; here, the one package the runner takes from
  # it for the store image.
  host.pkgs = {
    erofs-utils = import ../pkgs/erofs-utils.nix;
  };
}
