/** Which git index the flake watcher watches (`git add -N` changes nothing else). */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { gitDirOf } from '../../src/core/nix/watcher.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'nixvm-gitdir-')));
  dirs.push(d);
  return d;
}

it("finds the repository's .git above a flake in a subdirectory", () => {
  const repo = tmp();
  mkdirSync(path.join(repo, '.git'));
  mkdirSync(path.join(repo, 'vms'));
  expect(gitDirOf(path.join(repo, 'vms'))).toBe(path.join(repo, '.git'));
});

it('follows the .git file of a worktree or submodule to its git directory', () => {
  const main = tmp();
  const wt = tmp();
  mkdirSync(path.join(main, '.git', 'worktrees', 'feature'), { recursive: true });
  writeFileSync(path.join(wt, '.git'), `gitdir: ${path.join(main, '.git', 'worktrees', 'feature')}\n`);
  expect(gitDirOf(wt)).toBe(path.join(main, '.git', 'worktrees', 'feature'));
  const sub = tmp();
  mkdirSync(path.join(sub, 'modules', 'child'), { recursive: true });
  mkdirSync(path.join(sub, 'child'));
  writeFileSync(path.join(sub, 'child', '.git'), 'gitdir: ../modules/child\n');
  expect(gitDirOf(path.join(sub, 'child'))).toBe(path.join(sub, 'modules', 'child'));
});

it('is null for a flake outside git', () => {
  expect(gitDirOf(tmp())).toBeNull();
});
