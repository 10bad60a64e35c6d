# A stand-in for nixpkgs.lib.nixosSystem with the seed's modules: the host file's settings, every
# virtualisation option at its value (from-qemu-vm.nix), what the base module derives from them
# (fileSystems, repart), and config.system.build.toplevel.
hostFile:
let
  host = import hostFile;
  virtualisation = import ../modules/from-qemu-vm.nix (host.virtualisation or { });
  base = import ../modules/base.nix virtualisation;
  config = base // host // { inherit virtualisation; };
in
{
  config = config // {
    system = (config.system or { }) // {
      build.toplevel = import ./toplevel.nix {
        name = config.networking.hostName;
        inherit config;
      };
    };
  };
}
