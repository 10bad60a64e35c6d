/**
 * Fixture flakes are copied to a fresh temp dir before use: inside the checkout nix would treat
 * them as part of the project's git repo (only committed files visible, paths rewritten).
 */
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
  mkdirSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/host/runner.ts';

export const FIXTURES_DIR = fileURLToPath(new URL('../fixtures/', import.meta.url));
export const REPO_DIR = fileURLToPath(new URL('../../', import.meta.url));

export interface FlakeCopy {
  /** Absolute, symlink-free path of the copy. */
  dir: string;
  /** Write (or overwrite) a file relative to the copy. */
  write(rel: string, content: string): void;
  /** Path of a file inside the copy. */
  file(rel: string): string;
  remove(): void;
}

export interface CopyOptions {
  /** `git init` and `git add -A` the copy, making it a git flake. */
  git?: boolean;
  /** Write a random `salt` file (fixtures that read it get fresh derivations, so nix really builds). */
  salt?: boolean;
}

const SHARED_LIB = path.join(FIXTURES_DIR, '_lib');

/**
 * Copy a fixture's files into `dest`: the fixture itself, plus the shared `_lib/` files it does
 * not define itself (into its `lib/`). A directory outside test/fixtures is copied as it is.
 */
export function copyFixtureFiles(nameOrDir: string, dest: string): void {
  const src = path.isAbsolute(nameOrDir) ? nameOrDir : path.join(FIXTURES_DIR, nameOrDir);
  cpSync(src, dest, { recursive: true });
  if (path.dirname(path.resolve(src)) !== path.resolve(FIXTURES_DIR)) return;
  mkdirSync(path.join(dest, 'lib'), { recursive: true });
  for (const f of readdirSync(SHARED_LIB).filter((f) => f.endsWith('.nix'))) {
    const target = path.join(dest, 'lib', f);
    if (!existsSync(target)) cpSync(path.join(SHARED_LIB, f), target);
  }
}

/** Copy a fixture (a name under test/fixtures, or an absolute directory) to a temp dir. */
export async function copyFixture(nameOrDir: string, opts: CopyOptions = {}): Promise<FlakeCopy> {
  const src = path.isAbsolute(nameOrDir) ? nameOrDir : path.join(FIXTURES_DIR, nameOrDir);
  const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), `nixvm-${path.basename(src)}-`)));
  copyFixtureFiles(src, dir);
  const copy: FlakeCopy = {
    dir,
    file: (rel) => path.join(dir, rel),
    write(rel, content) {
      const f = path.join(dir, rel);
      mkdirSync(path.dirname(f), { recursive: true });
      writeFileSync(f, content);
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  if (opts.salt) copy.write('salt', `${process.pid}-${Date.now()}-${Math.random()}`);
  if (opts.git) {
    await run(['git', 'init', '-q'], { cwd: dir });
    await run(['git', 'add', '-A'], { cwd: dir });
  }
  return copy;
}

/** An empty temp dir (for "not a flake"). */
export function emptyDir(): FlakeCopy {
  const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'nixvm-empty-')));
  return {
    dir,
    file: (rel) => path.join(dir, rel),
    write: (rel, content) => writeFileSync(path.join(dir, rel), content),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Give a copy of the seed-exact fixture (or the example) systemd 255 in every VM: no
 * systemd-ssh-generator, so their sshd does not listen on vsock.
 */
export function seedWithOlderSystemd(flakeDir: string): void {
  const base = path.join(flakeDir, 'modules', 'base.nix');
  const text = readFileSync(base, 'utf8');
  const anchor = '  systemd.repart.partitions =';
  if (!text.includes(anchor)) throw new Error(`${base} has no "${anchor.trim()}" to put systemd's version beside`);
  writeFileSync(base, text.replace(anchor, `  systemd.package.version = "255.9";\n${anchor}`));
}
