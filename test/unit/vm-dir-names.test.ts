/**
 * VM folder names on a case-insensitive, normalisation-insensitive file system (APFS, macOS's
 * default): two VMs must never share a folder (issue 16: `Web` and `web` shared one, so starting
 * one deleted the other's pidfile and `nixvm stop Web` stopped `web`), and folders an earlier
 * nixvm made are adopted unchanged where no other VM collides with them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { foldName, legacyVmDirName, VmDirNames, vmDirName } from '../../src/host/names.ts';

const cleanup: string[] = [];
afterEach(() => {
  for (const p of cleanup.splice(0)) fs.rmSync(p, { recursive: true, force: true });
});

const NFC = 'caf\u00e9';
const NFD = 'cafe\u0301';

describe('vmDirName', () => {
  it('keeps plain lower-case names as they are (existing folders stay where they were)', () => {
    for (const n of ['web', 'minimal-vm', 'builder-vm', 'vm01', 'a.b_c-d']) expect(vmDirName(n)).toBe(n);
  });

  it('gives names that case folding or Unicode normalisation could merge folders of their own', () => {
    const names = ['Web', 'web', 'WEB', 'wEb', NFC, NFD, 'CAFÉ', 'Straße', 'STRASSE', 'strasse', 'ǅ', 'ǆ', 'Ǆ'];
    const folded = names.map((n) => foldName(vmDirName(n)));
    // One folder per name, however the file system folds them.
    expect(new Set(folded).size, JSON.stringify(names.map(vmDirName))).toBe(names.length);
    for (const n of names) expect(vmDirName(n)).toMatch(/^[a-z0-9_-][a-z0-9._-]*$/);
    // Stable: the same name, the same folder, run after run.
    expect(vmDirName('Web')).toBe(vmDirName('Web'));
  });

  it('never lets a plain name take the folder a hashed name gets', () => {
    const hashed = vmDirName('Web');
    expect(vmDirName(hashed)).not.toBe(hashed);
  });

  it('the old rule merged them: the reason for the new one', () => {
    expect(foldName(legacyVmDirName('Web'))).toBe(foldName(legacyVmDirName('web')));
  });
});

describe('VmDirNames', () => {
  function stateWith(...dirs: string[]): string {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-dirnames-'));
    cleanup.push(root);
    for (const d of dirs) fs.mkdirSync(path.join(root, d), { recursive: true });
    return root;
  }

  it('adopts a folder an earlier nixvm made for a mixed-case name when nothing collides with it', () => {
    const root = stateWith('Web');
    const names = new VmDirNames({ roots: [root], names: () => ['Web', 'db'] });
    expect(names.dirName('Web')).toBe('Web');
    expect(names.dirName('db')).toBe('db');
  });

  it('does not adopt it once another VM folds onto it: each gets its own folder', () => {
    const root = stateWith('Web');
    const known = ['Web', 'web'];
    const names = new VmDirNames({ roots: [root], names: () => known });
    const a = names.dirName('Web');
    const b = names.dirName('web');
    expect(a).not.toBe('Web');
    expect(foldName(a)).not.toBe(foldName(b));
  });

  it('uses the new name when there is no old folder', () => {
    const root = stateWith();
    const names = new VmDirNames({ roots: [root], names: () => ['Web'] });
    expect(names.dirName('Web')).toBe(vmDirName('Web'));
  });
});
