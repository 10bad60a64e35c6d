/**
 * `nixvm builder [status] | use <vm> | setup | off`: the remote builders nix knows, a VM as this
 * machine's Linux builder, and the first one (nixpkgs' darwin.linux-builder-vz). What will change is printed before it changes; a change to the
 * system's nix.conf is asked for (y/N, then the macOS administrator prompt) unless --yes.
 */
import { type Command, Option } from 'commander';
import type { AgentEvent, BuilderOutcome, BuilderSetupOutcome, BuildersInfo, RegistrationPlan } from '../api/types.ts';
import type { Session } from './app.ts';
import { CliError, EXIT } from './errors.ts';
import { commandName, visibleName, visibleText } from './format.ts';

type Act = <A extends unknown[]>(fn: (...args: A) => Promise<number>) => (...args: A) => Promise<void>;

const answers = (a: boolean | null): string =>
  a === true ? 'answers' : a === false ? 'does not answer' : 'not probed';

/** The builders in lines: what builds here, each builder and whether it answers, the builder VM. */
export function formatBuilders(b: BuildersInfo): string[] {
  const out = [`This machine builds: ${b.localSystems.join(', ') || 'nothing nix names'}.`];
  if (b.machines.length === 0) out.push('nix has no remote builders.');
  for (const m of b.machines) {
    const who = m.vm ? ` (nixvm's builder VM ${JSON.stringify(m.vm)})` : '';
    out.push(
      `builder ${visibleName(m.uri)}${who}: ${m.systems.join(', ') || 'this system'}, ${m.maxJobs} job${m.maxJobs === 1 ? '' : 's'}${
        m.supportedFeatures.length ? `, features ${m.supportedFeatures.join(',')}` : ''
      }; ${answers(m.answers)} (from ${visibleName(m.source)}).`,
    );
  }
  for (const p of b.problems) out.push(`problem: ${visibleName(p)}`);
  if (b.vm) {
    out.push(
      `Builder VM: ${JSON.stringify(b.vm)}, ${b.status}${b.note ? `: ${visibleName(b.note)}` : ''}${b.mode ? ` (nix is told ${modeWords(b.mode)})` : ''}.`,
    );
  } else
    out.push(
      "No VM is this machine's builder; `nixvm builder use <vm>` makes one, or `nixvm builder setup` runs nixpkgs' prebuilt one.",
    );
  return out;
}

function modeWords(mode: BuildersInfo['mode']): string {
  return mode === 'agent'
    ? "by nixvm's own builds"
    : mode === 'system'
      ? 'by /etc/nix/nix.conf'
      : mode === 'nix-darwin'
        ? 'by your nix-darwin configuration'
        : 'nothing yet';
}

export function formatPlan(plan: RegistrationPlan): string[] {
  const out = plan.changes.map((c) => `  - ${c}`);
  if (plan.system) {
    out.push(`  ${plan.system.file} will read:`);
    for (const l of plan.system.contents.replace(/\n$/, '').split('\n')) out.push(`    ${l}`);
  }
  if (plan.userConfLine)
    out.push(
      'For your own `nix build` to use it too, add this line to ~/.config/nix/nix.conf (nixvm does not edit it):',
      `  ${plan.userConfLine}`,
    );
  if (plan.snippet)
    out.push('Add to your nix-darwin configuration, then run `darwin-rebuild switch`:', `  ${plan.snippet}`);
  return out;
}

