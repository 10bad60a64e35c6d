/**
 * Reading a store derivation (.drv, ATerm) directly: its output paths are known before anything
 * is built, so `inspect` can show the exact argv without running nix.
 */
import fs from 'node:fs';

/** The `out` output path a .drv file declares, or null when it cannot be read. */
export function drvOutPath(drvPath: string, output = 'out'): string | null {
  let text: string;
  try {
    // The outputs come first in `Derive([("out","/nix/store/…","",""),…],…)`: the head is enough.
    const fd = fs.openSync(drvPath, 'r');
    try {
      const buf = Buffer.alloc(4096);
      const n = fs.readSync(fd, buf, 0, buf.length, 0);
      text = buf.subarray(0, n).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
  const re = /\("([^"]+)","(\/[^"]+)"/g;
  if (!text.startsWith('Derive([')) return null;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m[1] === output) return m[2] ?? null;
  }
  return null;
}
