/**
 * How a VM's state reads to a user, shared by every face (native menu, dropdown, CLI) so they
 * never disagree. Pure functions over the contract's shapes.
 */
import type { VmExit, VmSnapshot } from './types.ts';

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
