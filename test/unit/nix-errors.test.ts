import { describe, expect, it } from 'vitest';
import {
  failedBuilder,
  nixErrorText,
  requiredSystem,
  translateBuildError,
  translateEvalError,
  linuxBuilderAdvice,
  unreachableBuilders,
} from '../../src/core/nix/errors.ts';
import { recordings } from '../helpers/nix-messages.ts';

const FLAKE = '/Users/me/vms';
const SRC = '/nix/store/kwx4x1fd3kfq3i7nw3m4jgh9l28r2fzh-source';
const ctx = (over: Partial<Parameters<typeof translateEvalError>[1]> = {}) => ({
  flakeDir: FLAKE,
  exists: () => true,
  ...over,
});

describe('translateEvalError', () => {
  it("names the file, line and column of a syntax error, in the user's directory", () => {
    const stderr = [
      "error: syntax error, unexpected end of file, expecting ';'",
      '',
      `       at ${SRC}/flake.nix:1:30:`,
      '',
      '            1| { outputs = { self }: { x = 1',
      '             |                              ^',
      '',
    ].join('\n');
    const t = translateEvalError(stderr, ctx());
    expect(t.kind).toBe('syntax');
    expect(t.message).toBe(
      "The flake at /Users/me/vms has a syntax error in flake.nix at line 1, column 30 (unexpected end of file, expecting ';'); fix it and save.",
    );
    expect(t.detail).toContain(`${FLAKE}/flake.nix:1:30`);
    expect(t.detail).not.toContain('/nix/store');
  });

  it('explains a flake without nixosConfigurations and a directory without flake.nix', () => {
    const missing = translateEvalError(
      "error: flake 'path:/Users/me/vms' does not provide attribute 'packages.aarch64-darwin.nixosConfigurations', 'legacyPackages.aarch64-darwin.nixosConfigurations' or 'nixosConfigurations'\n",
      ctx(),
    );
    expect(missing.kind).toBe('no-configurations');
    expect(missing.message).toMatch(/^The flake at \/Users\/me\/vms has no nixosConfigurations output; /);
    const notFlake = translateEvalError(
      "path '/Users/me/vms' does not contain a 'flake.nix', searching up\nerror: could not find a flake.nix file\n",
      ctx(),
    );
    expect(notFlake.kind).toBe('not-a-flake');
    expect(notFlake.message).toContain('has no flake.nix');
  });

  it('turns every wording of the untracked-file trap into `git add -N <file>`', () => {
    const variants = [
      `error: getting status of '${SRC}/hosts/new.nix': No such file or directory\n(use '--show-trace' to show detailed location information)`,
      `error: path '${SRC}/hosts/new.nix' does not exist`,
      `error: Path 'hosts/new.nix' in the repository "${FLAKE}" is not tracked by Git.`,
    ];
    for (const v of variants) {
      const t = translateEvalError(v, ctx({ sourceRoot: FLAKE, subject: 'VM "web"' }));
      expect(t.kind).toBe('untracked');
      expect(t.file).toBe('hosts/new.nix');
      expect(t.message).toBe(
        'hosts/new.nix is not tracked by git, so nix cannot see it; run `git add -N hosts/new.nix` in /Users/me/vms.',
      );
    }
  });

  it('maps paths through the git root when the flake is a subdirectory of the repository', () => {
    const t = translateEvalError(`error: getting status of '${SRC}/vms/hosts/new.nix': No such file or directory`, {
      flakeDir: '/repo/vms',
      sourceRoot: '/repo',
      exists: () => true,
    });
    expect(t.message).toContain('`git add -N hosts/new.nix` in /repo/vms');
  });

  it('says a referenced file is missing when it is not on disk either', () => {
    const t = translateEvalError(
      `error: getting status of '${SRC}/hosts/gone.nix': No such file or directory`,
      ctx({ exists: () => false, subject: 'VM "web"' }),
    );
    expect(t.kind).toBe('missing-file');
    expect(t.message).toBe('VM "web" refers to hosts/gone.nix, which does not exist; create it or fix the reference.');
  });

  it("summarises other evaluation errors with nix's own cause, also from newer nix traces", () => {
    const abort = translateEvalError(
      "error: evaluation aborted with the following error message: 'the aborts VM gave up'\n(use '--show-trace' to show detailed location information)\n",
      ctx({ subject: 'VM "aborts"' }),
    );
    expect(abort.message).toBe(
      'VM "aborts" failed to evaluate: evaluation aborted with the following error message: \'the aborts VM gave up\'; fix it and save.',
    );
    const newer = translateEvalError(
      [
        'error:',
        "       … while evaluating the attribute 'config.system.build.toplevel'",
        `         at ${SRC}/flake.nix:12:5:`,
        '',
        "       … while calling the 'throw' builtin",
        '',
        '       error: services.web.listen must be set',
      ].join('\n'),
      ctx({ subject: 'VM "web"' }),
    );
    expect(newer.message).toBe('VM "web" failed to evaluate: services.web.listen must be set; fix it and save.');
  });

  it('ignores warnings before the error', () => {
    const text = nixErrorText("warning: Git tree '/x' is dirty\nerror: boom\n");
    expect(text).toBe('error: boom');
  });
});

