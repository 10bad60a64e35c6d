# A stand-in for nixpkgs.lib.nixosSystem, to keep the example offline: merges the base module
# with a host file and adds config.system.build.toplevel. The result has the shape nixvm reads
# from a real system: { config = { virtualisation.*, boot.kernelParams, services.openssh.*, ... }; }
hostFile:
let
  recursiveUpdate =
    a: b:
    a
    // builtins.mapAttrs (
      n: v: if builtins.isAttrs v && builtins.isAttrs (a.${n} or null) then recursiveUpdate a.${n} v else v
    ) b;
  config = recursiveUpdate (import ../modules/base.nix) (import hostFile);
in
{
  config = recursiveUpdate config {
    system.build.toplevel = import ./toplevel.nix {
      name = config.networking.hostName;
      inherit config;
    };
  };
}
