/**
 * The nix messages nixvm translates, as cases: a flake that makes nix say it, the nix call nixvm
 * makes (the same argv as the inventory or a build), and the sentence the user must read.
 *
 * `scripts/record-nix-messages.ts` runs every case with the nix on PATH and stores what nix wrote
 * under test/fixtures/nix-messages/<case>.nix-<version>.txt; test/unit/nix-messages.test.ts
 * translates every stored text, and test/integration/nix-messages.test.ts runs the cases live
 * against whatever nix the suite runs on (CI: Nix 2.8, 2.26 and 2.34).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pingFailure } from '../../src/core/builders/builders.ts';
import { buildArgv } from '../../src/core/nix/build.ts';
import { NIX_COMMAND_ARGS } from '../../src/core/nix/config.ts';
import { nixErrorText, translateBuildError, translateEvalError } from '../../src/core/nix/errors.ts';
import { BATCH_EXPR, singleExpr } from '../../src/core/nix/inventory-expr.ts';
import { evalWarnings, inventoryArgv } from '../../src/core/nix/inventory.ts';
import type { Nix } from '../../src/core/nix/nix.ts';
import { ProgressTracker } from '../../src/core/nix/progress.ts';
import { run } from '../../src/host/runner.ts';
import { copyFixtureFiles } from './fixtures.ts';
import { BUILDER_SYSTEM, type BuilderBehaviour, DROP_MARKER, LoopbackBuilder } from './loopback-builder.ts';

export const MESSAGES_DIR = fileURLToPath(new URL('../fixtures/nix-messages/', import.meta.url));

/** Where the recorder makes its flakes: a fixed path, so recordings of every version name the same dirs. */
export const RECORD_ROOT = '/tmp/nixvm-messages';

/** Which of nixvm's nix calls the case makes. */
export type Call =
  | { kind: 'inventory' } // the batched `nix eval` of every VM
  | { kind: 'vm'; vm: string } // one VM alone (how the inventory gets a broken VM's own message)
  | { kind: 'build'; vm: string } // `nix build` of a VM's toplevel (with the case's builder, if any)
  | { kind: 'ping' }; // the builder probe's `nix store ping --store <the case's builder>`

export interface Expected {
  /** The error kind, or 'warnings' for a successful evaluation that warns. */
  kind: string;
  /** The sentence the user reads (for 'warnings': every warning, one per line). */
  message: string;
}

export interface MessageCase {
  name: string;
  /** The flake directory's name (default: the case's name). */
  dirName?: string;
  /** The fixture under test/fixtures to start from; none: an empty directory. */
  fixture?: string;
  /** Files to write (relative to the flake), after the fixture is copied. */
  files?: (dir: string) => Record<string, string>;
  /** Make it a git flake: `git init`, then `git add` everything except these files. */
  git?: { untracked?: string[] };
  /** Files the flake refers to that are on no disk (for telling "untracked" from "missing"). */
  absent?: string[];
  call: Call;
  /**
   * A remote builder on a loopback address (test/helpers/loopback-builder.ts), behaving so, that
   * a build's `--option builders` names (as nixvm's builder VM) and a ping probes. Needs root.
   */
  builder?: { behaviour: BuilderBehaviour; scheme?: 'ssh-ng' | 'ssh' };
  /** Nix accepts this on some versions (no message to translate there). */
  mayPass?: boolean;
  /** `system`: the machine nix ran on; `version`: its nix, e.g. "2.34.8". */
  expected: (dir: string, system: string, version: string) => Expected;
}

/** Where a case's builder keeps its files: beside the flake, not in it (nix copies the flake). */
export const builderDir = (dir: string) => `${dir}-builder`;

/** What nixvm's agent calls its builder VM, and what to do when it is gone (Builders.describe). */
export const BUILDER_VM = {
  words: 'the builder VM "builder-vm"',
  fix: 'start it again (`nixvm start builder-vm`) and wait for `nixvm builder` to say it is ready',
};

/** The 2.x minor of a version: "2.34.8" → 34. */
const minor = (version: string) => Number(version.split('.')[1]);

