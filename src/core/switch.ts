/**
 * Applying a new closure to a running VM without a reboot: what a switch can and cannot change
 * (the pure `switchPlan`), and running the new toplevel's `switch-to-configuration switch` in the
 * guest over nixvm's own ssh channel, as root with nixvm's key, its output streamed line by line.
 * A switch never restarts anything by itself: a failure leaves the VM on whatever the guest ended
 * up with, said in one sentence.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ApplyOutcome, ApplyPreview, VmSpec } from '../api/types.ts';
import { run as runProgram, type RunOptions, type RunResult } from '../host/runner.ts';
import { shellWord } from '../host/shell.ts';
import type { DeviceFacts } from './vm/vfkit-args.ts';

export type Run = (argv: string[], opts?: RunOptions) => Promise<RunResult>;

export interface SwitchInput {
  spec: VmSpec;
  /** nixvm's key reaches root in the guest (the key credential, or a $KEYS file sshd reads for root). */
  rootKey: boolean;
  /** What the running VM booted (and, after a switch, still has as kernel and devices). */
  booted: { outPath: string; facts: DeviceFacts | null };
  /** The closure it would switch to, and the devices vfkit would get for it now. */
  next: { outPath: string; facts: DeviceFacts };
}

/** `copy`: the guest's store is an image plus a writable store: the closure goes there first (`nix copy`). */
export type SwitchPlan = { kind: 'switch'; copy: boolean } | { kind: 'restart'; reasons: string[] };

/** The store cannot take a new closure without a reboot: a read-only image with no writable store over it. */
function storeReason(spec: VmSpec): string | null {
  if (spec.mountHostNixStore) return null;
  if (spec.writableStore) return null;
  return 'its Nix store is a read-only image of the closure it booted, with no writable store to copy the new one into';
}

/** The file a toplevel's `kernel`/`initrd` link points at, or a digest of it when the paths differ. */
function sameFile(a: string, b: string): boolean {
  try {
    const ra = fs.realpathSync(a);
    const rb = fs.realpathSync(b);
    if (ra === rb) return true;
    const digest = (p: string) => createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    return digest(ra) === digest(rb);
  } catch {
    return false;
  }
}

const list = (xs: readonly unknown[]) => JSON.stringify(xs);

/** Why the device inputs need a reboot, one phrase each, in the options' own words. */
export function deviceReasons(a: DeviceFacts, b: DeviceFacts): string[] {
  const r: string[] = [];
  if (a.cpus !== b.cpus) r.push(`cores ${a.cpus} → ${b.cpus} needs a restart`);
  if (a.memoryMiB !== b.memoryMiB) r.push(`memorySize ${a.memoryMiB} → ${b.memoryMiB} needs a restart`);
  if (a.mac !== b.mac) r.push(`the MAC address ${a.mac} → ${b.mac} needs a restart`);
  if (list(a.kernelParams) !== list(b.kernelParams)) r.push('the kernel command line changed');
  if (a.mountHostNixStore !== b.mountHostNixStore) r.push('mountHostNixStore changed');
  if (list(a.shares) !== list(b.shares)) r.push('the shared directories changed');
  if (a.rosetta !== b.rosetta || (a.rosettaTag ?? 'rosetta') !== (b.rosettaTag ?? 'rosetta')) r.push('Rosetta changed');
  if (list([a.graphics]) !== list([b.graphics])) r.push('graphics changed');
  if (list(a.disks ?? []) !== list(b.disks ?? [])) r.push('the disks changed');
  if ((a.sshVsock ?? false) !== (b.sshVsock ?? false)) r.push('the vsock device for ssh changed');
  if ((a.keyCredential ?? false) !== (b.keyCredential ?? false))
    r.push('the key credential on the kernel command line changed');
  return r;
}

/** What the guest must let nixvm do for a switch: an sshd, and root with nixvm's key. */
function guestReasons(spec: VmSpec, rootKey: boolean): string[] {
  if (!spec.ssh.enabled) return ['it runs no sshd, so nixvm cannot switch it in place'];
  if (!rootKey)
    return [
      "nixvm's key does not reach root there (no ssh.authorized_keys.root credential, no $KEYS file its sshd reads for root)",
    ];
  return [];
}

/**
 * Can the running VM take the new closure by switching? Only what `switch-to-configuration`
 * changes: not the kernel, initrd or command line it booted, not the devices vfkit gave it, and
 * only when the guest sees the new closure (the host's store) and runs an sshd nixvm can reach.
 */
export function switchPlan(s: SwitchInput): SwitchPlan {
  const reasons = guestReasons(s.spec, s.rootKey);
  const store = storeReason(s.spec);
  if (store) reasons.push(store);
  if (!fs.existsSync(path.join(s.next.outPath, 'bin', 'switch-to-configuration')))
    reasons.push('the new closure has no bin/switch-to-configuration');
  if (!sameFile(path.join(s.booted.outPath, 'kernel'), path.join(s.next.outPath, 'kernel')))
    reasons.push('the kernel changed');
  if (!sameFile(path.join(s.booted.outPath, 'initrd'), path.join(s.next.outPath, 'initrd')))
    reasons.push('the initrd changed');
  if (!s.booted.facts) reasons.push('nixvm does not know the devices it booted with');
  else reasons.push(...deviceReasons(s.booted.facts, s.next.facts));
  return reasons.length ? { kind: 'restart', reasons } : { kind: 'switch', copy: !s.spec.mountHostNixStore };
}

