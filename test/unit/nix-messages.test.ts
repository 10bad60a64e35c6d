/**
 * Every nix message nixvm translates, in the real text of each Nix version it was recorded from
 * (test/fixtures/nix-messages, made by scripts/record-nix-messages.ts on Nix 2.8, 2.26 and 2.34).
 */
import { describe, expect, it } from 'vitest';
import { CASES, RECORD_ROOT, recordings, translate } from '../helpers/nix-messages.ts';
import path from 'node:path';

const all = recordings();
/** The versions CI runs (bookworm, trixie, sid): every case has a recording from each. */
const VERSIONS = ['2.8', '2.26', '2.34'];

describe('nix messages, as each Nix version words them', () => {
  for (const r of all) {
    it(`${r.case.name} on Nix ${r.version}`, () => {
      const dir = path.join(RECORD_ROOT, r.case.dirName ?? r.case.name);
      const got = translate(r.case, dir, r.stderr, r.exitCode);
      expect(got, `${r.file}: what a user reads for this text`).toEqual(r.case.expected(dir, r.system, r.version));
    });
  }

  it('has a recording of every case from every Nix version CI runs', () => {
    const missing: string[] = [];
    for (const c of CASES) {
      const seen = all.filter((r) => r.case === c).map((r) => r.version);
      // A case nix accepts on newer versions has nothing to record there.
      const want = c.mayPass ? VERSIONS.slice(0, 1) : VERSIONS;
      for (const v of want) if (!seen.some((s) => s === v || s.startsWith(`${v}.`))) missing.push(`${c.name} on ${v}`);
    }
    expect(missing, 'run scripts/record-nix-messages.ts with each Nix (.ci/nix-versions.sh --record)').toEqual([]);
  });
});