/** The system the tests run on, as nix names it (a recording's header says which it was made on). */
export const CURRENT_SYSTEM = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-${process.platform === 'darwin' ? 'darwin' : 'linux'}`;

const vmSubject = (c: Call) => (c.kind === 'vm' || c.kind === 'build' ? `VM ${JSON.stringify(c.vm)}` : undefined);

const seedFile = (rel: string) => readFileSync(path.join(MESSAGES_DIR, '..', 'seed', rel), 'utf8');

/** The seed fixture with one more VM, whose host file is `file`. */
const seedWith = (vm: string, file: string) => ({
  'flake.nix': seedFile('flake.nix').replace(
    'builder-vm = mkVm ./hosts/builder-vm.nix;',
    `builder-vm = mkVm ./hosts/builder-vm.nix;\n        ${vm} = mkVm ./${file};`,
  ),
});

const brokenExtra = (extra: string, files: Record<string, string>) => () => ({
  'extra.nix': `{ mkVm }: { ${extra} }\n`,
  ...files,
});

const TYPO = { 'hosts/typo.nix': '{\n  virtualisation.cores = 2\n}\n' };

/** A flake of plain derivations that need no nixpkgs, for build failures. */
const buildFlake = (attrs: string) => () => ({
  'flake.nix': `{
  outputs = { self }:
    let
      drv = args: derivation ({ builder = "/bin/sh"; PATH = "/usr/bin:/bin"; } // args);
    in
    {
      nixosConfigurations = {
${attrs}
      };
    };
}
`,
});

/** A VM for a system only the builder builds, so that its build goes there. */
const remoteFlake =
  (script: string, big = false) =>
  (dir: string) => ({
    'flake.nix': `{
  outputs = { self }: {
    nixosConfigurations.remote-vm.config.system.build.toplevel = derivation {
      name = "nixos-system-remote-vm";
      system = "${BUILDER_SYSTEM}";
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";${big ? '\n      big = ./big.bin;' : ''}
      args = [ "-c" ${JSON.stringify(`echo $$ >>${builderDir(dir)}/pids; ${script}`)} ];
    };
  };
}
`,
    // Big enough that a cut after its first megabyte comes in the middle of copying it there.
    ...(big ? { 'big.bin': 'x'.repeat(16 << 20) } : {}),
  });

const LOST = (reason: string) =>
  `Building VM "remote-vm" stopped: the connection to ${BUILDER_VM.words} was lost during the build (${reason}); ${BUILDER_VM.fix}, then build again.`;
const UNREACHABLE = `Building VM "remote-vm" needs a builder for ${BUILDER_SYSTEM}, but nix could not connect to ${BUILDER_VM.words}; ${BUILDER_VM.fix}, then build again.`;
const BROKEN = `Building VM "remote-vm" failed on ${BUILDER_VM.words}, not in its own derivation: the group 'nixvm-test-no-such-group' specified in 'build-users-group' does not exist; fix the builder's nix, then build again.`;

/** nixpkgs' lib.warn: builtins.warn on Nix 2.23+, a coloured trace before (nixpkgs 24.11 and later). */
const LIB_WARN = 'builtins.warn or (msg: v: builtins.trace "\u001b[1;35mevaluation warning:\u001b[0m ${msg}" v)';

export const CASES: MessageCase[] = [
  {
    name: 'syntax-flake',
    fixture: 'syntax',
    call: { kind: 'inventory' },
    expected: (dir) => ({
      kind: 'syntax',
      message: `The flake at ${dir} has a syntax error in flake.nix at line 11, column 7 (unexpected '}', expecting ';'); fix it and save.`,
    }),
  },
  {
    name: 'syntax-import',
    fixture: 'broken',
    files: brokenExtra('typo = mkVm "typo" ./hosts/typo.nix;', TYPO),
    call: { kind: 'vm', vm: 'typo' },
    expected: () => ({
      kind: 'syntax',
      message:
        "VM \"typo\" has a syntax error in hosts/typo.nix at line 3, column 1 (unexpected '}', expecting ';'); fix it and save.",
    }),
  },
  {
    name: 'syntax-import-git',
    fixture: 'broken',
    files: brokenExtra('typo = mkVm "typo" ./hosts/typo.nix;', TYPO),
    git: {},
    call: { kind: 'vm', vm: 'typo' },
    expected: () => ({
      kind: 'syntax',
      message:
        "VM \"typo\" has a syntax error in hosts/typo.nix at line 3, column 1 (unexpected '}', expecting ';'); fix it and save.",
    }),
  },
  {
    name: 'untracked-git',
    fixture: 'seed',
    files: () => ({ ...seedWith('extra-vm', 'hosts/extra-vm.nix'), 'hosts/extra-vm.nix': '{ }\n' }),
    git: { untracked: ['hosts/extra-vm.nix'] },
    call: { kind: 'vm', vm: 'extra-vm' },
    expected: (dir) => ({
      kind: 'untracked',
      message: `hosts/extra-vm.nix is not tracked by git, so nix cannot see it; run \`git add -N hosts/extra-vm.nix\` in ${dir}.`,
    }),
  },
  {
    name: 'missing-file',
    fixture: 'seed',
    files: () => seedWith('gone-vm', 'hosts/gone-vm.nix'),
    absent: ['hosts/gone-vm.nix'],
    call: { kind: 'vm', vm: 'gone-vm' },
    expected: () => ({
      kind: 'missing-file',
      message: 'VM "gone-vm" refers to hosts/gone-vm.nix, which does not exist; create it or fix the reference.',
    }),
  },
  {
    name: 'missing-file-git',
    fixture: 'seed',
    files: () => seedWith('gone-vm', 'hosts/gone-vm.nix'),
    absent: ['hosts/gone-vm.nix'],
    git: {},
    call: { kind: 'vm', vm: 'gone-vm' },
    expected: () => ({
      kind: 'missing-file',
      message: 'VM "gone-vm" refers to hosts/gone-vm.nix, which does not exist; create it or fix the reference.',
    }),
  },
  {
    name: 'no-configurations',
    fixture: 'no-configs',
    call: { kind: 'inventory' },
    expected: (dir) => ({
      kind: 'no-configurations',
      message: `The flake at ${dir} has no nixosConfigurations output; define your VMs as nixosConfigurations.<name> in its flake.nix.`,
    }),
  },
  {
    // nixvm checks for flake.nix itself first, but a git flake whose flake.nix is untracked gets
    // as far as nix.
    name: 'flake-untracked-git',
    fixture: 'seed',
    git: { untracked: ['flake.nix'] },
    call: { kind: 'inventory' },
    expected: (dir) => ({
      kind: 'untracked',
      message: `flake.nix is not tracked by git, so nix cannot see it; run \`git add -N flake.nix\` in ${dir}.`,
    }),
  },
  {
    name: 'bad-flake-path-hash',
    dirName: 'my#vms',
    fixture: 'seed',
    call: { kind: 'inventory' },
    expected: (dir) => ({
      kind: 'bad-flake-path',
      message: `Nix cannot take ${dir} as a flake reference (a space, '#' or '?' in the path); move the flake to a path without them.`,
    }),
  },
  {
    // Nix 2.8 only: newer nix percent-encodes the space.
    name: 'bad-flake-path-space',
    dirName: 'my vms',
    fixture: 'seed',
    call: { kind: 'inventory' },
    mayPass: true,
    expected: (dir) => ({
      kind: 'bad-flake-path',
      message: `Nix cannot take ${dir} as a flake reference (a space, '#' or '?' in the path); move the flake to a path without them.`,
    }),
  },
  {
    // The inventory checks for flake.nix before it runs nix; a build goes straight to nix.
    name: 'not-a-flake',
    call: { kind: 'build', vm: 'web' },
    expected: (dir) => ({
      kind: 'not-a-flake',
      message: `${dir} is not a flake (it has no flake.nix); point nixvm at the directory that holds your flake.nix.`,
    }),
  },
  {
    name: 'eval-throw',
    fixture: 'broken',
    call: { kind: 'vm', vm: 'throws' },
    expected: () => ({
      kind: 'eval',
      message: 'VM "throws" failed to evaluate: services.web.listen must be set for the throws VM; fix it and save.',
    }),
  },
  {
    name: 'eval-abort',
    fixture: 'broken',
    files: brokenExtra('aborts = mkVm "aborts" ./hosts/aborts.nix;', {
      'hosts/aborts.nix': '{ virtualisation.cores = 1; services.web.listen = abort "the aborts VM gave up"; }\n',
    }),
    call: { kind: 'inventory' },
    expected: (dir) => ({
      kind: 'eval',
      message: `The flake at ${dir} failed to evaluate: evaluation aborted with the following error message: 'the aborts VM gave up'; fix it and save.`,
    }),
  },
  {
    // A flake input on a host that cannot resolve (.invalid never does, RFC 6761): what a user
    // offline, or behind a broken proxy, meets.
    name: 'input-download',
    fixture: 'seed',
    files: () => ({
      'flake.nix': seedFile('flake.nix')
        .replace(
          'outputs =',
          'inputs.dep = { url = "https://example.invalid/dep.tar.gz"; flake = false; };\n  outputs =',
        )
        .replace('{ self }:', '{ self, dep }:'),
    }),
    call: { kind: 'inventory' },
    expected: (dir) => ({
      kind: 'network',
      message: `The flake at ${dir} could not fetch one of its inputs (https://example.invalid/dep.tar.gz: the host name does not resolve); check the network connection (and any proxy or substituter in between), then run \`nixvm reevaluate\`.`,
    }),
  },
  {
    name: 'input-git',
    fixture: 'seed',
    files: () => ({
      'flake.nix': seedFile('flake.nix')
        .replace(
          'outputs =',
          'inputs.dep = { url = "git+https://example.invalid/dep.git"; flake = false; };\n  outputs =',
        )
        .replace('{ self }:', '{ self, dep }:'),
    }),
    call: { kind: 'inventory' },
    expected: (dir) => ({
      kind: 'network',
      message: `The flake at ${dir} could not fetch one of its inputs (https://example.invalid/dep.git: the host name does not resolve); check the network connection (and any proxy or substituter in between), then run \`nixvm reevaluate\`.`,
    }),
  },
  {
    name: 'lock-outdated',
    fixture: 'seed',
    files: (dir) => ({
      'flake.nix': seedFile('flake.nix')
        .replace('outputs =', `inputs.dep.url = "path:${dir}/dep";\n  outputs =`)
        .replace('{ self }:', '{ self, dep }:'),
      'dep/flake.nix': '{ outputs = { self }: { }; }\n',
    }),
    call: { kind: 'inventory' },
    expected: (dir) => ({
      kind: 'warnings',
      message: `The flake at ${dir} has a missing or outdated flake.lock; nixvm does not write it, so run \`nix flake lock\` there to pin its inputs (evaluation is faster too).`,
    }),
  },
  {
    // nixpkgs before 24.11: lib.warn = msg: builtins.trace "warning: ${msg}".
    name: 'warning-trace',
    fixture: 'seed',
    files: () => ({
      'hosts/minimal-vm.nix': `builtins.trace "warning: minimal-vm: the option foo is deprecated" (import ./minimal-vm-real.nix)\n`,
      'hosts/minimal-vm-real.nix': seedFile('hosts/minimal-vm.nix'),
    }),
    call: { kind: 'inventory' },
    expected: () => ({ kind: 'warnings', message: 'nix: minimal-vm: the option foo is deprecated' }),
  },
  {
    // nixpkgs 24.11 and later: lib.warn is builtins.warn where nix has it (2.23+).
    name: 'warning-lib-warn',
    fixture: 'seed',
    files: () => ({
      'hosts/minimal-vm.nix': `(${LIB_WARN}) "minimal-vm: the option foo is deprecated" (import ./minimal-vm-real.nix)\n`,
      'hosts/minimal-vm-real.nix': seedFile('hosts/minimal-vm.nix'),
    }),
    call: { kind: 'inventory' },
    expected: () => ({ kind: 'warnings', message: 'nix: minimal-vm: the option foo is deprecated' }),
  },
  {
    name: 'build-failed',
    files: buildFlake(`        broken.config.system.build.toplevel = drv {
          name = "nixos-system-broken";
          system = "${CURRENT_SYSTEM}";
          args = [ "-c" "echo checking for foo.h... no; echo 'error: foo.h: No such file or directory' >&2; exit 2" ];
        };`),
    call: { kind: 'build', vm: 'broken' },
    expected: () => ({
      kind: 'build-failed',
      message: 'Building VM "broken" failed in derivation nixos-system-broken (exit code 2); fix it and build again.',
    }),
  },
  {
    name: 'build-signal',
    files: buildFlake(`        killed.config.system.build.toplevel = drv {
          name = "nixos-system-killed";
          system = "${CURRENT_SYSTEM}";
          args = [ "-c" "echo about to be killed; kill -9 $$" ];
        };`),
    call: { kind: 'build', vm: 'killed' },
    expected: () => ({
      kind: 'build-failed',
      message: 'Building VM "killed" failed in derivation nixos-system-killed (signal 9); fix it and build again.',
    }),
  },
  {
    name: 'required-system',
    files: buildFlake(`        foreign.config.system.build.toplevel = drv {
          name = "nixos-system-foreign";
          system = "riscv64-linux";
        };`),
    call: { kind: 'build', vm: 'foreign' },
    expected: (_dir, system) => ({
      kind: 'required-system',
      message: `Building VM "foreign" needs a builder for riscv64-linux, but this machine is ${system}; set up a Linux builder (run \`nixvm builder setup\` for nixpkgs' prebuilt Linux builder, or make a VM with nixpkgs' nix-builder-vm profile the builder with \`nixvm builder use <vm>\`; with nix-darwin: \`nix.linux-builder.enable = true;\`; or add a Linux machine to \`builders\` in /etc/nix/nix.conf) and build again.`,
    }),
  },
  {
    name: 'required-features',
    files: buildFlake(`        featured.config.system.build.toplevel = drv {
          name = "nixos-system-featured";
          system = "${CURRENT_SYSTEM}";
          requiredSystemFeatures = [ "apple-virt" "nixvm-test-feature" ];
        };`),
    call: { kind: 'build', vm: 'featured' },
    expected: () => ({
      kind: 'required-system',
      message: `Building VM "featured" needs a builder with features apple-virt, nixvm-test-feature, which this machine does not have; set up a Linux builder that has them (run \`nixvm builder setup\` for nixpkgs' prebuilt Linux builder, or make a VM with nixpkgs' nix-builder-vm profile the builder with \`nixvm builder use <vm>\`; with nix-darwin: \`nix.linux-builder.enable = true;\`; or add a Linux machine to \`builders\` in /etc/nix/nix.conf) and build again.`,
    }),
  },
  {
    name: 'build-throw',
    fixture: 'broken',
    call: { kind: 'build', vm: 'throws' },
    expected: () => ({
      kind: 'eval',
      message:
        'Building VM "throws" failed: services.web.listen must be set for the throws VM; fix it and build again.',
    }),
  },
  {
    // The builder VM stops (or the network drops) while it builds.
    name: 'remote-lost',
    files: remoteFlake(`echo '${DROP_MARKER}'; exec sleep 600`),
    builder: { behaviour: 'drops' },
    call: { kind: 'build', vm: 'remote-vm' },
    expected: (_dir, _system, version) => ({
      kind: 'builder-lost',
      message: LOST(minor(version) >= 26 ? "its nix daemon's connection closed" : 'unexpected end-of-file'),
    }),
  },
  {
    name: 'remote-lost-ssh',
    files: remoteFlake(`echo '${DROP_MARKER}'; exec sleep 600`),
    builder: { behaviour: 'drops', scheme: 'ssh' },
    call: { kind: 'build', vm: 'remote-vm' },
    expected: () => ({ kind: 'builder-lost', message: LOST('unexpected end-of-file') }),
  },
  {
    // Lost while nix copies the build's inputs there: nix's write fails.
    name: 'remote-lost-uploading',
    files: remoteFlake('exit 0', true),
    builder: { behaviour: 'drops-uploading' },
    call: { kind: 'build', vm: 'remote-vm' },
    expected: () => ({ kind: 'builder-lost', message: LOST('Broken pipe') }),
  },
  {
    // The builder's own nix refuses the build: not the derivation's fault.
    name: 'remote-broken',
    files: remoteFlake('exit 0'),
    builder: { behaviour: 'broken-nix' },
    call: { kind: 'build', vm: 'remote-vm' },
    expected: () => ({ kind: 'build-failed', message: BROKEN }),
  },
  {
    name: 'remote-broken-ssh',
    files: remoteFlake('exit 0'),
    builder: { behaviour: 'broken-nix', scheme: 'ssh' },
    call: { kind: 'build', vm: 'remote-vm' },
    expected: () => ({ kind: 'build-failed', message: BROKEN }),
  },
  {
    // nix has a builder for it but cannot reach it: the fix is that builder, not setting one up.
    name: 'remote-unreachable',
    files: remoteFlake('exit 0'),
    builder: { behaviour: 'absent' },
    call: { kind: 'build', vm: 'remote-vm' },
    expected: () => ({ kind: 'builder-lost', message: UNREACHABLE }),
  },
  {
    name: 'remote-unreachable-ssh',
    files: remoteFlake('exit 0'),
    builder: { behaviour: 'absent', scheme: 'ssh' },
    call: { kind: 'build', vm: 'remote-vm' },
    expected: () => ({ kind: 'builder-lost', message: UNREACHABLE }),
  },
  // The builder probe (src/core/builders/builders.ts: pingFailure), before nixvm lists a builder VM.
  {
    name: 'ping-refused',
    builder: { behaviour: 'absent' },
    call: { kind: 'ping' },
    expected: () => ({ kind: 'ping', message: 'nothing answers ssh on its address' }),
  },
  {
    name: 'ping-host-key',
    builder: { behaviour: 'other-host-key' },
    call: { kind: 'ping' },
    expected: () => ({
      kind: 'ping',
      message:
        'its sshd shows a different host key than the one its configuration pins (environment.etc."ssh/ssh_host_ed25519_key.pub"), so nix refuses it; fix the key pair in the configuration and restart the VM',
    }),
  },
  {
    name: 'ping-key-refused',
    builder: { behaviour: 'key-refused' },
    call: { kind: 'ping' },
    expected: () => ({
      kind: 'ping',
      message: "its sshd refused nixvm's key for root; check services.openssh.authorizedKeysFiles and the $KEYS share",
    }),
  },
  {
    name: 'ping-no-nix',
    builder: { behaviour: 'no-nix' },
    call: { kind: 'ping' },
    expected: () => ({
      kind: 'ping',
      message:
        'ssh logs in, but root finds no nix-daemon there (is nix installed on it, and on the PATH of ssh sessions?)',
    }),
  },
];

/** Write the case's flake into `dir` (emptied first). */
export async function materialise(c: MessageCase, dir: string): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  if (c.fixture) copyFixtureFiles(c.fixture, dir);
  for (const [rel, content] of Object.entries(c.files?.(dir) ?? {})) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), content);
  }
  if (c.git) {
    await run(['git', 'init', '-q'], { cwd: dir });
    await run(['git', 'add', '-A'], { cwd: dir });
    for (const f of c.git.untracked ?? []) await run(['git', 'rm', '-q', '--cached', '--', f], { cwd: dir });
  }
}

