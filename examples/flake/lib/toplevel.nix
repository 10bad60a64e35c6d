# A stand-in for a NixOS system closure: a directory with the files the VM runtime boots
# (<toplevel>/kernel, <toplevel>/initrd, <toplevel>/init).
{
  name,
  config ? { },
  deps ? [ ],
  salt ? "",
}:
derivation {
  name = "nixos-system-${name}";
  system = "x86_64-linux";
  builder = "/bin/sh";
  PATH = "/usr/bin:/bin";
  inherit deps salt;
  # As in NixOS, virtualisation.* shapes how the VM is run, not the system closure: editing
  # cores or memory leaves the drvPath alone, editing anything else changes it.
  configJson = builtins.toJSON (builtins.removeAttrs config [ "virtualisation" "system" ]);
  kernelParams = toString (config.boot.kernelParams or [ ]);
  args = [
    "-c"
    ''
      mkdir -p "$out"
      echo "not a real kernel: ${name}" > "$out/kernel"
      echo "not a real initrd: ${name}" > "$out/initrd"
      printf '#!/bin/sh\necho "init of ${name}"\n' > "$out/init"
      chmod +x "$out/init"
      printf '%s\n' "$kernelParams" > "$out/kernel-params"
      printf '%s\n' "$configJson" > "$out/config.json"
    ''
  ];
}