/** Wait for the builder VM to be ready (or to fail), following snapshots; Ctrl-C stops waiting. */
async function untilReady(s: Session, timeoutMs: number): Promise<BuildersInfo> {
  const port = await s.port();
  return new Promise((resolve, reject) => {
    let last: BuildersInfo | null = null;
    let lastNote = '';
    const finish = (err: Error | null, b?: BuildersInfo) => {
      clearTimeout(timer);
      unsubscribe();
      s.io.signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(b!);
    };
    const onAbort = () => finish(new CliError(EXIT.failed, 'Stopped waiting; the builder VM goes on starting.'));
    const timer = setTimeout(
      () =>
        finish(
          new CliError(
            EXIT.failed,
            `The builder VM was not ready after ${Math.round(timeoutMs / 1000)} s (${last?.note ? visibleText(last.note) : 'no word from it'}); see \`nixvm builder\` and \`nixvm logs ${last?.vm ? commandName(last.vm) : '<vm>'}\`.`,
          ),
        ),
      timeoutMs,
    );
    const seen = (b: BuildersInfo | undefined) => {
      if (!b) return;
      last = b;
      if (b.note && b.note !== lastNote && b.status !== 'ready') {
        lastNote = b.note;
        s.err(`${clause(b.note)}…`);
      }
      if (b.status === 'ready') finish(null, b);
      else if (b.status === 'failed')
        finish(new CliError(EXIT.failed, `The builder VM is not usable: ${clause(b.note ?? 'it gave no reason')}.`));
    };
    const unsubscribe = port.subscribe((ev: AgentEvent) => {
      if (ev.type === 'snapshot') seen(ev.snapshot.agent.builders);
    });
    s.io.signal.addEventListener('abort', onAbort, { once: true });
    void port.call('snapshot', {}).then((snap) => seen(snap.agent.builders), finish);
  });
}

/** A note as part of our own sentence: escaped, without its own closing stop. */
const clause = (note: string) => visibleName(note).replace(/[.…]+$/, '');

async function consent(s: Session, plan: RegistrationPlan, yes: boolean | undefined, what: string): Promise<void> {
  s.out(`To ${what}, nixvm will change:`);
  for (const l of formatPlan(plan)) s.out(l);
  if (yes) return;
  const answer = await s.io.confirm('Go ahead? [y/N] ');
  if (answer === null)
    throw new CliError(
      EXIT.usage,
      `This changes ${plan.system?.file}; run it in a terminal to be asked, or pass --yes.`,
    );
  if (answer !== 'yes') throw new CliError(EXIT.failed, 'Nothing was changed.');
}

/** After `use` or `setup`: wait for the builder to answer (unless --no-wait), then say where things stand. */
async function finish(
  s: Session,
  r: BuilderOutcome,
  opts: { json?: boolean; wait?: boolean; timeout?: string },
  defaultSecs: number,
): Promise<number> {
  let builders = r.builders;
  if (opts.wait !== false) {
    const secs = Number(opts.timeout ?? defaultSecs);
    if (!Number.isFinite(secs) || secs <= 0) throw new CliError(EXIT.usage, '--timeout takes a number of seconds.');
    builders = await untilReady(s, secs * 1000);
  }
  if (opts.json) s.json({ ...r, builders });
  else for (const l of formatBuilders(builders)) s.out(l);
  return EXIT.ok;
}

async function cmdUse(
  s: Session,
  vm: string,
  opts: { yes?: boolean; json?: boolean; wait?: boolean; timeout?: string },
): Promise<number> {
  const port = await s.port();
  let r: BuilderOutcome = await port.call('builderUse', { vm });
  if (!r.done) {
    if (opts.json && !opts.yes) {
      s.json(r);
      return EXIT.failed;
    }
    await consent(s, r.plan, opts.yes, `make ${visibleName(vm)} this machine's builder`);
    r = await port.call('builderUse', { vm, consent: true });
  } else if (!opts.json) {
    for (const l of formatPlan(r.plan)) s.out(l);
  }
  return finish(s, r, opts, 300);
}

