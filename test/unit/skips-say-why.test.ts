/**
 * No test skips silently: vitest's default reporter prints neither a skipped test's name nor its
 * note, so a file that can skip (skipIf, runIf, ctx.skip, a check left out as root or not) must
 * say why in the output, with rootOnly() (test/helpers/users.ts) or a console line of its own.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { REPO_DIR } from '../helpers/fixtures.ts';

const CAN_SKIP = /\.(?:skipIf|runIf)\(|\bctx\.skip\(|\bdescribe\.skip\(|\bit\.skip\(|\bgetuid\?\.\(\) !== 0/;
const SAYS_WHY = /\brootOnly\(|console\.log\(/;

it('every test file that can skip a test says why in the output', () => {
  const files = fs
    .readdirSync(path.join(REPO_DIR, 'test'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => path.join('test', f));
  const silent = files.filter((f) => {
    const text = fs.readFileSync(path.join(REPO_DIR, f), 'utf8');
    return CAN_SKIP.test(text) && !SAYS_WHY.test(text);
  });
  expect(silent, 'print the reason (rootOnly, or console.log) where the test skips').toEqual([]);
});
