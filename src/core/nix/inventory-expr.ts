/**
 * The Nix side of the inventory: a function applied (`nix eval --apply`) to a flake's
 * nixosConfigurations. Kept as text because `--apply` takes an expression and pure flake
 * evaluation may not import files from outside the flake.
 *
 * Every option is read defensively (`or`, `tryEval`) so the same code reads a real
 * `nixosSystem` result, a seed-style VM (phaer/nixos-vm-on-macos) and the plain attrsets of the
 * test fixtures. Missing options come back as null; the documented defaults are applied in
 * TypeScript (inventory.ts), in one place.
 */

/** `inspect name cfg` → the facts the agent needs about one VM, deeply forced by the callers. */
const INSPECT = `
  inspect = name: c:
    let
      cfg = c.config or (throw ("nixosConfigurations." + name + " is not a NixOS configuration (it has no 'config')"));
      top = cfg.system.build.toplevel or (throw ("nixosConfigurations." + name + " has no config.system.build.toplevel"));
      v = cfg.virtualisation or { };
      pathStr = x: if builtins.isPath x then toString x else x;
      attempt = default: x: let r = builtins.tryEval x; in if r.success then r.value else default;
      hp = attempt null (cfg.nixpkgs.hostPlatform or null);
      sys =
        if builtins.isString hp then hp
        else if builtins.isAttrs hp && hp ? system then hp.system
        else attempt null (cfg.nixpkgs.system or top.system or null);
      rawShares = v.sharedDirectories or { };
      shares = if builtins.isAttrs rawShares then rawShares else { };
      users = cfg.users.users or { };
      normalUsers = builtins.filter (u: ((builtins.getAttr u users).isNormalUser or false) == true) (builtins.attrNames users);
      ssh = cfg.services.openssh or { };
      ports = ssh.ports or [ ];
      res = v.resolution or null;
      bool = x: let r = attempt null x; in if builtins.isBool r then r else null;
      storeImage = bool (v.useNixStoreImage or null);
      # What the guest mounts: only device and fsType, each read on its own.
      rawFs = attempt { } (cfg.fileSystems or { });
      fileSystems = if builtins.isAttrs rawFs then builtins.mapAttrs (mp: f: {
        device = let d = attempt null (f.device or null); in if builtins.isString d then d else null;
        fsType = let t = attempt null (f.fsType or null); in if builtins.isString t then t else null;
      }) rawFs else null;
      repart = attempt { } (cfg.boot.initrd.systemd.repart or { });
      # nixpkgs' vz-vm backend (darwin.linux-builder-vz) has no useNixStoreImage: it always boots
      # the store image its /nix/.ro-store mounts (erofs, by label), and keeps the writable store
      # on the disk its /nix/.rw-store names.
      mountOf = mp: let m = attempt null (if builtins.isAttrs rawFs && builtins.hasAttr mp rawFs then builtins.getAttr mp rawFs else null); in if builtins.isAttrs m then m else { };
      fieldOf = m: k: let x = attempt null (if builtins.hasAttr k m then builtins.getAttr k m else null); in if builtins.isString x then x else null;
      roErofs = builtins.isAttrs rawFs && fieldOf (mountOf "/nix/.ro-store") "fsType" == "erofs";
      imageStore = storeImage == true || (storeImage == null && roErofs);
      services = let s = attempt { } (cfg.systemd.services or { }); in if builtins.isAttrs s then s else { };
      diskSize = attempt null (v.diskSize or null);
      loader = cfg.boot.loader or { };
      rootFs = attempt null ((cfg.fileSystems or { })."/" or null);
    in {
      drvPath = builtins.unsafeDiscardStringContext top.drvPath;
      system = if builtins.isString sys then sys else null;
      # What nix builds the closure for (a real NixOS: the same as its hostPlatform).
      buildSystem = let s = attempt null (top.system or null); in if builtins.isString s then s else null;
      kernelParams = cfg.boot.kernelParams or [ ];
      cores = v.cores or null;
      memorySize = v.memorySize or null;
      macAddress = v.macAddress or null;
      rosetta = v.rosetta.enable or null;
      shares = builtins.mapAttrs (tag: s: {
        source = pathStr (s.source or null);
        target = pathStr (s.target or null);
      }) shares;
      graphics = v.graphics or null;
      resolution = if builtins.isAttrs res then { x = res.x or null; y = res.y or null; } else null;
      mountHostNixStore = v.mountHostNixStore or null;
      useNixStoreImage = attempt null (v.useNixStoreImage or null);
      # The seed runner's store and disk options (modules/nixos/build.nix, nixpkgs' nix-builder-vm).
      writableStore = bool (v.writableStore or null);
      writableStoreUseTmpfs = bool (v.writableStoreUseTmpfs or null);
      useHostCerts = bool (v.useHostCerts or null);
      diskSize = if builtins.isInt diskSize || builtins.isString diskSize then diskSize else null;
      rosettaTag = let t = attempt null (v.rosetta.mountTag or null); in if builtins.isString t then t else null;
      # mkfs.erofs comes from the flake's own host package set (built for the host, through nix).
      hostErofsUtils = if imageStore
        then bool ((v.host.pkgs or { }) ? erofs-utils)
        else null;
      fileSystems = fileSystems;
      storeImageMount = roErofs;
      rwStoreDevice = if builtins.isAttrs rawFs then fieldOf (mountOf "/nix/.rw-store") "device" else null;
      # vz-vm's runner passes console=hvc0 and regInfo= itself (its boot.kernelParams lack them).
      vz = attempt false (builtins.isAttrs (v.vz or null));
      # The guest loads regInfo= from its kernel command line into its nix database (vm-base.nix's
      # register-nix-paths; qemu-vm.nix's postBootCommands).
      registersPaths = attempt false (services ? register-nix-paths)
        || builtins.length (builtins.split "regInfo=" (let p = attempt "" (cfg.boot.postBootCommands or ""); in if builtins.isString p then p else "")) > 1;
      # nix-builder-vz-vm copies the $KEYS share's *.pub to where its sshd reads them, at boot.
      stagedKeysScript = let x = attempt null (services.copy-builder-keys.script or null); in
        if builtins.isString x && builtins.stringLength x <= 4096 then x else null;
      repartDevice = if builtins.isAttrs repart && (attempt false (repart.enable or false)) == true
        then (let d = attempt null (repart.device or null); in if builtins.isString d then d else null)
        else null;
      ssh = {
        enable = ssh.enable or null;
        port = if builtins.isList ports && ports != [ ] then builtins.head ports else null;
        users = normalUsers;
        authorizedKeysFiles = let a = attempt [ ] (ssh.authorizedKeysFiles or [ ]); in
          if builtins.isList a then builtins.filter builtins.isString a else [ ];
        # A fixed host key in the closure (nixpkgs' nix-builder-vm ships a published one): pinned.
        hostKey = let
          e = attempt null ((cfg.environment.etc or { })."ssh/ssh_host_ed25519_key.pub" or null);
          t = if builtins.isAttrs e then attempt null (
            if e ? source && e.source != null then builtins.readFile e.source else e.text or null
          ) else null;
        in if builtins.isString t then t else null;
        # Does anything write the ssh.authorized_keys.root credential (tmpfiles' f^ rule, as
        # upstream's provision.conf has it)?
        keyCredential = let
          t = attempt "" (builtins.toJSON [
            (attempt [ ] (cfg.systemd.tmpfiles.rules or [ ]))
            (attempt { } (cfg.systemd.tmpfiles.settings or { }))
          ]);
        in builtins.isString t && builtins.match ".*ssh[.]authorized_keys[.]root.*" t != null;
      };
      # The guest's own nix, for using the VM as a builder (nixpkgs' nix-builder-vm sets these).
      nix = let
        n = cfg.nix or { };
        settings = attempt { } (n.settings or { });
        strs = x: let r = attempt null x; in if builtins.isList r then builtins.filter builtins.isString r else null;
      in {
        enable = bool (n.enable or null);
        trustedUsers = strs (settings.trusted-users or null);
        systemFeatures = strs (settings.system-features or null);
        extraPlatforms = strs (settings.extra-platforms or null);
      };
      # How it boots: a boot loader or a root on a disk nixvm does not attach means it is not a VM
      # nixvm can direct-boot (checked before a start).
      boot = {
        loader =
          if attempt false (loader.grub.enable or false) == true then "grub"
          else if attempt false (loader.systemd-boot.enable or false) == true then "systemd-boot"
          else null;
        root = if builtins.isAttrs rootFs then {
          device = attempt null (rootFs.device or null);
          fsType = attempt null (rootFs.fsType or null);
          label = attempt null (rootFs.label or null);
        } else null;
      };
    };
`;

