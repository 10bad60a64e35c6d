# A stand-in for a NixOS system closure: what the VM runtime boots (<toplevel>/kernel, initrd, init)
# and what a booting guest reads of its configuration: etc/fstab from config.fileSystems (as NixOS
# writes it) and the repart definitions its initrd runs, with the device given to systemd-repart
# (boot.initrd.systemd.repart.device) in etc/repart.d/device; the systemd units NixOS writes from
# systemd.services and systemd.sockets (etc/systemd/system/<name>.service and .socket, a
# service's script in unit-scripts/<name>-start, named by its ExecStart), only when it has some.
{
  name,
  config,
}:
let
  fsLine =
    mountPoint:
    let
      f = config.fileSystems.${mountPoint};
      opts = f.options or [ "defaults" ];
    in
    "${f.device or "none"} ${mountPoint} ${f.fsType or "auto"} ${builtins.concatStringsSep "," opts} 0 0";
  fstab = builtins.concatStringsSep "\n" (map fsLine (builtins.attrNames config.fileSystems)) + "\n";
  repart = config.boot.initrd.systemd.repart or { };
  partitions = config.systemd.repart.partitions or { };
  # Each definition as systemd-repart reads it (the values have no quotes, so single quotes hold them).
  partitionFile =
    p:
    builtins.concatStringsSep "\n" (
      [ "[Partition]" ] ++ map (k: "${k}=${toString partitions.${p}.${k}}") (builtins.attrNames partitions.${p})
    )
    + "\n";
  repartScript = builtins.concatStringsSep "" (
    map (p: "printf '%s' '${partitionFile p}' > \"$out/etc/repart.d/${p}.conf\"\n") (builtins.attrNames partitions)
  );
  # The units, as NixOS renders them (nixos/lib/systemd-lib.nix): [Unit] from description and the
  # dependency lists (and unitConfig), [Service] from serviceConfig with the script as ExecStart,
  # [Socket] from socketConfig; keys sorted, lists space-separated. NixOS also writes
  # Environment= (PATH) and the wantedBy symlinks; the fake guest needs neither, so neither is here.
  # Each unit's text reaches the builder in an attribute of its own (unit0, unit1…).
  services = config.systemd.services or { };
  sockets = config.systemd.sockets or { };
  unitValue =
    v:
    if builtins.isBool v then
      (if v then "true" else "false")
    else if builtins.isList v then
      builtins.concatStringsSep " " (map unitValue v)
    else
      toString v;
  section =
    title: attrs:
    "[${title}]\n" + builtins.concatStringsSep "" (map (k: "${k}=${unitValue attrs.${k}}\n") (builtins.attrNames attrs));
  unitSection =
    u:
    let
      opt = k: v: if v == null || v == [ ] then { } else { ${k} = v; };
    in
    (u.unitConfig or { })
    // opt "Description" (u.description or null)
    // opt "Requires" (u.requires or [ ])
    // opt "Wants" (u.wants or [ ])
    // opt "After" (u.after or [ ])
    // opt "Before" (u.before or [ ])
    // opt "Conflicts" (u.conflicts or [ ])
    // (if (u.restartIfChanged or true) then { } else { X-RestartIfChanged = false; });
  scriptPath = name: "${builtins.placeholder "out"}/unit-scripts/${name}-start";
  serviceText =
    name: s:
    section "Unit" (unitSection s)
    + "\n"
    + section "Service" (
      (if s ? script && !((s.serviceConfig or { }) ? ExecStart) then { ExecStart = scriptPath name; } else { })
      // (s.serviceConfig or { })
    );
  socketText = name: s: section "Unit" (unitSection s) + "\n" + section "Socket" (s.socketConfig or { });
  units =
    map (name: {
      file = "${name}.service";
      text = serviceText name services.${name};
      script = if services.${name} ? script then { inherit name; text = services.${name}.script; } else null;
    }) (builtins.attrNames services)
    ++ map (name: {
      file = "${name}.socket";
      text = socketText name sockets.${name};
      script = null;
    }) (builtins.attrNames sockets);
  indexed = builtins.genList (i: { inherit i; u = builtins.elemAt units i; }) (builtins.length units);
  # NixOS's makeJobScript: the script after a shebang and `set -e`.
  unitAttrs = builtins.listToAttrs (
    builtins.concatMap (
      { i, u }:
      [
        {
          name = "unit${toString i}";
          value = u.text;
        }
      ]
      ++ (
        if u.script == null then
          [ ]
        else
          [
            {
              name = "unitScript${toString i}";
              value = "#!/run/current-system/sw/bin/bash\nset -e\n${u.script.text}";
            }
          ]
      )
    ) indexed
  );
  unitsScript =
    if units == [ ] then
      ""
    else
      ''
        mkdir -p "$out/etc/systemd/system" "$out/unit-scripts"
      ''
      + builtins.concatStringsSep "" (
        map (
          { i, u }:
          "printf '%s' \"$unit${toString i}\" > \"$out/etc/systemd/system/${u.file}\"\n"
          + (
            if u.script == null then
              ""
            else
              "printf '%s' \"$unitScript${toString i}\" > \"$out/unit-scripts/${u.script.name}-start\"\nchmod +x \"$out/unit-scripts/${u.script.name}-start\"\n"
          )
        ) indexed
      );
  # What the stand-in closure is built for: x86_64-linux, so that it builds here, although the
  # seed's VMs are aarch64-linux (nixpkgs.hostPlatform); nixvmTest.system makes a test's VM need a builder.
  system = config.nixvmTest.system or "x86_64-linux";
  # The guest's nix.conf from nix.settings, as NixOS writes it (lists space-separated).
  nixSettings = config.nix.settings or { };
  nixValue = v: if builtins.isList v then toString v else if builtins.isBool v then (if v then "true" else "false") else toString v;
  nixConf = builtins.concatStringsSep "" (
    map (k: "${k} = ${nixValue nixSettings.${k}}\n") (builtins.attrNames nixSettings)
  );
  # The system's software (NixOS's system-path): a closure of more than one path, with a symlink.
  sw = derivation {
    name = "system-path-${name}";
    inherit system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [
      "-c"
      ''
        mkdir -p "$out/bin" "$out/share/doc"
        printf '#!/bin/sh\necho hello from ${name}\n' > "$out/bin/hello"
        chmod +x "$out/bin/hello"
        echo "the software of ${name}" > "$out/share/doc/README"
        ln -s ../share/doc/README "$out/bin/README"
      ''
    ];
  };
