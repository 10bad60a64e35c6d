/**
 * GC roots for the closures nixvm built or booted. Builds run with --no-link, and a running VM
 * reads its closure from the host's /nix/store over virtio-fs: without a root, the user's next
 * `nix-collect-garbage` would delete the system under a running VM.
 *
 * One symlink per closure in nixvm's state dir, registered with nix as an indirect root
 * (`nix build --out-link`, which works on Nix 2.8, current Nix and Lix). Dropping a root is just
 * removing our symlink: nix forgets indirect roots whose link is gone.
 */
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../../host/runner.ts';
import type { Nix } from './nix.ts';

export class GcRoots {
  readonly dir: string;
  private readonly nix: Nix;

  constructor(nix: Nix, dir: string) {
    this.nix = nix;
    this.dir = dir;
  }

  /** The link that roots `outPath`. */
  linkFor(outPath: string): string {
    return path.join(this.dir, path.basename(outPath));
  }

  /** Root a realised store path (a no-op when it is rooted already). */
  async add(outPath: string): Promise<void> {
    const link = this.linkFor(outPath);
    try {
      if (fs.readlinkSync(link) === outPath) return;
    } catch {
      // not rooted yet
    }
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    await run(this.nix.argv('build', '--out-link', link, outPath), { timeoutMs: 60_000 });
  }

  /** Drop every root whose store path is not in `keep`. Returns the dropped store paths. */
  prune(keep: ReadonlySet<string>): string[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return [];
    }
    const dropped: string[] = [];
    for (const name of names) {
      const link = path.join(this.dir, name);
      let target: string;
      try {
        target = fs.readlinkSync(link);
      } catch {
        continue; // not a link: not ours to touch
      }
      if (keep.has(target)) continue;
      fs.rmSync(link, { force: true });
      dropped.push(target);
    }
    return dropped;
  }
}