/**
 * `vmOptions c` → which of the options nixvm reads a configuration sets (by name): any at all
 * makes it a VM; none (a laptop's or a server's configuration) hides it. Presence is what counts:
 * these options exist only where a VM module (the seed's, or nixpkgs' qemu-vm.nix) declares them.
 * `virtualisation.rosetta` is declared in every NixOS configuration, so it counts only when on.
 */
const VM_CHECK = `
  vmOptions = c:
    let
      v = (c.config or { }).virtualisation or { };
      read = [ "cores" "memorySize" "macAddress" "sharedDirectories" "graphics" "resolution"
        "mountHostNixStore" "useNixStoreImage" "writableStore" ];
    in
    builtins.filter (o: builtins.hasAttr o v) read
    ++ (if ((v.rosetta or { }).enable or false) == true then [ "rosetta.enable" ] else [ ]);
`;

/** Which configurations to treat as VMs whatever their options say, or never (per-flake settings). */
export interface ConfigurationFilter {
  include?: readonly string[];
  exclude?: readonly string[];
}

function nixList(names: readonly string[] | undefined): string {
  return `[ ${(names ?? []).map(nixString).join(' ')} ]`;
}

function filterLet(f: ConfigurationFilter): string {
  return `include = ${nixList(f.include)}; exclude = ${nixList(f.exclude)}; ${VM_CHECK}`;
}

