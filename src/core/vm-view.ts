/**
 * One VM as every face sees it: a pure function from the facts the owners recorded (the entry the
 * flake defines, the supervisor's run, the last build, the addresses) to the contract's snapshot.
 * Staleness compares recorded facts: the drvPath and the device facts the run booted with against
 * what the flake says now. Nothing here composes an argv or touches the disk.
 */
import { ownValue } from '../api/records.ts';
import type { ApplyOutcome } from '../api/types.ts';
import type { BuildInfo, Settings, SharedDir, VmDisks, VmPlatform, VmSnapshot, VmUsage } from '../api/types.ts';
import type { BuiltRecord } from './closure-store.ts';
import type { VmEntry } from './flake-set.ts';
import type { VmStatus } from './vm/supervisor.ts';
import { previewApply } from './switch.ts';
import { sameDevices, type DeviceFacts } from './vm/vfkit-args.ts';

export interface VmFacts {
  entry: VmEntry;
  status: VmStatus;
  built: BuiltRecord | null;
  build: BuildInfo;
  /** What the VM's devices would be made of now (null without a spec). */
  devices: DeviceFacts | null;
  /** What vfkit would refuse in the spec itself. */
  specProblem: string | null;
  /** Configured or generated, else what the run booted with. */
  mac: string | null;
  ipv6: string | null;
  ipv4: string | null;
  sshCommand: string | null;
  settings: Settings;
  consoleLog: string;
  stateDir: string;
  /** Its shares with every source resolved (default: the spec's). */
  shares?: SharedDir[];
  disks?: VmDisks;
  /** Other VMs with the same MAC. */
  macShared?: string[];
  /** What its last `apply` did. */
  applied?: ApplyOutcome | null;
  /** nixvm's key reaches root in the guest (what a switch logs in as). */
  rootKey?: boolean;
  /** What its vfkit uses, while sampled. */
  usage?: VmUsage | null;
  /** Where its system is built, whether it runs here. */
  platform?: VmPlatform | null;
}

/** Starting or running: the guest has (or is getting) its addresses. */
export function isLive(status: Pick<VmStatus, 'state'>): boolean {
  return status.state === 'running' || status.state === 'starting';
}

/**
 * Stale: what the flake defines now differs from what runs (its closure, or any device input),
 * or, when nothing runs, from what was last built.
 */
export function isStale(f: Pick<VmFacts, 'entry' | 'status' | 'built' | 'devices'>): boolean {
  const spec = f.entry.spec;
  if (!spec) return false;
  const booted = f.status.booted;
  if (booted) {
    // A switch in place brought the guest to a newer closure on the booted kernel and devices.
    if ((booted.switchedTo?.drvPath ?? booted.drvPath) !== spec.drvPath) return true;
    return booted.facts !== null && f.devices !== null && !sameDevices(booted.facts, f.devices);
  }
  return f.built ? f.built.drvPath !== spec.drvPath : false;
}

export function vmView(f: VmFacts): VmSnapshot {
  const { entry: e, status: st, built } = f;
  const errors = [e.error, st.error].filter((x): x is string => Boolean(x));
  if (e.spec && !st.error && f.specProblem) errors.push(f.specProblem);
  return {
    name: e.name,
    flake: e.flake,
    spec: e.spec,
    state: st.state,
    stale: isStale(f),
    drvPath: e.spec?.drvPath ?? null,
    builtDrvPath: built?.drvPath ?? null,
    builtOutPath: built?.outPath ?? null,
    bootedDrvPath: st.booted?.drvPath ?? null,
    bootedOutPath: st.booted?.outPath ?? null,
    switchedOutPath: st.booted?.switchedTo?.outPath ?? null,
    applyPreview:
      e.spec && st.state === 'running' && isStale(f)
        ? previewApply(e.spec, f.rootKey ?? false, st.booted?.facts ?? null, f.devices)
        : null,
    applied: f.applied ?? null,
    cpus: e.spec?.cpus ?? null,
    memoryMiB: e.spec?.memoryMiB ?? null,
    mac: f.mac,
    ipv6: f.ipv6,
    ipv4: f.ipv4,
    shares: f.shares ?? e.spec?.shares ?? [],
    error: errors[0] ?? null,
    build: f.build,
    pid: st.pid,
    startedAt: st.startedAt,
    exit: st.exit,
    sshCommand: f.sshCommand,
    autostart: ownValue(f.settings.autostart, e.name) === true,
    consoleLog: f.consoleLog,
    stateDir: f.stateDir,
    ...(f.disks ? { disks: f.disks } : {}),
    ...(f.macShared ? { macShared: f.macShared } : {}),
    ...(f.usage ? { usage: f.usage } : {}),
    platform: f.platform ?? null,
  };
}
