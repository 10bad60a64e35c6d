/**
 * VM names inside the agent's sentences (issue 16, Low): every name is quoted as the others are
 * (JSON's quotes and escapes), so a name with spaces, quotes, a newline or a terminal sequence can
 * neither blur into the sentence nor fake a line of it; every command a sentence suggests quotes
 * the name as a shell word (host/shell.ts, as `ssh-command` does), so pasting it runs nothing else.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { vmActions } from '../../src/api/actions.ts';
import { flakeSentence } from '../../src/api/describe.ts';
import type { FlakeSnapshot } from '../../src/api/types.ts';
import { ipClipboardText } from '../../src/app/actions.ts';
import { visibleText } from '../../src/cli/format.ts';
import { FlakeSet, noSuchVm } from '../../src/core/flake-set.ts';
import type { Nix } from '../../src/core/nix/nix.ts';
import { bootProblem } from '../../src/core/vm/boot-shape.ts';
import { ensureWritableImage, growWritableImage, writableNotice } from '../../src/core/vm/disks.ts';
import { crashSentence } from '../../src/core/vm/ending.ts';
import { shellWord } from '../../src/host/shell.ts';
import { testSpec } from '../vfkit-sim/harness.ts';
import { snapshot, vm as makeSnapshot } from './snapshot-factory.ts';

/** Spaces, both quotes, a command substitution, a newline and a terminal-title sequence. */
const HOSTILE = `we b"'$(touch x)\n\u001b]0;pwned\u0007`;
const QUOTED = JSON.stringify(HOSTILE);
/** What a terminal would act on, and a line break inside what should be one sentence. */
const ACTIVE = /[\u0000-\u001f\u007f-\u009f]/;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-hostile-sentences-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The sentence names the VM in quotes, and nowhere bare outside a suggested command. */
function expectQuoted(sentence: string, name = HOSTILE): void {
  const prose = sentence.replace(/`[^`]*`/g, '``');
  expect(prose, sentence).toContain(JSON.stringify(name));
  expect(prose.replaceAll(JSON.stringify(name), ''), sentence).not.toContain(name);
  expect(prose, sentence).not.toMatch(ACTIVE);
}

/**
 * Each `nixvm …` the sentence suggests, pasted into sh: nixvm gets the name as one argument and
 * nothing else runs (no file x appears).
 */
function expectPastable(sentence: string, word = HOSTILE): string[] {
  const commands = [...sentence.matchAll(/`(nixvm [^`]+)`/g)].map((m) => m[1]!);
  expect(commands.length, sentence).toBeGreaterThan(0);
  const cwd = fs.mkdtempSync(path.join(tmp, 'paste-'));
  for (const cmd of commands) {
    const out = execFileSync('sh', ['-c', `nixvm() { printf '%s\\0' "$@"; }; ${cmd}`], { cwd, encoding: 'utf8' });
    expect(out.split('\0'), cmd).toContain(word);
  }
  expect(fs.readdirSync(cwd)).toEqual([]);
  return commands;
}

const flake = (over: Partial<FlakeSnapshot>): FlakeSnapshot => ({
  dir: '/vms',
  evaluating: false,
  error: null,
  warnings: [],
  lastEvalAt: 1,
  state: 'ok',
  evaluatingSince: null,
  errorKind: null,
  source: 'settings',
  hidden: [],
  ...over,
});