describe('build errors', () => {
  it('recognises the required-system error in the Nix 2.8/Lix wording', () => {
    const rs = requiredSystem(
      "error: a 'aarch64-linux' with features {} is required to build '/nix/store/9h4dm1vrg36w4ixnsrhrixjw3ipq7db0-nixos-system-web.drv', but I am a 'aarch64-darwin' with features {apple-virt, benchmark, big-parallel, nixos-test}",
    );
    expect(rs).toEqual({
      required: 'aarch64-linux',
      features: [],
      current: 'aarch64-darwin',
      drvPath: '/nix/store/9h4dm1vrg36w4ixnsrhrixjw3ipq7db0-nixos-system-web.drv',
    });
    const advice = linuxBuilderAdvice('Building VM "web"', rs!);
    expect(advice).toMatch(
      /^Building VM "web" needs a builder for aarch64-linux, but this machine is aarch64-darwin; set up a Linux builder/,
    );
    expect(advice).toContain('nix.linux-builder.enable = true;');
    expect(advice).toContain('`builders` in /etc/nix/nix.conf');
  });

  it('recognises the required-system error in the current Nix wording, features included', () => {
    const rs = requiredSystem(
      [
        "error: Cannot build '/nix/store/afqxrdq1cbqlmc9p7bcihs042wmjhz8v-nixos-system-web.drv'.",
        '       Reason: required system or feature not available',
        "       Required system: 'x86_64-linux' with features {kvm, nixos-test}",
        "       Current system: 'aarch64-darwin' with features {apple-virt, benchmark, big-parallel, nixos-test}",
      ].join('\n'),
    );
    expect(rs).toMatchObject({ required: 'x86_64-linux', features: ['kvm', 'nixos-test'], current: 'aarch64-darwin' });
  });

  it('finds the failing derivation in both wordings, and reads the internal-json stream', () => {
    const drv = '/nix/store/02bd15fr13yviwg709f5nbkffmbdr8xl-failing.drv';
    const json = `@nix {"action":"msg","level":0,"msg":"\\u001b[31;1merror:\\u001b[0m builder for '\\u001b[35;1m${drv}\\u001b[0m' failed with exit code 3"}`;
    expect(nixErrorText(`@nix {"action":"stop","id":1}\n${json}\n`)).toBe(
      `error: builder for '${drv}' failed with exit code 3`,
    );
    expect(failedBuilder(nixErrorText(json))).toEqual({ drvPath: drv, how: 'exit code 3' });
    expect(
      failedBuilder(
        `error: Cannot build '${drv}'.\n       Reason: builder failed with exit code 1.\n       Output paths:\n`,
      ),
    ).toEqual({ drvPath: drv, how: 'exit code 1' });
    expect(failedBuilder("error: builder for '/nix/store/aaaa-x.drv' failed due to signal 9 (Killed)")).toEqual({
      drvPath: '/nix/store/aaaa-x.drv',
      how: 'signal 9',
    });
    expect(failedBuilder('error: 1 dependencies of derivation failed to build')).toBeNull();
  });
});

describe('network failures', () => {
  const c = { flakeDir: '/Users/me/vms' };
  it("say which address failed and why in words that do not change with nix's version, then what to do", () => {
    const old = translateEvalError(
      "warning: error: unable to download 'https://x.invalid/a.tar.gz': Couldn't resolve host name (6); retrying in 626 ms\nerror: unable to download 'https://x.invalid/a.tar.gz': Couldn't resolve host name (6)\n",
      c,
    );
    const cur = translateEvalError(
      "error:\n       … while fetching the input 'https://x.invalid/a.tar.gz'\n\n       error: Failed to open archive (Source threw exception: error: unable to download 'https://x.invalid/a.tar.gz': Could not resolve hostname (6) Could not resolve host: x.invalid)\n",
      c,
    );
    for (const t of [old, cur]) {
      expect(t.kind).toBe('network');
      expect(t.message).toBe(
        'The flake at /Users/me/vms could not fetch one of its inputs (https://x.invalid/a.tar.gz: the host name does not resolve); check the network connection (and any proxy or substituter in between), then run `nixvm reevaluate`.',
      );
    }
    expect(translateEvalError("error: unable to download 'https://h/x': HTTP error 404 ('')\n", c).message).toContain(
      '(https://h/x: the server answered HTTP 404)',
    );
    expect(
      translateEvalError(
        "fatal: unable to access 'https://h/r.git/': Failed to connect to h port 443: Connection refused\nerror: program 'git' failed with exit code 128\n",
        c,
      ).message,
    ).toContain('(https://h/r.git: nothing answers there)');
  });
});

describe('remote builders nix could not reach', () => {
  // The recorded texts (test/fixtures/nix-messages/remote-unreachable*), read without an agent
  // that knows the builder: nixvm names it by its URI, and the fix is generic.
  for (const r of recordings().filter((x) => x.case.name.startsWith('remote-unreachable'))) {
    it(`${r.case.name} on Nix ${r.version}: the builder named, not the advice to set one up`, () => {
      const text = nixErrorText(r.stderr);
      const uri = unreachableBuilders(text);
      expect(uri).toHaveLength(1);
      expect(uri[0]).toMatch(/^ssh(-ng)?:\/\/root@127\.\d+\.\d+\.\d+$/);
      const t = translateBuildError(text, { flakeDir: '/f', vm: 'remote-vm' })!;
      expect(t.kind).toBe('builder-lost');
      expect(t.message).toBe(
        `Building VM "remote-vm" needs a builder for riscv64-linux, but nix could not connect to the builder ${uri[0]}; check that it runs and answers ssh, then build again.`,
      );
    });
  }
});
