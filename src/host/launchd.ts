/**
 * Launch at login: a per-user LaunchAgent (~/Library/LaunchAgents/<bundle id>.plist) that starts
 * the agent in the Aqua session and brings it back only if it crashes (a crashed agent re-adopts
 * its VMs). Plists are built and read with the `plist` library; launchctl goes through the runner
 * (injectable, so tests check argv and feed real launchctl outputs).
 */
import fs from 'node:fs';
import path from 'node:path';
import { build, parse, type PlistValue } from 'plist';
import { BUNDLE_ID, resolvePaths } from './paths.ts';
import { ProgramNotFoundError, run as defaultRun, type RunOptions, type RunResult } from './runner.ts';

export type Runner = (argv: string[], opts?: RunOptions) => Promise<RunResult>;

export const LAUNCHCTL = '/bin/launchctl';
export const AGENT_LOG_FILE = 'agent.log';

/** The keys every nixvm LaunchAgent has; plist/LaunchAgent.plist shows them (a test keeps both equal). */
export const LAUNCH_AGENT_FIXED = {
  RunAtLoad: true,
  // Restart only after a non-zero exit or a crash: quitting from the menu stays quit.
  KeepAlive: { SuccessfulExit: false },
  LimitLoadToSessionType: 'Aqua',
  ProcessType: 'Interactive',
} as const;

export interface LaunchAgentSpec {
  label: string;
  /** Absolute program first (launchd does not search PATH the way a shell does). */
  programArguments: string[];
  /** StandardOutPath/StandardErrorPath go to <logDir>/agent.log. */
  logDir: string;
  environment?: Record<string, string>;
  workingDirectory?: string;
}

export function launchAgentObject(spec: LaunchAgentSpec): Record<string, PlistValue> {
  if (!spec.label || /[\s/]/.test(spec.label)) {
    throw new Error(
      `The LaunchAgent label ${JSON.stringify(spec.label)} is not usable; use a reverse-DNS name like ${BUNDLE_ID}.`,
    );
  }
  const program = spec.programArguments[0];
  if (!program || !path.isAbsolute(program)) {
    throw new Error(`The login item's program must be an absolute path, got ${JSON.stringify(program ?? '')}.`);
  }
  const logFile = path.join(spec.logDir, AGENT_LOG_FILE);
  const obj: Record<string, PlistValue> = {
    Label: spec.label,
    ProgramArguments: [...spec.programArguments],
    ...structuredClone(LAUNCH_AGENT_FIXED),
    StandardOutPath: logFile,
    StandardErrorPath: logFile,
  };
  if (spec.environment && Object.keys(spec.environment).length) obj.EnvironmentVariables = { ...spec.environment };
  if (spec.workingDirectory) obj.WorkingDirectory = spec.workingDirectory;
  return obj;
}

/** The LaunchAgent plist XML for `spec`. */
export function launchAgentPlist(spec: LaunchAgentSpec): string {
  return build(launchAgentObject(spec));
}

export interface LoginItemOptions {
  label?: string;
  /** Where the plist goes (default: NIXVM_LAUNCH_AGENTS_DIR or ~/Library/LaunchAgents). */
  launchAgentsDir?: string;
  logDir?: string;
  uid?: number;
  run?: Runner;
}

export interface InstallOptions extends LoginItemOptions {
  /** What launchd runs: NixVM.app's executable (host/app-bundle.ts loginProgram), never a checkout's node. */
  programArguments: string[];
  environment?: Record<string, string>;
  /**
   * Load it now with `launchctl bootstrap` (default true). RunAtLoad then starts an agent at
   * once, so an app that is itself the running agent may prefer false (loaded at next login).
   */
  load?: boolean;
}

export interface RemoveOptions extends LoginItemOptions {
  /** `launchctl bootout` it (default true); this stops the agent it launched. */
  unload?: boolean;
}

export interface LaunchctlService {
  state: string | null;
  pid: number | null;
  /** null while it never exited. */
  lastExitCode: number | null;
  program: string | null;
  arguments: string[];
}