describe('a hostile VM name in the agent’s sentences', () => {
  it('the writable store image notices and refusals quote it, and their commands quote it as a shell word', () => {
    const dir = { dir: path.join(tmp, 'vm') };
    expect(() => growWritableImage(dir, HOSTILE, 64)).toThrow(QUOTED);
    ensureWritableImage(dir, HOSTILE, 32);
    const img = { role: 'writable-store', apparentBytes: 32 * 1024 * 1024 } as const;
    const spec = (sizeMiB: number) => testSpec({ name: HOSTILE, writableStore: { sizeMiB, device: null } });
    const grow = writableNotice(HOSTILE, spec(64), img as never).notice!;
    const reset = writableNotice(HOSTILE, spec(16), img as never).notice!;
    let shrink = '';
    try {
      growWritableImage(dir, HOSTILE, 16);
    } catch (err) {
      shrink = (err as Error).message;
    }
    for (const s of [grow, reset, shrink]) {
      expectQuoted(s);
      expectPastable(s);
    }
    expect(grow).toContain(`\`nixvm disk grow ${shellWord(HOSTILE)}\``);
    expect(reset).toContain(`\`nixvm disk reset ${shellWord(HOSTILE)}\``);
  });

  it('an unknown or hidden name quotes it (and the known ones), and include quotes the name and folder', () => {
    const dir = '/Users/me/my vms';
    const hidden = noSuchVm(HOSTILE, [], [flake({ dir, hidden: [HOSTILE] })]).message;
    expectQuoted(hidden);
    expect(expectPastable(hidden)).toEqual([`nixvm flake include ${shellWord(dir)} ${shellWord(HOSTILE)}`]);
    expectPastable(hidden, dir);
    const unknown = noSuchVm('nope', [HOSTILE, 'web']).message;
    expectQuoted(unknown);
    expect(unknown).toContain(`(known: ${QUOTED}, "web")`);
  });

  it('a flake’s sentence quotes the names it hides, and its include command quotes the folder', () => {
    const dir = '/Users/me/$(touch x) vms';
    for (const vms of [0, 2]) {
      const s = flakeSentence(flake({ dir, hidden: [HOSTILE, 'laptop'] }), 0, vms, shellWord)!;
      expectQuoted(s);
      expect(s).toContain(`(${QUOTED}, "laptop")`);
      expect(s).toContain(`\`nixvm flake include ${shellWord(dir)} NAME\``);
      const [cmd] = [...s.matchAll(/`(nixvm [^`]+)`/g)].map((m) => m[1]!);
      const out = execFileSync('sh', ['-c', `nixvm() { printf '%s\\0' "$@"; }; ${cmd}`], {
        cwd: tmp,
        encoding: 'utf8',
      });
      expect(out.split('\0')).toEqual(['flake', 'include', dir, 'NAME', '']);
    }
  });

  it('a flake folder that is gone: the remove command quotes the folder', async () => {
    const dir = path.join(tmp, `gone $(touch x) "it's"`);
    const s = new FlakeSet({ debounceMs: 50, log: () => {} });
    try {
      await s.setNix({} as Nix, null);
      s.sync([{ dir, source: 'settings' }]);
      const error = s.snapshots().find((f) => f.dir === dir)!.error!;
      expect(error).toContain(`\`nixvm flake remove ${shellWord(dir)}\``);
      expectPastable(error, dir);
    } finally {
      await s.close();
    }
  });

  it('the actions, the app’s verbs, a crash and a boot refusal quote it', () => {
    const ctx = snapshot([]).agent;
    const stopped = vmActions(makeSnapshot({ name: HOSTILE }), ctx);
    const running = vmActions(makeSnapshot({ name: HOSTILE, state: 'running' }), ctx);
    const reasons = [...stopped.more, ...running.more, ...running.quick, ...(running.primary ? [running.primary] : [])]
      .flatMap((a) => [a.reason, a.confirm])
      .filter((r): r is string => typeof r === 'string' && r.includes('we b'));
    expect(reasons.length).toBeGreaterThan(0);
    for (const r of reasons) expectQuoted(r);
    let ip = '';
    try {
      ipClipboardText({ name: HOSTILE, ipv4: null, ipv6: null }, 'ipv4');
    } catch (err) {
      ip = (err as Error).message;
    }
    expectQuoted(ip);
    expectQuoted(crashSentence(HOSTILE, { code: 1, signal: null }, []));
    expectQuoted(bootProblem(HOSTILE, testSpec({ boot: { loader: 'grub', root: null } } as never))!);
  });

  it('what the CLI prints of such a sentence acts on nothing and stays one line', () => {
    const s = writableNotice(HOSTILE, testSpec({ writableStore: { sizeMiB: 64, device: null } }), {
      role: 'writable-store',
      apparentBytes: 32 * 1024 * 1024,
    } as never).notice!;
    expect(visibleText(s)).not.toMatch(/[\u001b\u0007]/);
    expect(visibleText(s.replace(/`[^`]*`/g, '``')).split('\n')).toHaveLength(1);
  });
});
