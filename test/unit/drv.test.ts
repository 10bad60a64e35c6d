import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { drvOutPath } from '../../src/core/nix/drv.ts';

it('reads the out path a .drv declares, before anything is built', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-drv-'));
  const drv = path.join(dir, 'x.drv');
  fs.writeFileSync(
    drv,
    'Derive([("dev","/nix/store/aaa-x-dev","",""),("out","/nix/store/bbb-nixos-system-x","","")],[("/nix/store/c.drv",["out"])],[],"x86_64-linux","/bin/sh",["-c","x"],[("out","/nix/store/bbb-nixos-system-x")])',
  );
  expect(drvOutPath(drv)).toBe('/nix/store/bbb-nixos-system-x');
  expect(drvOutPath(drv, 'dev')).toBe('/nix/store/aaa-x-dev');
  expect(drvOutPath(path.join(dir, 'missing.drv'))).toBeNull();
  fs.writeFileSync(drv, 'garbage');
  expect(drvOutPath(drv)).toBeNull();
  fs.rmSync(dir, { recursive: true });
});