export interface LoginItemStatus {
  label: string;
  plistPath: string;
  /** The plist file exists. */
  installed: boolean;
  /** ProgramArguments read back from the file. */
  programArguments: string[] | null;
  /** launchd knows the service in gui/<uid>. */
  loaded: boolean;
  service: LaunchctlService | null;
  /** What is off, in one sentence (unreadable plist, no launchctl…), or null. */
  problem: string | null;
}

function resolved(o: LoginItemOptions) {
  const paths = resolvePaths();
  const label = o.label ?? BUNDLE_ID;
  const dir = o.launchAgentsDir ?? paths.launchAgentsDir;
  return {
    label,
    dir,
    plistPath: path.join(dir, `${label}.plist`),
    logDir: o.logDir ?? paths.logsDir,
    uid: o.uid ?? (typeof process.getuid === 'function' ? process.getuid() : 0),
    run: o.run ?? defaultRun,
  };
}

/** Read the interesting fields of `launchctl print gui/<uid>/<label>`. */
export function parseLaunchctlPrint(text: string): LaunchctlService {
  // Top-level fields are indented by exactly one tab; nested blocks reuse the same names.
  const field = (name: string): string | null => {
    const m = new RegExp(`^\\t${name} = (.*)$`, 'm').exec(text);
    return m?.[1]?.trim() ?? null;
  };
  const pid = field('pid');
  const exit = field('last exit code') ?? field('last exit status');
  const argsBlock = /^\targuments = \{\n([\s\S]*?)\n\t\}/m.exec(text);
  return {
    state: field('state'),
    pid: pid && /^\d+$/.test(pid) ? Number(pid) : null,
    lastExitCode: exit && /^-?\d+$/.test(exit) ? Number(exit) : null,
    program: field('program'),
    arguments: argsBlock?.[1]
      ? argsBlock[1]
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean)
      : [],
  };
}

const NOT_LOADED = /could not find (specified )?service|no such process/i;

/** There is no launchctl here (not macOS): nothing can be loaded or asked. */
export class LaunchctlMissingError extends Error {
  constructor() {
    super(`Login items need macOS: ${LAUNCHCTL} was not found on this system.`);
    this.name = 'LaunchctlMissingError';
  }
}

async function launchctl(r: ReturnType<typeof resolved>, args: string[]): Promise<RunResult> {
  try {
    return await r.run([LAUNCHCTL, ...args], { allowFailure: true, timeoutMs: 30_000 });
  } catch (err) {
    if (err instanceof ProgramNotFoundError) throw new LaunchctlMissingError();
    throw err;
  }
}

function output(res: RunResult): string {
  return `${res.stderr}\n${res.stdout}`.trim().replace(/\s+/g, ' ');
}

async function printService(
  r: ReturnType<typeof resolved>,
): Promise<{ service: LaunchctlService | null; problem: string | null }> {
  let res: RunResult;
  try {
    res = await launchctl(r, ['print', `gui/${r.uid}/${r.label}`]);
  } catch (err) {
    return { service: null, problem: (err as Error).message };
  }
  if (res.exitCode === 0) return { service: parseLaunchctlPrint(res.stdout), problem: null };
  if (res.exitCode === 113 || NOT_LOADED.test(output(res))) return { service: null, problem: null };
  return {
    service: null,
    problem: `launchctl print gui/${r.uid}/${r.label} failed: ${output(res) || `exit ${res.exitCode}`}.`,
  };
}

