/**
 * The app verbs (src/api/ipc.ts AppMethods): what the app is (packaged, signed) and its
 * command-line tool, over a small `AppHost` so they run without Electron: src/main wires the host
 * to the file system, the runner and a consent dialog; the UI tests to temp folders and recorders.
 */
import { AgentError } from '../api/errors.ts';
import type { AppParamsOf, AppResultOf, AppVerb, CliToolStatus } from '../api/ipc.ts';
import { shellWord } from '../host/shell.ts';
import { planCliTool, type CliToolFacts, type CliToolPlan } from './cli-tool.ts';

export interface AppHost {
  packaged: boolean;
  signed: boolean;
  platform: string;
  cliToolFacts(): Promise<CliToolFacts>;
  /** Ask the user; true to go ahead. */
  confirm(consent: { message: string; detail: string; button: string }): Promise<boolean>;
  /** Run one argv; its exit code and what it said. */
  run(argv: string[]): Promise<{ exitCode: number; stderr: string }>;
}

export type AppHandlers = { [V in AppVerb]: (params: AppParamsOf<V>) => Promise<AppResultOf<V>> };

export function cliToolStatus(plan: CliToolPlan): CliToolStatus {
  if (plan.state === 'install') return { state: 'not-installed', link: plan.link, admin: plan.admin };
  return plan;
}

/** osascript's answer when the user cancels the password prompt (error -128). */
const CANCELLED = /\(-128\)|User canceled/i;

export function createAppHandlers(host: AppHost): AppHandlers {
  const status = async () => cliToolStatus(planCliTool(await host.cliToolFacts()));
  return {
    async appInfo() {
      return { packaged: host.packaged, signed: host.signed, platform: host.platform, cliTool: await status() };
    },
    async installCliTool() {
      const plan = planCliTool(await host.cliToolFacts());
      if (plan.state === 'unavailable') throw new AgentError('failed', plan.reason);
      if (plan.state === 'installed') return { status: plan, cancelled: false };
      if (!(await host.confirm(plan.consent))) return { status: cliToolStatus(plan), cancelled: true };
      for (const argv of plan.argv) {
        const r = await host.run(argv);
        if (r.exitCode === 0) continue;
        if (plan.admin && CANCELLED.test(r.stderr)) return { status: cliToolStatus(plan), cancelled: true };
        const launcher = (await host.cliToolFacts()).launcher ?? '';
        throw new AgentError(
          'failed',
          `Could not link ${plan.link} (${r.stderr.trim() || `exit ${r.exitCode}`}); link it yourself: sudo ln -sfn ${shellWord(launcher)} ${shellWord(plan.link)}`,
        );
      }
      const after = await status();
      if (after.state !== 'installed')
        throw new AgentError(
          'failed',
          `Linked ${plan.link}, but it does not point at this NixVM's nixvm; check it with ls -l ${shellWord(plan.link)}.`,
        );
      return { status: after, cancelled: false };
    },
  };
}
