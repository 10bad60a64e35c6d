/**
 * The guest's view of its storage: the disks vfkit gave it, named by position as Linux names them
 * (each `nvme` device is a controller of its own: nvme0n1, nvme1n1…; `virtio-blk` disks are vda,
 * vdb…), the virtio-fs tags, and what its configuration mounts. A NixOS guest knows the latter from
 * its closure, so the fake guest reads it there: `<toplevel>/etc/fstab` (its fileSystems, as NixOS
 * writes them) and `<toplevel>/etc/repart.d/` (the systemd-repart definitions its initrd runs, and
 * in `device` the disk given to systemd-repart, boot.initrd.systemd.repart.device). The toplevel is
 * where the kernel command line's `init=` points.
 *
 * A mount whose tag or disk is missing fails as on a real guest: local-fs.target fails and the
 * guest sits in emergency mode, never finishing its boot. systemd-repart "formats" a blank disk by
 * writing a small header (this simulator's stand-in for a partition table and an ext4 file
 * system) that later boots find again, so a writable store that was kept is told from a new one.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Device, Disk } from './config.ts';

export interface GuestDisk {
  /** nvme0n1, vda… */
  name: string;
  path: string;
  readOnly: boolean;
  bytes: number;
  /** The file system label found on it (an erofs image's volume name, or a repart header's). */
  label: string | null;
}

interface FstabEntry {
  device: string;
  target: string;
  fsType: string;
}

export interface GuestStorageConfig {
  fstab: FstabEntry[];
  repart: { device: string; partitions: Array<{ name: string; label: string; format: string }> } | null;
}

/** The header repart's stand-in writes at the start of a disk it formats. */
export const REPART_MAGIC = 'NIXVM-SIM-REPART\n';

/** The volume name of an erofs image (superblock at 1024, name at +64), or of a repart header. */
export function diskLabel(file: string): string | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    const head = Buffer.alloc(1024 + 128);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    if (head.subarray(0, REPART_MAGIC.length).toString('latin1') === REPART_MAGIC) {
      return /^label=(.*)$/m.exec(head.subarray(0, 512).toString('utf8'))?.[1]?.replace(/\0.*$/s, '') ?? null;
    }
    if (n >= 1024 + 80 && head.readUInt32LE(1024) === 0xe0f5e1e2) {
      const raw = head.subarray(1024 + 64, 1024 + 80);
      const end = raw.indexOf(0);
      return raw.subarray(0, end < 0 ? 16 : end).toString('utf8') || null;
    }
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

function letters(i: number): string {
  let s = '';
  for (let n = i + 1; n > 0; n = Math.floor((n - 1) / 26)) s = String.fromCharCode(97 + ((n - 1) % 26)) + s;
  return s;
}

/** The guest's disks, in the order the kernel finds them. */
export function guestDisks(devices: readonly Device[]): GuestDisk[] {
  let nvme = 0;
  let blk = 0;
  const out: GuestDisk[] = [];
  for (const d of devices) {
    if (d.type !== 'nvme' && d.type !== 'virtio-blk') continue;
    const disk = d as Disk;
    const name = d.type === 'nvme' ? `nvme${nvme++}n1` : `vd${letters(blk++)}`;
    let bytes = 0;
    try {
      bytes = fs.statSync(disk.imagePath).size;
    } catch {
      /* vfkit checked it exists */
    }
    out.push({ name, path: disk.imagePath, readOnly: disk.readOnly, bytes, label: diskLabel(disk.imagePath) });
  }
  return out;
}

/** The kernel's line for a disk, as `sd`/`nvme`/`virtio_blk` print it. */
export function diskLine(d: GuestDisk): string {
  const sectors = Math.floor(d.bytes / 512);
  const mb = Math.round(d.bytes / 1e6);
  const mib = Math.round(d.bytes / (1024 * 1024));
  const what = d.name.startsWith('nvme') ? `nvme ${d.name.replace(/n1$/, '')}` : 'virtio_blk virtio2';
  return `${what}: [${d.name}] ${sectors} 512-byte logical blocks (${mb} MB/${mib} MiB)${d.readOnly ? ' (ro)' : ''}${d.label ? ` LABEL=${d.label}` : ''}`;
}

/** The toplevel the kernel command line boots (`init=<toplevel>/init`). */
export function toplevelOf(cmdline: string, kernel: string): string {
  const init = /(?:^|\s)init=(\S+)/.exec(cmdline)?.[1];
  return init ? path.dirname(init) : path.dirname(kernel);
}