/** The case's builder, started (stop() it after the call); none when the case has none. */
export async function startBuilder(c: MessageCase, dir: string): Promise<LoopbackBuilder | undefined> {
  if (!c.builder) return undefined;
  return LoopbackBuilder.start(builderDir(dir), c.builder.behaviour, c.builder.scheme);
}

/** Run the case's nix call as nixvm does, its builder (if any) there for it. */
export async function runCase(
  nix: Nix,
  c: MessageCase,
  dir: string,
): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  const builder = await startBuilder(c, dir);
  try {
    return await run(callArgv(nix, c, dir, builder), {
      allowFailure: true,
      timeoutMs: 120_000,
      ...(builder ? { onLine: builder.onLine } : {}),
    });
  } finally {
    await builder?.stop();
  }
}

/** The argv nixvm runs for the case's call (`builder`: the case's, started). */
export function callArgv(nix: Nix, c: MessageCase, dir: string, builder?: LoopbackBuilder): string[] {
  const call = c.call;
  if (c.builder && !builder) throw new Error(`${c.name} needs its builder started`);
  if (call.kind === 'ping') return [nix.bin, ...NIX_COMMAND_ARGS, 'store', 'ping', '--store', builder!.storeUri()];
  // As the agent's builds do while its builder VM is ready (Builders.buildArgs).
  const builders = builder ? ['--option', 'builders', builder.machineLine()] : [];
  if (call.kind === 'build') return buildArgv(nix, dir, call.vm, builders);
  return inventoryArgv(nix, dir, call.kind === 'vm' ? singleExpr(call.vm) : BATCH_EXPR);
}

