/**
 * How a VM's state reads to a user, shared by every face (native menu, dropdown, CLI) so they
 * never disagree. Pure functions over the contract's shapes.
 */
import type { FlakeSnapshot, VmExit, VmSnapshot } from './types.ts';

/** Starting or running: the VM has (or is getting) a guest. */
export function isUp(vm: Pick<VmSnapshot, 'state'>): boolean {
  return vm.state === 'starting' || vm.state === 'running';
}

export function isBuilding(vm: Pick<VmSnapshot, 'build'>): boolean {
  return vm.build.status === 'building';
}

/** A VM whose config failed to evaluate has no spec and cannot be started or built. */
export function canStart(vm: Pick<VmSnapshot, 'spec' | 'state'>): boolean {
  return vm.spec !== null && (vm.state === 'stopped' || vm.state === 'crashed');
}

/** The stale VM is running an older closure: "Restart to apply" is the fix. */
export function needsRestart(vm: Pick<VmSnapshot, 'stale' | 'state'>): boolean {
  return vm.stale && isUp(vm);
}

export function sshAvailable(vm: Pick<VmSnapshot, 'spec' | 'sshCommand'>): boolean {
  return vm.sshCommand !== null && vm.spec?.ssh.enabled !== false;
}

export function exitText(exit: VmExit): string {
  if (exit.signal) return `killed by ${exit.signal}`;
  if (exit.code !== null) return `exit code ${exit.code}`;
  return 'exited';
}

export function stateLabel(vm: Pick<VmSnapshot, 'state' | 'exit'>): string {
  switch (vm.state) {
    case 'stopped':
      return 'Stopped';
    case 'starting':
      return 'Starting…';
    case 'running':
      return 'Running';
    case 'stopping':
      return 'Stopping…';
    case 'crashed':
      return vm.exit ? `Crashed (${exitText(vm.exit)})` : 'Crashed';
  }
}

/** "Building 42%", or null when no build is in flight. */
export function buildLabel(vm: Pick<VmSnapshot, 'build'>): string | null {
  if (vm.build.status !== 'building') return null;
  const p = vm.build.progress;
  return p ? `Building ${Math.round(p.percent)}%` : 'Building…';
}

/** One short line: "Running", "Building 42%", "Crashed (exit code 1)", "Evaluation failed". */
export function vmStatusLine(vm: VmSnapshot): string {
  if (vm.spec === null && vm.error) return 'Evaluation failed';
  const build = buildLabel(vm);
  const parts = [build && vm.state === 'stopped' ? build : stateLabel(vm)];
  if (build && vm.state !== 'stopped') parts.push(build.toLowerCase());
  if (vm.build.status === 'failed' && !build) parts.push('build failed');
  if (needsRestart(vm)) parts.push('needs restart');
  else if (vm.stale) parts.push('out of date');
  return parts.join(' · ');
}

/** "0 B", "812 KiB", "1.5 GiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 || v >= 100 || Number.isInteger(v) ? Math.round(v) : Number(v.toFixed(1))} ${units[i]}`;
}

/** The folder's own name, as Finder shows it ("vms" for ~/src/vms); the full path goes in a tooltip. */
export function folderName(dir: string): string {
  const parts = dir.split('/').filter(Boolean);
  return parts.at(-1) ?? dir;
}

export function formatMemory(mib: number | null): string | null {
  if (mib === null) return null;
  if (mib >= 1024 && mib % 1024 === 0) return `${mib / 1024} GiB`;
  if (mib >= 1024) return `${(mib / 1024).toFixed(1)} GiB`;
  return `${mib} MiB`;
}

/** "2 CPUs · 4 GiB" */
export function resourcesLine(vm: Pick<VmSnapshot, 'cpus' | 'memoryMiB'>): string | null {
  const parts: string[] = [];
  if (vm.cpus !== null) parts.push(`${vm.cpus} CPU${vm.cpus === 1 ? '' : 's'}`);
  const mem = formatMemory(vm.memoryMiB);
  if (mem) parts.push(mem);
  return parts.length ? parts.join(' · ') : null;
}

/** "/nix/store/<hash>-hello-2.12.drv" → "hello-2.12" */
export function drvName(storePath: string | null): string | null {
  if (!storePath) return null;
  const base = storePath.slice(storePath.lastIndexOf('/') + 1).replace(/\.drv$/, '');
  const m = /^[0-9a-z]{32}-(.+)$/.exec(base);
  return m ? m[1]! : base;
}

/** The address to show first: IPv4 when leased (what people type), else IPv6 link-local. */
export function primaryAddress(vm: Pick<VmSnapshot, 'ipv4' | 'ipv6'>): string | null {
  return vm.ipv4 ?? vm.ipv6;
}

