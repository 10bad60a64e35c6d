/** Which configurations nixvm refuses to start because they boot from a disk of their own. */
import { describe, expect, it } from 'vitest';
import { bootProblem } from '../../src/core/vm/boot-shape.ts';

const root = (device: string | null, fsType: string | null, label: string | null = null) => ({
  boot: { loader: null, root: { device, fsType, label } },
});

describe('bootProblem', () => {
  it("accepts the seed's shape: no loader, a tmpfs root, or nothing said at all", () => {
    expect(bootProblem('dev', {})).toBeNull();
    expect(bootProblem('dev', root('tmpfs', 'tmpfs'))).toBeNull();
    expect(bootProblem('dev', root('none', 'tmpfs'))).toBeNull();
    expect(bootProblem('dev', root('nix-store', 'virtiofs'))).toBeNull();
    expect(bootProblem('dev', { boot: { loader: null, root: null } })).toBeNull();
  });

  it('refuses an enabled boot loader, naming the option to turn off', () => {
    expect(bootProblem('laptop', { boot: { loader: 'systemd-boot', root: null } })).toBe(
      '"laptop" is not a VM nixvm can boot: it enables a boot loader (boot.loader.systemd-boot.enable) and vfkit loads its kernel directly; set boot.loader.systemd-boot.enable = false if it is meant to run as a VM.',
    );
  });

  it('refuses a root on a disk nixvm does not attach, by label, by label option, or by device', () => {
    expect(bootProblem('disk-vm', root('/dev/disk/by-label/nixos', 'ext4'))).toMatch(
      /^"disk-vm" is not a VM nixvm can boot: its root file system is on the disk labelled nixos, which nixvm does not attach; give it a tmpfs root/,
    );
    expect(bootProblem('x', root(null, 'ext4', 'root'))).toContain('on the disk labelled root,');
    expect(bootProblem('x', root('/dev/sda1', 'ext4'))).toContain('on /dev/sda1,');
    expect(bootProblem('x', root('/dev/disk/by-uuid/1234', 'btrfs'))).toContain('on /dev/disk/by-uuid/1234,');
  });

  it('accepts a root on a disk label nixvm attaches', () => {
    expect(bootProblem('x', root('/dev/disk/by-label/nixos', 'ext4'), ['nixos'])).toBeNull();
  });
});