function readPlistFile(plistPath: string): {
  text: string | null;
  programArguments: string[] | null;
  problem: string | null;
} {
  let text: string;
  try {
    text = fs.readFileSync(plistPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { text: null, programArguments: null, problem: null };
    throw err;
  }
  try {
    const obj = parse(text);
    const args =
      obj && typeof obj === 'object' && !Array.isArray(obj)
        ? (obj as Record<string, PlistValue>).ProgramArguments
        : undefined;
    if (Array.isArray(args) && args.every((a) => typeof a === 'string')) {
      return { text, programArguments: args as string[], problem: null };
    }
    return {
      text,
      programArguments: null,
      problem: `${plistPath} has no ProgramArguments; turn the login item off and on again to rewrite it.`,
    };
  } catch (err) {
    return {
      text,
      programArguments: null,
      problem: `${plistPath} is not a readable plist (${(err as Error).message}); turn the login item off and on again to rewrite it.`,
    };
  }
}

/** Is the login item installed and loaded, and what does it run? */
export async function loginItemStatus(options: LoginItemOptions = {}): Promise<LoginItemStatus> {
  const r = resolved(options);
  const file = readPlistFile(r.plistPath);
  const printed = await printService(r);
  return {
    label: r.label,
    plistPath: r.plistPath,
    installed: file.text !== null,
    programArguments: file.programArguments,
    loaded: printed.service !== null,
    service: printed.service,
    problem: file.problem ?? printed.problem,
  };
}

function sameArgs(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function bootout(r: ReturnType<typeof resolved>): Promise<void> {
  const res = await launchctl(r, ['bootout', `gui/${r.uid}/${r.label}`]);
  if (res.exitCode === 0 || res.exitCode === 113 || NOT_LOADED.test(output(res))) return;
  throw new Error(
    `launchctl could not unload ${r.label} (${output(res) || `exit ${res.exitCode}`}); try \`launchctl bootout gui/${r.uid}/${r.label}\` yourself.`,
  );
}

async function bootstrap(r: ReturnType<typeof resolved>): Promise<RunResult> {
  return launchctl(r, ['bootstrap', `gui/${r.uid}`, r.plistPath]);
}

/**
 * Write the LaunchAgent and load it. Rewriting an identical, loaded plist does nothing; a changed
 * one is unloaded and loaded again. launchctl's "Bootstrap failed: 5: Input/output error" (or 37)
 * usually means "already loaded": we check, unload, and retry once before explaining.
 */
export async function installLoginItem(options: InstallOptions): Promise<LoginItemStatus> {
  const r = resolved(options);
  const programArguments = options.programArguments;
  const text = launchAgentPlist({
    label: r.label,
    programArguments,
    logDir: r.logDir,
    environment: options.environment,
  });
  fs.mkdirSync(r.dir, { recursive: true });
  // launchd creates the log file but not its directory.
  fs.mkdirSync(r.logDir, { recursive: true });
  const previous = readPlistFile(r.plistPath).text;
  const tmp = `${r.plistPath}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o644 });
  fs.renameSync(tmp, r.plistPath);

  if (options.load === false) return loginItemStatus(options);

  try {
    return await load(r, options, previous, text, programArguments);
  } catch (err) {
    // A login item that could not be loaded is not installed: leave what was there before (or
    // nothing), so `status` and `status --json` both say off.
    if (previous === null) fs.rmSync(r.plistPath, { force: true });
    else fs.writeFileSync(r.plistPath, previous, { mode: 0o644 });
    throw err;
  }
}

async function load(
  r: ReturnType<typeof resolved>,
  options: InstallOptions,
  previous: string | null,
  text: string,
  programArguments: string[],
): Promise<LoginItemStatus> {
  const before = await printService(r);
  // No launchctl (not macOS): nothing can load it, so nothing is installed.
  if (!before.service && before.problem === new LaunchctlMissingError().message) throw new LaunchctlMissingError();
  if (before.service && previous === text) return loginItemStatus(options);
  if (before.service) await bootout(r);

  let res = await bootstrap(r);
  if (res.exitCode !== 0) {
    // Loaded after all, with our arguments (a concurrent install, or launchctl's odd exit codes)?
    const after = await printService(r);
    if (after.service && sameArgs(after.service.arguments, programArguments)) return loginItemStatus(options);
    await bootout(r);
    res = await bootstrap(r);
    if (res.exitCode !== 0) {
      throw new Error(
        `launchctl could not load ${r.plistPath} (${output(res) || `exit ${res.exitCode}`}); ` +
          `check it with \`launchctl print gui/${r.uid}/${r.label}\`, or log out and back in to load it.`,
      );
    }
  }
  return loginItemStatus(options);
}

/** Unload the LaunchAgent (stopping the agent it started) and delete its plist. */
export async function removeLoginItem(options: RemoveOptions = {}): Promise<LoginItemStatus> {
  const r = resolved(options);
  if (options.unload !== false) {
    try {
      await bootout(r);
    } catch (err) {
      // Without launchctl nothing can be loaded; removing the file is all there is to do.
      if (!(err instanceof LaunchctlMissingError)) throw err;
    }
  }
  fs.rmSync(r.plistPath, { force: true });
  return loginItemStatus(options);
}
