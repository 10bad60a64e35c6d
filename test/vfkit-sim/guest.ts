/**
 * What a NixOS guest writes on its serial console (hvc0): kernel lines with its command line,
 * stage 1 and stage 2, systemd units, the login prompt; the power-off sequence; a kernel panic.
 * Only the shape matters (the agent tails, follows and shows these lines), not the exact text.
 */
import path from 'node:path';

/** The guest's hostname: NixOS names its toplevel `<hash>-nixos-system-<hostname>-<version>`. */
export function hostnameFromKernel(kernelPath: string): string {
  const dir = path.basename(path.dirname(kernelPath));
  // nixos-system-<host>-<version>, or without a version (the test fixtures' stand-ins).
  const m = /^[0-9a-z]{32}-nixos-system-(.+?)(?:-\d+\.\d+[^-]*)?$/.exec(dir);
  return m?.[1] ?? 'nixos';
}

/** `[    1.234567] ` from the guest's uptime in ms. */
export function stamp(uptimeMs: number): string {
  const s = Math.floor(uptimeMs / 1000);
  const us = Math.floor((uptimeMs % 1000) * 1000);
  return `[${String(s).padStart(5)}.${String(us).padStart(6, '0')}] `;
}

export interface GuestFacts {
  hostname: string;
  cmdline: string;
  cpus: number;
  memoryMiB: number;
  /** virtio-fs tags, the Rosetta one included. */
  tags: string[];
  rosetta: boolean;
  macs: string[];
  /** The kernel's line for each disk (guest-fs.ts). */
  disks?: string[];
  /** Stage 1's storage lines when the closure says what it mounts (guest-fs.ts); else every tag is mounted. */
  storage?: string[] | null;
}

/** The boot, in phases: the kernel, stage 1, stage 2 with systemd, and the prompt. */
export function bootPhases(g: GuestFacts): {
  kernel: string[];
  stage1: string[];
  stage2: string[];
  network: string[];
  login: string[];
} {
  const kb = g.memoryMiB * 1024;
  return {
    kernel: [
      'Booting Linux on physical CPU 0x0000000000 [0x610f0000]',
      'Linux version 6.6.32 (nixbld@localhost) (gcc (GCC) 13.2.0, GNU ld (GNU Binutils) 2.41) #1-NixOS SMP Thu May 30 00:00:00 UTC 2024',
      'KASLR enabled',
      'efi: UEFI not found.',
      `Kernel command line: ${g.cmdline}`,
      `Memory: ${kb - 65536}K/${kb}K available (14976K kernel code, 2402K rwdata, 9080K rodata, 5888K init, 789K bss)`,
      `smp: Brought up 1 node, ${g.cpus} CPU${g.cpus === 1 ? '' : 's'}`,
      ...(g.disks ?? []),
      ...g.tags.map((t) => `virtiofs: found tag <${t}>`),
      'hvc0: console [hvc0] enabled',
      'Freeing unused kernel memory: 5888K',
      'Run /init as init process',
    ],
    stage1: [
      '',
      '<<< NixOS Stage 1 >>>',
      '',
      'loading module virtio_pci...',
      'loading module virtiofs...',
      'running udev...',
      'starting device mapper and LVM...',
      ...(g.storage ?? g.tags.map((t) => `mounting ${t} on /${t === 'nix-store' ? 'nix/.ro-store' : `run/${t}`}...`)),
      ...(g.storage ? [] : ['mounting tmpfs on /...']),
      '',
      '<<< NixOS Stage 2 >>>',
      '',
      'running activation script...',
      'setting up /etc...',
    ],
    stage2: [
      'Welcome to NixOS 24.05 (Uakari)!',
      '[  OK  ] Created slice Slice /system/getty.',
      '[  OK  ] Reached target Local File Systems.',
      '[  OK  ] Started Journal Service.',
      ...(g.rosetta ? ['[  OK  ] Started Register Rosetta as a binfmt_misc handler.'] : []),
      '[  OK  ] Reached target System Initialization.',
      '         Starting DHCP Client...',
    ],
    network: [
      ...g.macs.map((m, i) => `enp0s${i + 1}: link up, address ${m}`),
      '[  OK  ] Started DHCP Client.',
      '[  OK  ] Reached target Network.',
      '[  OK  ] Started SSH Daemon.',
      '[  OK  ] Reached target Multi-User System.',
    ],
    login: [
      '',
      '',
      `<<< Welcome to NixOS 24.05 (aarch64) - hvc0 >>>`,
      '',
      "Run 'nixos-help' for the NixOS manual.",
      '',
      `${g.hostname} login: `,
    ],
  };
}

export function shutdownLines(): string[] {
  return [
    '[  OK  ] Stopped target Multi-User System.',
    '         Stopping SSH Daemon...',
    '         Stopping DHCP Client...',
    '[  OK  ] Stopped SSH Daemon.',
    '[  OK  ] Stopped DHCP Client.',
    '[  OK  ] Reached target System Shutdown.',
    '[  OK  ] Reached target Late Shutdown Services.',
    '[  OK  ] Finished System Power Off.',
    '[  OK  ] Reached target System Power Off.',
  ];
}

export function panicLines(): string[] {
  return [
    'Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100',
    'CPU: 0 PID: 1 Comm: systemd Not tainted 6.6.32 #1-NixOS',
    '---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100 ]---',
  ];
}
