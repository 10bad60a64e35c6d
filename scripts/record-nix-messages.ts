/**
 * Records what the nix on PATH writes for every case in test/helpers/nix-messages.ts, into
 * test/fixtures/nix-messages/<case>.nix-<version>.txt (overwriting that version's files).
 * Run it once per Nix version, e.g. inside the CI roots (`.ci/nix-versions.sh --record`).
 *
 *   node scripts/record-nix-messages.ts
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Nix } from '../src/core/nix/nix.ts';
import { run } from '../src/host/runner.ts';
import { rootNeeded } from '../test/helpers/loopback-builder.ts';
import {
  CASES,
  CURRENT_SYSTEM,
  MESSAGES_DIR,
  materialise,
  RECORD_ROOT,
  recordingText,
  runCase,
  translate,
} from '../test/helpers/nix-messages.ts';

// The same nix settings as the suite (test/setup-env.ts): no daemon, no substituters.
await import('../test/setup-env.ts');

const nix = Nix.locate();
const versionOut = (await run([nix.bin, '--version'])).stdout.trim();
const version = /(\d+\.\d+(?:\.\d+)?)/.exec(versionOut)?.[1];
if (!version) throw new Error(`Cannot read a version from \`${nix.bin} --version\`: ${versionOut}`);
console.log(`Recording the messages of ${versionOut} (${nix.bin}) on ${CURRENT_SYSTEM}`);

mkdirSync(MESSAGES_DIR, { recursive: true });
let mismatches = 0;
// The remote-builder cases run a real sshd on a loopback address's port 22, which needs root.
const noRoot = rootNeeded();
if (noRoot && CASES.some((c) => c.builder)) throw new Error(`Recording needs root: ${noRoot}.`);
for (const c of CASES) {
  const dir = path.join(RECORD_ROOT, c.dirName ?? c.name);
  await materialise(c, dir);
  const r = await runCase(nix, c, dir);
  const want = c.expected(dir, CURRENT_SYSTEM, version);
  const failedAsExpected = (r.exitCode !== 0) === (want.kind !== 'warnings');
  if (!failedAsExpected) {
    console.log(`  ${c.name}: nix ${version} exited ${r.exitCode}; nothing to record`);
    continue;
  }
  const exitCode = r.exitCode === 0 ? 0 : 1;
  const file = path.join(MESSAGES_DIR, `${c.name}.nix-${version}.txt`);
  writeFileSync(file, recordingText(version, CURRENT_SYSTEM, exitCode, r.stderr));
  const got = translate(c, dir, r.stderr, exitCode);
  const ok = got.kind === want.kind && got.message === want.message;
  if (!ok) mismatches++;
  console.log(`  ${c.name}: ${ok ? 'ok' : `NOT TRANSLATED: ${got.kind}: ${got.message}`}`);
}
console.log(mismatches ? `${mismatches} messages are not translated as expected.` : 'Every message is translated.');
