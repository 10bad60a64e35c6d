/**
 * Draws the tray template images and the app icon from a few vector shapes and writes them as
 * PNGs with node's zlib: no image tools needed, and the output is reproducible byte for byte.
 *
 *   node scripts/make-icons.ts [outDir]     (default: icons/)
 *
 * Tray images are macOS template images: black on transparent, only alpha matters, named
 * `<state>Template.png` (22 px) and `<state>Template@2x.png` (44 px), which Electron picks up
 * automatically. The glyph is a rounded box (the VM) with a lambda inside; states add a badge.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';

// ---------- PNG encoding ----------

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td) >>> 0);
  return Buffer.concat([len, td, crc]);
}

/** RGBA pixels (row-major, 4 bytes each) → PNG file bytes. */
export function encodePng(width: number, height: number, rgba: Uint8Array): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // colour type RGBA
  ihdr[10] = 0;
  ihdr[11] = 0;
  ihdr[12] = 0;
  const raw = Buffer.alloc((width * 4 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 4 + 1)] = 0; // filter: none
    Buffer.from(rgba.buffer, rgba.byteOffset + y * width * 4, width * 4).copy(raw, y * (width * 4 + 1) + 1);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---------- shapes as signed distances (negative inside), in a 22-unit design space ----------

type Sdf = (x: number, y: number) => number;

const segment =
  (ax: number, ay: number, bx: number, by: number, r: number): Sdf =>
  (x, y) => {
    const px = x - ax,
      py = y - ay,
      dx = bx - ax,
      dy = by - ay;
    const h = Math.max(0, Math.min(1, (px * dx + py * dy) / (dx * dx + dy * dy)));
    return Math.hypot(px - dx * h, py - dy * h) - r;
  };

const roundBox =
  (cx: number, cy: number, hw: number, hh: number, r: number): Sdf =>
  (x, y) => {
    const qx = Math.abs(x - cx) - hw + r,
      qy = Math.abs(y - cy) - hh + r;
    return Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0) - r;
  };

const circle =
  (cx: number, cy: number, r: number): Sdf =>
  (x, y) =>
    Math.hypot(x - cx, y - cy) - r;

const ring =
  (s: Sdf, halfWidth: number): Sdf =>
  (x, y) =>
    Math.abs(s(x, y)) - halfWidth;

/** An arc of a ring from angle a0 to a1 (radians, clockwise from 12 o'clock), round caps. */
const arc =
  (cx: number, cy: number, r: number, w: number, a0: number, a1: number): Sdf =>
  (x, y) => {
    let a = Math.atan2(x - cx, -(y - cy));
    if (a < 0) a += 2 * Math.PI;
    if (a >= a0 && a <= a1) return Math.abs(Math.hypot(x - cx, y - cy) - r) - w;
    const cap = (t: number) => Math.hypot(x - (cx + r * Math.sin(t)), y - (cy - r * Math.cos(t))) - w;
    return Math.min(cap(a0), cap(a1));
  };

const union =
  (...s: Sdf[]): Sdf =>
  (x, y) =>
    Math.min(...s.map((f) => f(x, y)));
const minus =
  (a: Sdf, b: Sdf): Sdf =>
  (x, y) =>
    Math.max(a(x, y), -b(x, y));

// ---------- the glyphs ----------

const STROKE = 0.8; // half-width of outlines, in design units (≈1.6 px at 1x)
const box = roundBox(11, 11, 8.2, 8.2, 3.6);
const lambda = union(
  segment(7.6, 6.2, 14.6, 15.8, 0.95),
  segment(11.1, 11.0, 7.4, 15.8, 0.95),
  segment(6.4, 6.2, 7.6, 6.2, 0.95),
);
const outlineGlyph = union(ring(box, STROKE), lambda);

// Badges sit top-right, clear of the lambda; a moat separates them from the box.
const BX = 17.2,
  BY = 4.8,
  BR = 4.3,
  MOAT = 1.4;
