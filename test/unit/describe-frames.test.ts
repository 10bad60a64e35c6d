/** compactCodeFrames: nix's code frames moved left for a narrow card, the caret still under the error. */
import { describe, expect, it } from 'vitest';
import { compactCodeFrames } from '../../src/api/describe.ts';

// As nix 2.x prints a syntax error (the `syntax` fixture's message).
const NIX = [
  "error: syntax error, unexpected '}', expecting ';'",
  '',
  '       at /tmp/nixvm-syntax-rNolu0/flake.nix:11:7:',
  '',
  '           10|         }',
  '           11|       };',
  '             |       ^',
  '           12|     };',
].join('\n');

describe('compactCodeFrames', () => {
  it('drops the indentation a frame shares and keeps its columns', () => {
    expect(compactCodeFrames(NIX)).toBe(
      [
        "error: syntax error, unexpected '}', expecting ';'",
        '',
        'at /tmp/nixvm-syntax-rNolu0/flake.nix:11:7:',
        '',
        '10|         }',
        '11|       };',
        '  |       ^',
        '12|     };',
      ].join('\n'),
    );
    // The caret is under the column nix names (7), counted from the bar.
    const out = compactCodeFrames(NIX).split('\n');
    const bar = out[5]!.indexOf('|');
    expect(out[6]!.indexOf('^') - bar).toBe(out[5]!.indexOf('}') - bar);
  });

  it('leaves text that has no frame as it is, and each frame on its own', () => {
    expect(compactCodeFrames('builder failed\n  with exit code 3')).toBe('builder failed\n  with exit code 3');
    const two = '     1| a\n      | ^\nnext\n         9| b';
    expect(compactCodeFrames(two)).toBe('1| a\n | ^\nnext\n9| b');
  });
});
