/**
 * Applying a new closure to a running VM in place (`nixvm apply`, the app's Apply): which way
 * (switchPlan), copying the closure into a store-image guest's own store, running the switch and
 * keeping what each VM's last apply did for its snapshot. A restart is the agent's to run; this
 * only records why one was needed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AgentError, errorMessage } from '../api/errors.ts';
import { APPLY_OUTPUT_TAIL, type ApplyOutcome } from '../api/types.ts';
import { run as runProgram } from '../host/runner.ts';
import type { EventHub } from './event-hub.ts';
import { writeSshConfig } from './net/ssh.ts';
import type { Nix } from './nix/nix.ts';
import { runSwitch, switchPlan, withTail, type SwitchPlan } from './switch.ts';
import type { Loaded, VmList } from './vm-list.ts';
import type { Launcher } from './vm/launcher.ts';
import type { Supervisor } from './vm/supervisor.ts';

export interface ApplierOwners {
  vms: VmList;
  launcher: Launcher;
  supervisor: Supervisor;
  hub: EventHub;
  nix(): Nix | null;
  changed(): void;
  log(line: string): void;
}

export class Applier {
  readonly #o: ApplierOwners;
  /** What the last apply of each VM did (switch in place, restart and why, a failed switch). */
  readonly #outcomes = new Map<string, ApplyOutcome>();

  constructor(o: ApplierOwners) {
    this.#o = o;
  }

  outcome(name: string): ApplyOutcome | null {
    return this.#outcomes.get(name) ?? null;
  }

  /**
   * How a live, stale VM takes its new build: a switch when it runs on a closure whose kernel and
   * devices the new one keeps, else a restart with the reasons.
   */
  plan(t: Loaded, running: boolean, built: { drvPath: string; outPath: string } | null): SwitchPlan {
    const booted = this.#o.supervisor.status(t.name).booted;
    if (!running || !booted || !built || built.drvPath !== t.spec.drvPath)
      return { kind: 'restart', reasons: ['it is still booting'] };
    return switchPlan({
      spec: this.#o.launcher.runSpec(t),
      rootKey: this.#o.launcher.rootKey(t),
      booted: { outPath: booted.outPath, facts: booted.facts },
      next: { outPath: built.outPath, facts: this.#o.launcher.facts(t) },
    });
  }

  /** The agent restarts the VM onto `outPath`: say so, and why, in its snapshot and log. */
  restarting(name: string, outPath: string, reasons: string[]): void {
    this.#outcomes.set(name, { how: 'restart', outPath, at: Date.now(), reasons, error: null, lastLine: null });
    this.#o.log(`applying ${JSON.stringify(name)} by a restart: ${reasons.join('; ')}`);
  }

  /**
   * A store-image guest's own store gets the new closure first: `nix copy --to ssh-ng://` over
   * nixvm's channel (Nix's own transport). Nix splits NIX_SSHOPTS at spaces, so its ssh reads a
   * config of its own (`-F`) from a path without any: beside the VM's vsock socket.
   */
  async #copyClosure(name: string, outPath: string, onLine: (l: string) => void): Promise<string | null> {
    const r = this.#o.vms.rootSshTarget(name);
    const nix = this.#o.nix();
    const socket = this.#o.launcher.paths(name).sshSocket;
    if (!r || !socket || !nix)
      return `nixvm cannot reach ${JSON.stringify(name)} over ssh to copy the new closure into its store; restart to apply.`;
    const config = `${socket.replace(/\.sock$/, '')}.nix-ssh_config`;
    try {
      await writeSshConfig(config, [
        { vm: name, alias: r.alias, target: { ...r.target, extraOptions: {}, connectTimeout: null } },
      ]);
      // BatchMode: nix's ssh must never wait for a prompt.
      fs.appendFileSync(config, '  BatchMode yes\n  ConnectTimeout 10\n');
    } catch (err) {
      return `nixvm could not write the ssh config nix copies through (${errorMessage(err)}); restart to apply.`;
    }
    const res = await runProgram(nix.argv('copy', '--no-check-sigs', '--to', `ssh-ng://${r.alias}`, outPath), {
      env: { NIX_SSHOPTS: `-F ${config}` },
      allowFailure: true,
      timeoutMs: 30 * 60_000,
      onLine: (l) => onLine(l),
    });
    if (res.exitCode === 0) return null;
    const last = res.stderr.trim().split('\n').at(-1) ?? '';
    return `Copying the new closure into the store of ${JSON.stringify(name)} failed (${last || `exit ${res.exitCode}`}); it keeps running on what it has; restart to apply.`;
  }

  /**
   * Switch the running VM to `built` over nixvm's ssh channel (copying the closure into its own
   * store first when `copy`). Resolves once switched; a failure is one sentence, the VM untouched.
   */
  async switchInPlace(name: string, built: { drvPath: string; outPath: string }, copy = false): Promise<void> {
    const at = Date.now();
    const logFile = path.join(this.#o.launcher.paths(name).logDir, 'apply.log');
    const ssh = this.#o.vms.rootSshArgv(name);
    let outcome: ApplyOutcome;
    if (!ssh) {
      outcome = {
        how: 'failed',
        outPath: built.outPath,
        at,
        reasons: [],
        error: `nixvm cannot reach ${JSON.stringify(name)} over ssh to switch it (it has no address and no vsock answer yet); restart to apply.`,
        lastLine: null,
      };
    } else {
      // Every line goes to the log; the snapshot carries the count and the last few, so a face
      // following the snapshots prints each line as it comes.
      const output = { count: 0, tail: [] as string[] };
      const switching: ApplyOutcome = {
        how: 'switching',
        outPath: built.outPath,
        at,
        reasons: [],
        error: null,
        lastLine: null,
        output,
      };
      this.#outcomes.set(name, switching);
      this.#o.changed();
      let log: fs.WriteStream | null = null;
      try {
        fs.mkdirSync(path.dirname(logFile), { recursive: true, mode: 0o700 });
        log = fs.createWriteStream(logFile, { flags: 'w', mode: 0o600 });
        log.on('error', () => {});
      } catch {
        log = null;
      }
      log?.write(`# nixvm apply ${new Date(at).toISOString()}: ${built.outPath}/bin/switch-to-configuration switch\n`);
      this.#o.log(`applying ${JSON.stringify(name)} by switching in place to ${built.outPath}`);
      const onLine = (line: string): void => {
        log?.write(`${line}\n`);
        const short = line.slice(0, 500);
        switching.lastLine = short;
        output.count++;
        output.tail.push(short);
        if (output.tail.length > APPLY_OUTPUT_TAIL) output.tail.shift();
        this.#o.changed();
      };
      const copyError = copy ? await this.#copyClosure(name, built.outPath, onLine) : null;
      outcome = copyError
        ? {
            how: 'failed',
            outPath: built.outPath,
            at,
            reasons: [],
            error: withTail(copyError, output.tail),
            lastLine: switching.lastLine,
          }
        : await runSwitch({
            vm: name,
            ssh,
            outPath: built.outPath,
            logFile,
            onLine,
          });
      // One apply, one `at` (a face tells this apply's lines from an earlier one's by it).
      outcome = { ...outcome, at, output: { count: output.count, tail: [...output.tail] } };
      await new Promise<void>((r) => (log ? log.end(r) : r()));
    }
    this.#outcomes.set(name, outcome);
    if (outcome.how === 'switch') {
      this.#o.supervisor.markSwitched(name, built);
      this.#o.hub.notify({
        level: 'info',
        title: `Applied ${JSON.stringify(name)}`,
        body: 'Switched in place, no reboot.',
        vm: name,
      });
      return;
    }
    this.#o.changed();
    throw new AgentError('failed', outcome.error ?? `Switching ${JSON.stringify(name)} failed.`);
  }
}