/** What the closure says the guest mounts and repartitions; null when it says nothing (not a NixOS-like closure). */
export function readGuestConfig(toplevel: string): GuestStorageConfig | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(toplevel, 'etc', 'fstab'), 'utf8');
  } catch {
    return null;
  }
  const fstab: FstabEntry[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    const [device, target, fsType] = t.split(/\s+/);
    if (device && target && fsType) fstab.push({ device, target, fsType });
  }
  let repart: GuestStorageConfig['repart'] = null;
  const dir = path.join(toplevel, 'etc', 'repart.d');
  try {
    const device = fs.readFileSync(path.join(dir, 'device'), 'utf8').trim();
    const partitions = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.conf'))
      .sort()
      .map((f) => {
        const conf = fs.readFileSync(path.join(dir, f), 'utf8');
        return {
          name: f.replace(/\.conf$/, ''),
          label: /^Label=(.*)$/m.exec(conf)?.[1] ?? '',
          format: /^Format=(.*)$/m.exec(conf)?.[1] ?? '',
        };
      });
    if (device) repart = { device, partitions };
  } catch {
    repart = null;
  }
  // Mount points in the order systemd mounts them: parents first.
  fstab.sort((a, b) => a.target.split('/').length - b.target.split('/').length || a.target.localeCompare(b.target));
  return { fstab, repart };
}

export interface StorageBoot {
  /** Console lines of stage 1: repart, then a line per mount. */
  lines: string[];
  /** When something it mounts is missing: the emergency-mode lines; the boot never finishes. */
  emergency: string[] | null;
}

/**
 * Run the guest's repart and mounts against what it was given. `format` is called for a disk
 * repart formats (the caller writes its header).
 */
export function bootStorage(
  cfg: GuestStorageConfig,
  disks: GuestDisk[],
  tags: readonly string[],
  format: (d: GuestDisk, label: string, fsFormat: string) => void,
): StorageBoot {
  const lines: string[] = [];
  const failed: string[] = [];
  const byName = new Map(disks.map((d) => [`/dev/${d.name}`, d]));
  if (cfg.repart) {
    const d = byName.get(cfg.repart.device);
    if (!d) {
      failed.push(`[FAILED] Failed to start Repartition Root Disk: ${cfg.repart.device} does not exist.`);
    } else if (d.readOnly) {
      failed.push(`[FAILED] Failed to start Repartition Root Disk: cannot open ${cfg.repart.device} read-write.`);
    } else {
      for (const p of cfg.repart.partitions) {
        if (d.label === p.label) {
          lines.push(`systemd-repart: ${cfg.repart.device} already has partition ${p.name} (${p.label}), keeping it.`);
        } else {
          format(d, p.label, p.format);
          d.label = p.label;
          lines.push(
            `systemd-repart: adding new partition ${p.name} (${p.label}) to ${cfg.repart.device}, formatting ${p.format}.`,
          );
        }
      }
    }
  }
  for (const m of cfg.fstab) {
    if (m.fsType === 'virtiofs') {
      if (tags.includes(m.device)) lines.push(`mounting ${m.device} on ${m.target}...`);
      else {
        lines.push(`virtiofs: tag <${m.device}> not found`);
        failed.push(`[FAILED] Failed to mount ${m.target}.`);
      }
      continue;
    }
    const label = /^\/dev\/disk\/by-label\/(.+)$/.exec(m.device)?.[1];
    if (label !== undefined) {
      const d = disks.find((x) => x.label === label);
      if (d) lines.push(`mounting /dev/${d.name} (${label}, ${m.fsType}) on ${m.target}...`);
      else failed.push(`[ TIME ] Timed out waiting for device ${m.device}.`);
      continue;
    }
    if (m.device.startsWith('/dev/')) {
      if (byName.has(m.device)) lines.push(`mounting ${m.device} on ${m.target}...`);
      else failed.push(`[ TIME ] Timed out waiting for device ${m.device}.`);
      continue;
    }
    lines.push(`mounting ${m.fsType} on ${m.target}...`);
  }
  if (failed.length === 0) return { lines, emergency: null };
  return {
    lines,
    emergency: [
      ...failed,
      '[DEPEND] Dependency failed for Local File Systems.',
      'You are in emergency mode. After logging in, type "journalctl -xb" to view',
      'system logs, "systemctl reboot" to reboot, "systemctl default" or "exit"',
      'to try again to boot into default mode.',
    ],
  };
}

/** repart's stand-in: a header naming the partition's label and format at the start of the disk. */
export function writeRepartHeader(file: string, label: string, format: string): void {
  const header = Buffer.alloc(512);
  header.write(`${REPART_MAGIC}label=${label}\nformat=${format}\n`, 0, 'utf8');
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, header, 0, header.length, 0);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The user the console's getty logs in without asking: NixOS writes
 * `services.getty.autologinUser` into serial-getty@.service as agetty's `--autologin <user>`.
 */
export function readAutologin(toplevel: string): string | null {
  for (const unit of ['serial-getty@.service', 'getty@.service']) {
    try {
      const text = fs.readFileSync(path.join(toplevel, 'etc', 'systemd', 'system', unit), 'utf8');
      const m = /--autologin[= ]+([A-Za-z0-9_][A-Za-z0-9_.-]*)/.exec(text);
      if (m) return m[1]!;
    } catch {
      // No such unit: the getty asks.
    }
  }
  return null;
}