const withBadge = (glyph: Sdf, badge: Sdf): Sdf => union(minus(glyph, circle(BX, BY, BR + MOAT)), badge);

export const TRAY_GLYPHS: Record<'idle' | 'running' | 'building' | 'error', Sdf> = {
  idle: outlineGlyph,
  // Filled box, lambda knocked out: reads as "on" at a glance.
  running: minus(box, lambda),
  // A three-quarter ring: work in progress.
  building: withBadge(outlineGlyph, arc(BX, BY, BR - 0.9, 0.9, 0.35, 2 * Math.PI * 0.78)),
  // A filled disc with "!" knocked out.
  error: withBadge(
    outlineGlyph,
    minus(circle(BX, BY, BR), union(segment(BX, BY - 2.3, BX, BY + 0.3, 0.65), circle(BX, BY + 2.1, 0.7))),
  ),
};

/** Rasterise with 4×4 supersampling; returns alpha 0–255 per pixel. */
export function rasterise(shape: Sdf, size: number, design = 22): Uint8Array {
  const out = new Uint8Array(size * size);
  const scale = design / size;
  const S = 4;
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      let hit = 0;
      for (let sy = 0; sy < S; sy++)
        for (let sx = 0; sx < S; sx++) {
          if (shape((px + (sx + 0.5) / S) * scale, (py + (sy + 0.5) / S) * scale) <= 0) hit++;
        }
      out[py * size + px] = Math.round((hit / (S * S)) * 255);
    }
  }
  return out;
}

function templatePng(shape: Sdf, size: number): Buffer {
  const a = rasterise(shape, size);
  const rgba = new Uint8Array(size * size * 4);
  for (let i = 0; i < a.length; i++) rgba[i * 4 + 3] = a[i]!; // black, alpha only
  return encodePng(size, size, rgba);
}

/** The app icon: macOS-style rounded square, Nix blue gradient, the white glyph inside. */
function appIconPng(size: number): Buffer {
  const squircle = roundBox(11, 11, 9.2, 9.2, 4.1); // ~ Big Sur grid: 824/1024 body
  const glyphShape = union(
    ring(roundBox(11, 11, 5.6, 5.6, 2.4), 0.55),
    segment(8.4, 7.7, 13.2, 14.3, 0.65),
    segment(10.8, 11.0, 8.3, 14.3, 0.65),
    segment(7.6, 7.7, 8.4, 7.7, 0.65),
  );
  const body = rasterise(squircle, size);
  const glyph = rasterise(glyphShape, size);
  const rgba = new Uint8Array(size * size * 4);
  const top = [126, 186, 228],
    bottom = [82, 119, 195]; // Nix logo blues
  for (let y = 0; y < size; y++) {
    const t = y / (size - 1);
    const bg = top.map((c, i) => c + (bottom[i]! - c) * t);
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      const g = glyph[i]! / 255;
      rgba[i * 4] = Math.round(bg[0]! * (1 - g) + 255 * g);
      rgba[i * 4 + 1] = Math.round(bg[1]! * (1 - g) + 255 * g);
      rgba[i * 4 + 2] = Math.round(bg[2]! * (1 - g) + 255 * g);
      rgba[i * 4 + 3] = body[i]!;
    }
  }
  return encodePng(size, size, rgba);
}

export function writeIcons(outDir: string, opts: { app?: boolean } = {}): string[] {
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  for (const [state, shape] of Object.entries(TRAY_GLYPHS)) {
    for (const [suffix, px] of [
      ['', 22],
      ['@2x', 44],
    ] as const) {
      const file = path.join(outDir, `${state}Template${suffix}.png`);
      writeFileSync(file, templatePng(shape, px));
      written.push(file);
    }
  }
  if (opts.app !== false) {
    const app = path.join(outDir, 'app.png');
    writeFileSync(app, appIconPng(1024));
    written.push(app);
  }
  return written;
}

if (import.meta.main) {
  const out = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '..', 'icons'));
  for (const f of writeIcons(out)) console.log(`wrote ${path.relative(process.cwd(), f)}`);
}
