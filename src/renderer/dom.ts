/** A tiny element builder: the renderer is vanilla TS, and this keeps the views readable. */
type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;
type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, '').toLowerCase(), v);
    else if (k === 'class') el.className = String(v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c);
  }
  return el;
}

/** Inline SVG icons (SF Symbols-like strokes); built with the DOM so no markup strings. */
const ICONS: Record<string, string[]> = {
  gear: [
    'M12 15.5a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7Z',
    'M19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1Z',
  ],
  refresh: ['M21 12a9 9 0 1 1-2.6-6.4', 'M21 3v6h-6'],
  play: ['M7 4.5v15l12-7.5-12-7.5Z'],
  stop: ['M6 6h12v12H6z'],
  restart: ['M3 12a9 9 0 1 0 2.6-6.4', 'M3 3v6h6'],
  hammer: ['M14.5 6.5 9 12l3 3 5.5-5.5', 'M13 5l4-2 4 4-2 4', 'M9 12l-6 6 3 3 6-6'],
  terminal: ['M4 5h16v14H4z', 'M7.5 9.5 10 12l-2.5 2.5', 'M12 15h4.5'],
  copy: ['M8 8h12v12H8z', 'M16 8V4H4v12h4'],
  doc: ['M6 3h8l4 4v14H6z', 'M14 3v4h4', 'M9 12h6', 'M9 16h6'],
  folder: ['M3 6h6l2 2h10v11H3z'],
  xmark: ['M6 6l12 12', 'M18 6 6 18'],
  ellipsis: ['M5 12h.01', 'M12 12h.01', 'M19 12h.01'],
  network: ['M12 3v6', 'M5 15v-3h14v3', 'M12 9v3', 'M3 15h4v5H3z', 'M10 15h4v5h-4z', 'M17 15h4v5h-4z'],
};

export function icon(name: keyof typeof ICONS | string, size = 13): SVGSVGElement {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('aria-hidden', 'true');
  svg.classList.add('icon');
  for (const d of ICONS[name] ?? []) {
    const p = document.createElementNS(NS, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  return svg;
}

/** "~/vms" for paths under the home folder (guessed from /Users/<name> or /home/<name>). */
export function tildify(p: string): string {
  const m = /^\/(?:Users|home)\/[^/]+/.exec(p);
  return m ? `~${p.slice(m[0].length)}` : p;
}