export function truncate(text: string, max: number): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

export function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .find((l) => l.trim() !== '')
      ?.trim() ?? ''
  );
}

/** "3s", "4m 10s", "2h 5m", "3d 4h". */
export function formatElapsed(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/**
 * "3 other configurations hidden": how many of a flake's nixosConfigurations are not shown as VMs
 * (they set none of the options nixvm reads, or the settings exclude them), next to `vms` shown
 * ones ("3 configurations hidden" when none is); null when none is hidden. Every face counts them
 * in these words: `ls`, the dropdown's flake header, the settings window.
 */
export function hiddenCount(hidden: number, vms: number): string | null {
  if (hidden <= 0) return null;
  return `${hidden} ${vms > 0 ? 'other ' : ''}configuration${hidden === 1 ? '' : 's'} hidden`;
}

/** Why a configuration is hidden, for the line after hiddenCount's. */
export const HIDDEN_WHY = 'not VMs, or excluded in the settings';

/** Names inside a sentence, each quoted as every sentence quotes a VM name (JSON's escapes). */
export function quotedNames(list: readonly string[], max = 3): string {
  const shown = list
    .slice(0, max)
    .map((n) => JSON.stringify(n))
    .join(', ');
  return list.length > max ? `${shown}, …` : shown;
}

/**
 * What a user should read about a flake, in one sentence, or null when there is nothing to say
 * (it evaluated and its VMs are listed). `vms` is how many VMs of it are listed. Each state has its
 * own sentence: evaluating (for how long), nix missing, the folder missing, evaluation failed (nix's
 * reason, translated), no VMs among its configurations, really empty.
 *
 * `shellWord` quotes the folder inside the command the sentence suggests: it is host/shell.ts's
 * (the quoting of every command nixvm suggests), which the api, running in a browser too, cannot
 * load itself.
 */
export function flakeSentence(
  f: FlakeSnapshot,
  now: number,
  vms: number,
  shellWord: (word: string) => string,
): string | null {
  if (f.error && f.state !== 'evaluating') return firstLine(f.error);
  if (f.state === 'evaluating') {
    const since = f.evaluatingSince !== null ? ` (for ${formatElapsed(now - f.evaluatingSince)})` : '';
    return `${f.dir} is still being evaluated${since}; its VMs appear when nix is done.`;
  }
  const hidden = f.hidden.length;
  const include = `\`nixvm flake include ${shellWord(f.dir)} NAME\` shows one as a VM`;
  if (vms === 0 && hidden > 0) {
    return `${f.dir} defines no VMs: its ${hidden === 1 ? 'only configuration' : `${hidden} configurations`} (${quotedNames(f.hidden)}) set${hidden === 1 ? 's' : ''} none of the options nixvm reads (virtualisation.*), or the settings exclude ${hidden === 1 ? 'it' : 'them'}; ${include}.`;
  }
  if (vms === 0) {
    return `${f.dir} defines no VMs: its nixosConfigurations is empty; define each VM as nixosConfigurations.<name>.`;
  }
  if (hidden > 0) {
    return `${hiddenCount(hidden, vms)} in ${f.dir} (${quotedNames(f.hidden)}): ${HIDDEN_WHY}; ${include}.`;
  }
  if (f.evaluating && f.evaluatingSince !== null) {
    return `${f.dir} is being evaluated again (for ${formatElapsed(now - f.evaluatingSince)}).`;
  }
  return null;
}

/**
 * nix's message with its code frames moved left, for a face with little width (the dropdown's
 * cards wrap at their edge): each run of frame lines (`   12|  source`, `     |  ^`) loses the
 * indentation they all share, and an `at <file>:<line>:<col>:` line its own. Columns inside a
 * frame keep lining up, so the caret still points at the error; nothing else changes.
 */
export function compactCodeFrames(text: string): string {
  const lines = text.split('\n');
  const frame = /^( +)\d*\|/;
  for (let i = 0; i < lines.length; ) {
    if (!frame.test(lines[i]!)) {
      lines[i] = lines[i]!.replace(/^ +(at .*:\d+:\d+:?)$/, '$1');
      i++;
      continue;
    }
    let j = i;
    let common = Number.POSITIVE_INFINITY;
    while (j < lines.length && frame.test(lines[j]!)) {
      common = Math.min(common, frame.exec(lines[j]!)![1]!.length);
      j++;
    }
    for (let k = i; k < j; k++) lines[k] = lines[k]!.slice(common);
    i = j;
  }
  return lines.join('\n');
}