/** A Nix string literal for any text (for VM names inside expressions). */
export function nixString(s: string): string {
  const body = s.replace(/[\\"\n\r\t]|\$\{/g, (m) => {
    switch (m) {
      case '\\':
        return '\\\\';
      case '"':
        return '\\"';
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      case '\t':
        return '\\t';
      default:
        return '\\${';
    }
  });
  return `"${body}"`;
}

/**
 * All VMs at once. Each VM is forced inside `tryEval`, so a `throw` or failed `assert` in one
 * config marks only that VM (`{ failed = true; }`); errors tryEval cannot catch (abort, type
 * errors, infinite recursion) fail the whole call, and the caller then evaluates VMs alone.
 */
export function batchExpr(filter: ConfigurationFilter = {}): string {
  return `let ${INSPECT} ${filterLet(filter)} in cs: builtins.mapAttrs (name: c:
  if builtins.elem name exclude then { other = "excluded"; } else
  let r = builtins.tryEval (
    let
      vo = vmOptions c;
      x = if vo != [ ] || builtins.elem name include then inspect name c else null;
    in builtins.deepSeq x x);
  in if !r.success then { failed = true; } else if r.value == null then { other = "not-a-vm"; } else { ok = r.value; }) cs`;
}

/** Every configuration, none included or excluded by settings. */
export const BATCH_EXPR = batchExpr();

/**
 * One configuration, no tryEval: when it fails, nix's own error message is what we want. A
 * configuration that is not a VM comes back as `{ other = "not-a-vm"; }`.
 */
export function singleExpr(name: string, filter: ConfigurationFilter = {}): string {
  const n = nixString(name);
  return `let ${INSPECT} ${filterLet(filter)} in cs: let c = builtins.getAttr ${n} cs; x = if vmOptions c != [ ] || builtins.elem ${n} include then inspect ${n} c else { other = "not-a-vm"; }; in builtins.deepSeq x x`;
}

/** Just the names, for when the batched call failed. */
export const NAMES_EXPR = 'cs: builtins.attrNames cs';
