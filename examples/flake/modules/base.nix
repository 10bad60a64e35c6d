# The seed's modules/nixos/base.nix and from-qemu-vm.nix, as the values they give a VM whose
# virtualisation options are `v` (every option set): the guest's fileSystems (a tmpfs root of
# diskSize, the store from the host's virtio-fs share or the store image by label, overlaid by a
# tmpfs or the writable image's partition, Rosetta, every shared directory by tag) and, with a
# persistent writable store, the repart that formats it on the second NVMe disk.
v:
let
  persistentStore = v.writableStore && !v.writableStoreUseTmpfs;
  store = v.useNixStoreImage || v.mountHostNixStore;
in
{
  nixpkgs.hostPlatform.system = "aarch64-linux";
  boot.kernelParams = [ "console=hvc0" ];
  boot.initrd.systemd.repart =
    if persistentStore then
      {
        enable = true;
        empty = "allow";
        device = "/dev/nvme1n1";
      }
    else
      { enable = false; };
  systemd.repart.partitions =
    if persistentStore then
      {
        "10-nix-store-writable" = {
          Type = "linux-generic";
          Label = "nix-store-write";
          Format = "ext4";
        };
      }
    else
      { };
  fileSystems = {
    "/" = {
      device = "none";
      fsType = "tmpfs";
      options = [
        "defaults"
        "size=${toString v.diskSize}M"
        "mode=755"
      ];
    };
  }
  // (
    if store then
      {
        "/nix/store" =
          if v.writableStore then
            {
              device = "overlay";
              fsType = "overlay";
              options = [
                "lowerdir=/nix/.ro-store"
                "upperdir=/nix/.rw-store/upper"
                "workdir=/nix/.rw-store/work"
              ];
            }
          else
            {
              device = "/nix/.ro-store";
              fsType = "none";
              options = [ "bind" ];
            };
        "/nix/.ro-store" = {
          device = if v.mountHostNixStore then "nix-store" else "/dev/disk/by-label/nix-store";
          fsType = if v.mountHostNixStore then "virtiofs" else "erofs";
          options = [ "ro" ];
        };
      }
    else
      { }
  )
  // (
    if persistentStore then
      {
        "/nix/.rw-store" = {
          device = "/dev/disk/by-label/nix-store-write";
          fsType = "ext4";
          options = [ "defaults" ];
        };
      }
    else if v.writableStore then
      {
        "/nix/.rw-store" = {
          device = "none";
          fsType = "tmpfs";
          options = [ "mode=0755" ];
        };
      }
    else
      { }
  )
  // (
    if v.rosetta.enable then
      {
        ${v.rosetta.mountPoint} = {
          device = v.rosetta.mountTag;
          fsType = "virtiofs";
          options = [ "defaults" ];
        };
      }
    else
      { }
  )
  // builtins.listToAttrs (
    map (tag: {
      name = v.sharedDirectories.${tag}.target;
      value = {
        device = tag;
        fsType = "virtiofs";
        options = [ "defaults" ];
      };
    }) (builtins.attrNames v.sharedDirectories)
  );
}
