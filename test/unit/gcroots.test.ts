import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { GcRoots } from '../../src/core/nix/gcroots.ts';
import { Nix } from '../../src/core/nix/nix.ts';

it('drops only the roots of closures no VM uses, and never touches what is not a link', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-gcroots-'));
  try {
    const roots = new GcRoots(new Nix('/nonexistent/nix'), dir);
    const used = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web';
    const old = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-web';
    fs.symlinkSync(used, roots.linkFor(used));
    fs.symlinkSync(old, roots.linkFor(old));
    fs.writeFileSync(path.join(dir, 'README'), 'not a root');
    expect(roots.prune(new Set([used]))).toEqual([old]);
    expect(fs.readdirSync(dir).sort()).toEqual(['README', path.basename(used)]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