/**
 * What the user reads for what nix wrote (`exitCode` 0: the warnings of a successful evaluation).
 * The flake is its own git root; `absent` says which files are on no disk.
 */
export function translate(c: MessageCase, dir: string, stderr: string, exitCode: number): Expected {
  if (exitCode === 0) return { kind: 'warnings', message: evalWarnings(stderr, dir).join('\n') };
  const absent = new Set((c.absent ?? []).map((f) => path.join(dir, f)));
  const ctx = { flakeDir: dir, sourceRoot: dir, subject: vmSubject(c.call), exists: (f: string) => !absent.has(f) };
  if (c.call.kind === 'ping') return { kind: 'ping', message: pingFailure(stderr, exitCode) };
  if (c.call.kind === 'build') {
    // As the build manager does: the builder nix built on, from its progress events.
    const tracker = new ProgressTracker({ tailLines: 10 });
    for (const line of stderr.split('\n')) tracker.feed(line);
    const remote = tracker.progress().remote ?? null;
    // The case's builder is the only one nix has: the agent would call it its builder VM.
    const describeRemote = c.builder ? () => BUILDER_VM : null;
    const t = translateBuildError(nixErrorText(stderr), {
      ...ctx,
      vm: c.call.vm,
      remote,
      remoteWords: remote && describeRemote ? BUILDER_VM.words : null,
      remoteFix: remote && describeRemote ? BUILDER_VM.fix : null,
      describeRemote,
    });
    return t ? { kind: t.kind, message: t.message } : { kind: 'none', message: 'nix said nothing' };
  }
  const t = translateEvalError(stderr, ctx);
  return { kind: t.kind, message: t.message };
}