/**
 * What `apply` will most likely do, before anything is built (the kernel and initrd are known
 * only once the new closure is): switch, or restart for these reasons.
 */
export function previewApply(
  spec: VmSpec,
  rootKey: boolean,
  booted: DeviceFacts | null,
  now: DeviceFacts | null,
): ApplyPreview {
  const reasons = guestReasons(spec, rootKey);
  const store = storeReason(spec);
  if (store) reasons.push(store);
  if (booted && now) reasons.push(...deviceReasons(booted, now));
  return reasons.length ? { how: 'restart', reasons } : { how: 'switch', reasons: [] };
}

/** NixOS's switch-to-configuration: "warning: the following units failed: a.service, b.service". */
export function failedUnits(lines: readonly string[]): string[] {
  for (const l of [...lines].reverse()) {
    const m = /the following units failed: (.+)$/.exec(l);
    if (m) return m[1]!.split(/,\s*/).filter(Boolean);
  }
  return [];
}

/** The last lines of a failed switch that its error carries, so the user sees why without the log. */
export const ERROR_TAIL_LINES = 6;
const TAIL_LINE_CHARS = 240;

/** A failure's sentence, then the last non-blank output lines (indented, each cut short): bounded. */
export function withTail(sentence: string, lines: readonly string[]): string {
  const tail = lines
    .filter((l) => l.trim() !== '')
    .slice(-ERROR_TAIL_LINES)
    .map((l) => `  ${l.length > TAIL_LINE_CHARS ? `${l.slice(0, TAIL_LINE_CHARS)}…` : l}`);
  return tail.length ? `${sentence}\n${tail.join('\n')}` : sentence;
}

export interface SwitchRun {
  vm: string;
  /** The ssh argv to the guest as root (program first, host last), nixvm's options included. */
  ssh: string[];
  outPath: string;
  /** Each line the switch prints (stdout and stderr). */
  onLine(line: string): void;
  /** Where those lines are kept, for the sentences. */
  logFile: string;
  run?: Run;
  timeoutMs?: number;
}

/** switch-to-configuration's own words: ssh's complaints before any of them mean it never ran. */
const SWITCH_WORDS = /switch|activat|unit/i;

/**
 * Run the switch; resolves with the outcome (never throws for a switch that failed in the guest).
 * A failure's error is one sentence, then the switch's last lines (withTail).
 */
export async function runSwitch(r: SwitchRun): Promise<ApplyOutcome> {
  const lines: string[] = [];
  const at = Date.now();
  const result = await (r.run ?? runProgram)([...r.ssh, `${r.outPath}/bin/switch-to-configuration`, 'switch'], {
    timeoutMs: r.timeoutMs ?? 10 * 60_000,
    allowFailure: true,
    onLine: (raw) => {
      const line = raw.replace(/\r$/, '');
      lines.push(line);
      if (lines.length > 200) lines.shift();
      r.onLine(line);
    },
  });
  const name = JSON.stringify(r.vm);
  const restart = `restart it to boot the new closure (\`nixvm restart ${shellWord(r.vm)}\`)`;
  const failed = (error: string): ApplyOutcome => ({
    how: 'failed',
    outPath: r.outPath,
    at,
    reasons: [],
    error,
    lastLine: lines.at(-1) ?? null,
  });
  if (result.exitCode === 0)
    return { how: 'switch', outPath: r.outPath, at, reasons: [], error: null, lastLine: lines.at(-1) ?? null };
  // ssh's own failures exit 255: the guest was not reached, or it dropped the connection mid-switch.
  if (result.exitCode === 255) {
    if (!lines.some((l) => SWITCH_WORDS.test(l)))
      return failed(
        `nixvm cannot reach ${name} over ssh to switch it (${lines.at(-1) ?? 'no answer'}); restart to apply.`,
      );
    return failed(
      withTail(
        `The ssh connection to ${name} was lost during the switch; it keeps running on whatever the switch got to; see ${r.logFile}, or ${restart}.`,
        lines,
      ),
    );
  }
  const units = failedUnits(lines);
  const how =
    result.exitCode !== null
      ? `exit ${result.exitCode}`
      : result.signal
        ? `killed by ${result.signal}`
        : 'no exit status';
  return failed(
    withTail(
      units.length
        ? `Switching ${name} left ${units.length === 1 ? 'a unit' : `${units.length} units`} failed (${units.join(', ')}); it keeps running on what it switched to; see ${r.logFile}, or ${restart}.`
        : `Switching ${name} failed (${how}); it keeps running; see ${r.logFile}, or ${restart}.`,
      lines,
    ),
  );
}
