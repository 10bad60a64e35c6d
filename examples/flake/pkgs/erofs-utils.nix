# virtualisation.host.pkgs.erofs-utils: the seed takes mkfs.erofs from nixpkgs for the host; the
# example wraps Debian's erofs-utils (apt-get install erofs-utils), to stay offline.
derivation {
  name = "erofs-utils-host";
  system = "x86_64-linux";
  builder = "/bin/sh";
  PATH = "/usr/bin:/bin";
  args = [
    "-c"
    ''
      mkdir -p "$out/bin"
      for tool in mkfs.erofs fsck.erofs dump.erofs; do
        printf '#!/bin/sh\nexec /usr/bin/%s "$@"\n' "$tool" > "$out/bin/$tool"
        chmod +x "$out/bin/$tool"
      done
    ''
  ];
}