async function cmdSetup(
  s: Session,
  opts: { nixpkgs?: string; yes?: boolean; json?: boolean; wait?: boolean; timeout?: string },
): Promise<number> {
  const port = await s.port();
  s.err(
    `Looking up nixpkgs' darwin.linux-builder-vz${opts.nixpkgs ? ` in ${opts.nixpkgs}` : ''} (the first time, this fetches nixpkgs' source)…`,
  );
  const ask = opts.nixpkgs !== undefined ? { nixpkgs: opts.nixpkgs } : {};
  let r: BuilderSetupOutcome = await port.call('builderSetup', ask);
  if (opts.json && !opts.yes) {
    s.json(r);
    return EXIT.failed;
  }
  if (!opts.json) {
    s.out(r.sentence);
    s.out(
      `  nixvm's flake for it: ${visibleName(r.setup.flake)} (VM ${JSON.stringify(r.setup.vm)}, nixpkgs ${visibleName(r.setup.nixpkgs)})`,
    );
    s.out('Then, to make it the builder, nixvm will change:');
    for (const l of formatPlan(r.plan)) s.out(l);
  }
  if (!opts.yes) {
    const answer = await s.io.confirm('Go ahead? [y/N] ');
    if (answer === null)
      throw new CliError(EXIT.usage, 'This downloads the builder; run it in a terminal to be asked, or pass --yes.');
    if (answer !== 'yes') throw new CliError(EXIT.failed, 'Nothing was downloaded or changed.');
  }
  r = await port.call('builderSetup', { ...ask, consent: true });
  return finish(s, r, opts, 1800);
}

async function cmdOff(s: Session, opts: { yes?: boolean; json?: boolean }): Promise<number> {
  const port = await s.port();
  let r = await port.call('builderOff', {});
  if (!r.done) {
    if (opts.json && !opts.yes) {
      s.json(r);
      return EXIT.failed;
    }
    await consent(s, r.plan, opts.yes, 'stop using the builder VM');
    r = await port.call('builderOff', { consent: true });
  }
  if (opts.json) s.json(r);
  else {
    for (const l of r.plan.changes) s.out(`- ${l}`);
    s.out("No VM is this machine's builder now.");
  }
  return EXIT.ok;
}

async function cmdStatus(s: Session, opts: { json?: boolean }): Promise<number> {
  const b = await (await s.port()).call('builders', {});
  if (opts.json) s.json(b);
  else for (const l of formatBuilders(b)) s.out(l);
  return EXIT.ok;
}

export function registerBuilderCommands(program: Command, s: Session, act: Act): void {
  const json = (what = 'print JSON instead of text'): Option => new Option('--json', what);
  const builder = program
    .command('builder')
    .description("remote builders: which answer, and a VM as this machine's Linux builder (use, off)");
  builder
    .command('status', { isDefault: true })
    .alias('ls')
    .description('what this machine builds, the builders nix knows and whether each answers, the builder VM')
    .addOption(json())
    .action(act((opts: { json?: boolean }) => cmdStatus(s, opts)));
  builder
    .command('use')
    .description("make a VM this machine's Linux builder: start it, tell nix (shows what changes first)")
    .argument('<vm>')
    .option('-y, --yes', 'do not ask before changing the system nix.conf')
    .option('--no-wait', 'do not wait for the builder to answer')
    .option('--timeout <seconds>', 'how long to wait for it (default 300)')
    .addOption(json())
    .action(
      act((vm: string, opts: { yes?: boolean; json?: boolean; wait?: boolean; timeout?: string }) =>
        cmdUse(s, vm, opts),
      ),
    );
  builder
    .command('setup')
    .description(
      "no builder yet: run nixpkgs' prebuilt darwin.linux-builder-vz as the builder (says what it downloads first)",
    )
    .option('--nixpkgs <flake>', 'the nixpkgs to take it from (default github:NixOS/nixpkgs/nixpkgs-unstable)')
    .option('-y, --yes', 'do not ask before downloading it and telling nix')
    .option('--no-wait', 'do not wait for the builder to answer')
    .option('--timeout <seconds>', 'how long to wait for it, download included (default 1800)')
    .addOption(json())
    .action(
      act((opts: { nixpkgs?: string; yes?: boolean; json?: boolean; wait?: boolean; timeout?: string }) =>
        cmdSetup(s, opts),
      ),
    );
  builder
    .command('off')
    .description('stop using the builder VM and undo what nixvm changed (the VM keeps running)')
    .option('-y, --yes', 'do not ask before changing the system nix.conf')
    .addOption(json())
    .action(act((opts: { yes?: boolean; json?: boolean }) => cmdOff(s, opts)));
}
