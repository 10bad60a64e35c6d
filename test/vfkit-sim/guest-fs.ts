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
 * An fstab entry with `x-systemd.makefs` (NixOS's autoFormat) on a `/dev/<disk>` does the same
 * as systemd-makefs: a disk with no file system is formatted (the same header, no label), one
 * with a file system is left alone; a `/dev/<disk>` whose file system is not the entry's type
 * (a blank disk, the store image where the writable disk was expected) does not mount.
 */
import { spawnSync } from 'node:child_process';
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
  /** The file system found on it: `erofs`, or the format a header names; null for a blank disk. */
  fsType: string | null;
}

export interface FstabEntry {
  device: string;
  target: string;
  fsType: string;
  /** The fourth field, split on commas. */
  options: string[];
}

export interface GuestStorageConfig {
  fstab: FstabEntry[];
  repart: { device: string; partitions: Array<{ name: string; label: string; format: string }> } | null;
}

/** The header repart's stand-in writes at the start of a disk it formats. */
export const REPART_MAGIC = 'NIXVM-SIM-REPART\n';

/**
 * What blkid would find at the start of a disk: an erofs superblock (at 1024; its volume name at
 * +64) or this simulator's header (its label and format). Nothing: a blank disk.
 */
export function probeDisk(file: string): { label: string | null; fsType: string | null } {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return { label: null, fsType: null };
  }
  try {
    const head = Buffer.alloc(1024 + 128);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    if (head.subarray(0, REPART_MAGIC.length).toString('latin1') === REPART_MAGIC) {
      const text = head.subarray(0, 512).toString('utf8').replace(/\0.*$/s, '');
      return {
        label: /^label=(.*)$/m.exec(text)?.[1] || null,
        fsType: /^format=(.*)$/m.exec(text)?.[1] || 'unknown',
      };
    }
    if (n >= 1024 + 80 && head.readUInt32LE(1024) === 0xe0f5e1e2) {
      const raw = head.subarray(1024 + 64, 1024 + 80);
      const end = raw.indexOf(0);
      return { label: raw.subarray(0, end < 0 ? 16 : end).toString('utf8') || null, fsType: 'erofs' };
    }
    return { label: null, fsType: null };
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
    out.push({ name, path: disk.imagePath, readOnly: disk.readOnly, bytes, ...probeDisk(disk.imagePath) });
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
    const [device, target, fsType, options] = t.split(/\s+/);
    if (device && target && fsType) fstab.push({ device, target, fsType, options: (options ?? '').split(',') });
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
          d.fsType = p.format;
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
      const d = byName.get(m.device);
      if (!d) {
        failed.push(`[ TIME ] Timed out waiting for device ${m.device}.`);
        continue;
      }
      if (m.options.includes('x-systemd.makefs')) {
        // systemd-makefs@<dev>.service, which the mount requires (systemd's makefs.c texts).
        const unit = `Make File System on ${m.device}`;
        if (d.fsType) {
          lines.push(`systemd-makefs: '${m.device}' is not empty (contains file system of type ${d.fsType}), exiting.`);
        } else if (d.readOnly) {
          failed.push(`[FAILED] Failed to start ${unit}.`, `[DEPEND] Dependency failed for ${m.target}.`);
          continue;
        } else {
          format(d, '', m.fsType);
          d.label = null;
          d.fsType = m.fsType;
          lines.push(`systemd-makefs: formatting ${m.device} as ${m.fsType}...`, `[  OK  ] Finished ${unit}.`);
        }
      }
      if (m.fsType !== 'auto' && m.fsType !== 'none' && d.fsType !== m.fsType) {
        // approximated: mount(8)'s words for a file system that is not there.
        lines.push(
          `mount: ${m.target}: wrong fs type, bad option, bad superblock on ${m.device}, missing codepage or helper program, or other error.`,
        );
        failed.push(`[FAILED] Failed to mount ${m.target}.`);
        continue;
      }
      lines.push(`mounting ${m.device} on ${m.target}...`);
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

/**
 * Where a file the guest reads lies, through its mounts (the closure's fstab): a file on this
 * host (behind a virtio-fs share), a file in an erofs disk image, or nowhere the guest has it.
 * An overlay is read through its lower directories (what the guest writes in its upper one is
 * not known here), a bind mount through its source; a tmpfs is empty at boot; an ext4 disk is
 * not read. A closure that says nothing of its mounts sees this host's files.
 */
export type GuestFile =
  | { where: 'host'; path: string }
  | { where: 'image'; image: string; inner: string }
  | { where: 'nowhere'; why: string };

export function locateGuestFile(
  guestPath: string,
  cfg: GuestStorageConfig | null,
  disks: readonly GuestDisk[],
  shareDirs: ReadonlyMap<string, string>,
  depth = 0,
): GuestFile {
  if (!cfg) return { where: 'host', path: guestPath };
  if (!path.posix.isAbsolute(guestPath)) return { where: 'nowhere', why: 'it is not an absolute path' };
  const p = path.posix.normalize(guestPath);
  const under = (t: string) => t === '/' || p === t || p.startsWith(`${t}/`);
  const m = cfg.fstab.filter((e) => under(e.target)).sort((a, b) => b.target.length - a.target.length)[0];
  if (!m) return { where: 'nowhere', why: 'nothing is mounted there' };
  const rest = m.target === '/' ? p : p.slice(m.target.length);
  const through = (dir: string): GuestFile =>
    depth > 8
      ? { where: 'nowhere', why: 'its mounts go round in circles' }
      : locateGuestFile(dir + rest, cfg, disks, shareDirs, depth + 1);
  if (m.fsType === 'virtiofs') {
    const dir = shareDirs.get(m.device);
    return dir
      ? { where: 'host', path: path.join(dir, rest) }
      : { where: 'nowhere', why: `the ${m.device} share is not there` };
  }
  if (m.fsType === 'overlay') {
    const lower = m.options.find((o) => o.startsWith('lowerdir='))?.slice('lowerdir='.length) ?? '';
    let last: GuestFile = { where: 'nowhere', why: `the overlay on ${m.target} has no lower directory` };
    for (const dir of lower.split(':').filter(Boolean)) {
      last = through(dir);
      if (last.where !== 'nowhere') return last;
    }
    return last;
  }
  if (m.options.includes('bind')) return through(m.device);
  if (m.fsType === 'tmpfs') return { where: 'nowhere', why: `${m.target} is a tmpfs, empty at boot` };
  const label = /^\/dev\/disk\/by-label\/(.+)$/.exec(m.device)?.[1];
  const disk =
    label !== undefined ? disks.find((d) => d.label === label) : disks.find((d) => `/dev/${d.name}` === m.device);
  if (disk && disk.fsType === 'erofs') return { where: 'image', image: disk.path, inner: rest || '/' };
  return { where: 'nowhere', why: `${m.target} is ${m.device} (${m.fsType}), which the simulator does not read` };
}

/**
 * Is `inner` a regular file in the erofs image? Asked of dump.erofs (`--ls` of its directory:
 * NID, TYPE, FILENAME; type 1 is a regular file), the same in erofs-utils 1.5 and 1.8 (whose
 * heading line before it differs). Null when dump.erofs cannot run here.
 */
export function erofsHasFile(image: string, inner: string): boolean | null {
  const r = spawnSync('dump.erofs', ['--ls', `--path=${path.posix.dirname(inner)}`, image], { encoding: 'utf8' });
  if (r.error) return null;
  const name = path.posix.basename(inner);
  return (r.stdout ?? '').split('\n').some((l) => {
    const m = /^\s*\d+\s+(\d+)\s+(.+)$/.exec(l);
    return m?.[1] === '1' && m[2] === name;
  });
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