export interface Recording {
  case: MessageCase;
  /** e.g. "2.34.8" */
  version: string;
  file: string;
  /** What nix wrote to stderr. */
  stderr: string;
  /** 0 for the cases that warn; 1 for a failure. */
  exitCode: number;
  /** The system nix ran on, e.g. "x86_64-linux". */
  system: string;
}

/**
 * Every stored recording. The file's first line is a header,
 * `# nix <version> <system> exit <code>`, then exactly what nix wrote.
 */
export function recordings(): Recording[] {
  if (!existsSync(MESSAGES_DIR)) return [];
  const out: Recording[] = [];
  for (const file of readdirSync(MESSAGES_DIR).sort()) {
    const m = /^(.+)\.nix-(\d+\.\d+(?:\.\d+)?)\.txt$/.exec(file);
    if (!m) continue;
    const c = CASES.find((x) => x.name === m[1]);
    if (!c) throw new Error(`${file} records a case that test/helpers/nix-messages.ts does not define`);
    const text = readFileSync(path.join(MESSAGES_DIR, file), 'utf8');
    const nl = text.indexOf('\n');
    const head = /^# nix (\S+) (\S+) exit (\d+)$/.exec(text.slice(0, nl));
    if (!head) throw new Error(`${file} does not start with "# nix <version> <system> exit <code>"`);
    out.push({
      case: c,
      version: m[2] as string,
      file,
      stderr: text.slice(nl + 1),
      system: head[2] as string,
      exitCode: Number(head[3]),
    });
  }
  return out;
}

export function recordingText(version: string, system: string, exitCode: number, stderr: string): string {
  return `# nix ${version} ${system} exit ${exitCode}\n${stderr}`;
}