in
derivation (
{
  name = "nixos-system-${name}-25.05";
  inherit system nixConf;
  builder = "/bin/sh";
  PATH = "/usr/bin:/bin";
  # As in NixOS, virtualisation.* shapes how the VM is run, not the system closure; what the guest
  # derives from it (its fileSystems) is in the closure. Assertions are checked, not built in.
  configJson = builtins.toJSON (builtins.removeAttrs config [ "virtualisation" "system" "assertions" ]);
  kernelParams = toString (config.boot.kernelParams or [ ]);
  inherit fstab;
  # services.getty.autologinUser, as NixOS writes it into the console getty's agetty command line.
  autologin = config.services.getty.autologinUser or "";
  # A stand-in for NixOS's switch-to-configuration: says what it does, records each call
  # (nixvmTest.switchLog), reports failed units and exits as told.
  switchScript = builtins.concatStringsSep "\n" [
    "#!/bin/sh"
    "echo 'activating the configuration...'"
    "echo 'setting up /etc...'"
    "log='${config.nixvmTest.switchLog or ""}'"
    "if [ -n \"$log\" ]; then echo \"$(dirname \"$(dirname \"$0\")\") $*\" >> \"$log\"; fi"
    "units='${builtins.concatStringsSep ", " (config.nixvmTest.switchFailedUnits or [ ])}'"
    "if [ -n \"$units\" ]; then echo \"warning: the following units failed: $units\"; fi"
    "exit ${toString (config.nixvmTest.switchExit or 0)}"
  ];
  # What a NixOS closure says about sshd: its sshd_config (AuthorizedKeysFile as NixOS writes it),
  # a fixed host key from environment.etc, systemd-ssh-generator (systemd >= 256: sshd on vsock
  # port 22 too) and the tmpfiles rules.
  sshdConfig =
    if config.services.openssh.enable or false then
      "Port ${toString (builtins.head ((config.services.openssh.ports or [ ]) ++ [ 22 ]))}\nAuthorizedKeysFile %h/.ssh/authorized_keys /etc/ssh/authorized_keys.d/%u ${toString (config.services.openssh.authorizedKeysFiles or [ ])}\n"
    else
      "";
  hostKey = ((config.environment.etc or { })."ssh/ssh_host_ed25519_key" or { }).source or "";
  sshGenerator =
    if builtins.compareVersions (config.systemd.package.version or "257.6") "256" >= 0 then "1" else "";
  tmpfilesRules = builtins.concatStringsSep "\n" (config.systemd.tmpfiles.rules or [ ]);
  repartDevice = if repart.enable or false then repart.device else "";
  # nixvmTest.buildHang: the build says so and then never ends (a builder lost in the middle).
  buildHang = if config.nixvmTest.buildHang or false then "1" else "";
  args = [
    "-c"
    (''
      if [ -n "$buildHang" ]; then echo "nixvm-test: building, then hanging"; sleep 600; fi
      mkdir -p "$out/etc/repart.d"
      ln -s ${sw} "$out/sw"
      echo "not a real kernel: ${name}" > "$out/kernel"
      echo "not a real initrd: ${name}" > "$out/initrd"
      printf '#!/bin/sh\necho "init of ${name}"\n' > "$out/init"
      mkdir -p "$out/bin"
      printf '%s\n' "$switchScript" > "$out/bin/switch-to-configuration"
      chmod +x "$out/bin/switch-to-configuration"
      chmod +x "$out/init"
      printf '%s\n' "$kernelParams" > "$out/kernel-params"
      printf '%s\n' "$configJson" > "$out/config.json"
      printf '%s' "$fstab" > "$out/etc/fstab"
      if [ -n "$nixConf" ]; then mkdir -p "$out/etc/nix"; printf '%s' "$nixConf" > "$out/etc/nix/nix.conf"; fi
      if [ -n "$sshdConfig" ]; then
        mkdir -p "$out/etc/ssh"
        printf '%s' "$sshdConfig" > "$out/etc/ssh/sshd_config"
        if [ -n "$sshGenerator" ]; then
          mkdir -p "$out/etc/systemd/system-generators"
          echo "systemd-ssh-generator" > "$out/etc/systemd/system-generators/systemd-ssh-generator"
        fi
      fi
      if [ -n "$hostKey" ]; then mkdir -p "$out/etc/ssh"; cp "$hostKey" "$out/etc/ssh/ssh_host_ed25519_key"; fi
      if [ -n "$tmpfilesRules" ]; then
        mkdir -p "$out/etc/tmpfiles.d"
        printf '%s\n' "$tmpfilesRules" > "$out/etc/tmpfiles.d/00-nixos.conf"
      fi
      if [ -n "$autologin" ]; then
        mkdir -p "$out/etc/systemd/system"
        printf '[Service]\nExecStart=@agetty agetty --login-program login --autologin %s --keep-baud %%I 115200,38400,9600 vt220\n' "$autologin" > "$out/etc/systemd/system/serial-getty@.service"
      fi
      if [ -n "$repartDevice" ]; then printf '%s\n' "$repartDevice" > "$out/etc/repart.d/device"; fi
    ''
    + repartScript
    + unitsScript)
  ];
}
// unitAttrs
)
