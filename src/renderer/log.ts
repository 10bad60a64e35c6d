/**
 * The log window: live tail of a VM's console or its last build, ANSI colours, filter, follow.
 * It reads only the end of the file (the agent's `logs` method), then appends `log` events.
 *
 * Smooth under a fast writer: lines are kept in memory (up to MEMORY_MAX, oldest dropped) and
 * the list is virtualised — every line is one fixed-height row, and only the rows in view (plus
 * a margin) exist in the DOM. New lines are batched to one update per frame, so the cost of a
 * frame does not grow with how many lines arrived or how many are kept.
 */
import type { AgentEvent, LogKind, VmSnapshot } from '../api/types.ts';
import { stateLabel } from '../api/describe.ts';
import { bridge, errorMessage } from './bridge.ts';
import { AnsiRenderer, applyTrueColours, stripAnsi } from './ansi.ts';
import { LineBuffer, matches, newAfterTail, type LogLine } from './log-buffer.ts';
import { openConsoleView, type ConsoleView } from './terminal.ts';
import { applyWindowFlags } from './window-flags.ts';

const TAIL_LINES = 5000;
const MEMORY_MAX = 20_000;
/** Row height in px; styles/log.css sets the same on .line. */
const LH = 16;
const PAD_TOP = 6;
const OVERSCAN = 20;

const q = applyWindowFlags();
const vm = q.get('vm') ?? '';
let kind: LogKind = q.get('kind') === 'build' ? 'build' : 'console';

const logEl = document.getElementById('log')!;
const searchEl = document.getElementById('search') as HTMLInputElement;
const followEl = document.getElementById('follow') as HTMLInputElement;
const countEl = document.getElementById('count')!;
const noticeEl = document.getElementById('notice')!;
const titleEl = document.getElementById('title')!;
const vmNameEl = document.getElementById('vmname')!;
const consoleBtn = document.getElementById('console-app') as HTMLButtonElement;
const tabs = Array.from(document.querySelectorAll<HTMLButtonElement>('.seg [data-kind]'));

// The scroll area holds a sizer as tall as all the lines, and the rows in view positioned in it.
const sizer = document.createElement('div');
sizer.className = 'sizer';
const rows = document.createElement('div');
rows.className = 'rows';
sizer.append(rows);
logEl.append(sizer);

let buffer = new LineBuffer<string>(MEMORY_MAX);
let ansi = new AnsiRenderer();
let query = '';
/** The lines the filter lets through (all of them without a filter), oldest first. */
let view: readonly LogLine<string>[] = buffer.all;
let filtered: LogLine<string>[] = [];
let generation = 0;
/** Live lines that arrived while the initial tail was being read. */
let pending: string[] | null = null;
/** Lines waiting for the next frame. */
let queued: { text: string; data: string }[] = [];
let frame = 0;
let tailTruncated = false;
let logPath: string | null = null;
let maxChars = 0;
let rendered = { from: -1, to: -1, firstId: -1, lastId: -1 };

const charWidth = (() => {
  const probe = document.createElement('span');
  probe.className = 'mono';
  probe.textContent = '0'.repeat(100);
  probe.style.visibility = 'hidden';
  probe.style.position = 'absolute';
  document.body.append(probe);
  const w = probe.getBoundingClientRect().width / 100 || 7;
  probe.remove();
  return w;
})();

/** A line as a terminal would show it: the text after the last carriage return. */
function normalise(line: string): string {
  const l = line.endsWith('\r') ? line.slice(0, -1) : line;
  const cr = l.lastIndexOf('\r');
  return cr >= 0 ? l.slice(cr + 1) : l;
}

function ingest(lines: string[]): void {
  for (const raw of lines) {
    const line = normalise(raw);
    const text = stripAnsi(line);
    if (text.length > maxChars) maxChars = Math.min(text.length, 4000);
    queued.push({ text, data: ansi.toHtml(line) });
  }
  if (!frame) frame = requestAnimationFrame(flush);
}

function atBottom(): boolean {
  return logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 4;
}

/**
 * Where our own code last scrolled the log to. The scroll event that follows arrives a frame
 * later, possibly after the user has clicked Follow: it is ours, not the user's, so it must not
 * set Follow back (it did, while a fast writer scrolled the log every frame).
 */
let ownScrollTop: number | null = null;

function scrollLogTo(top: number): void {
  const before = logEl.scrollTop;
  logEl.scrollTop = top;
  if (logEl.scrollTop !== before) ownScrollTop = logEl.scrollTop;
}

/** Index of the first line in `view` whose id is ≥ id (ids only grow). */
function indexOfId(id: number): number {
  let lo = 0;
  let hi = view.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (view[mid]!.id < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function layoutSizer(): void {
  sizer.style.height = `${view.length * LH + PAD_TOP * 2}px`;
  sizer.style.width = `${Math.ceil(maxChars * charWidth) + 24}px`;
}

/** Puts the rows in view (plus a margin) in the DOM; does nothing when they are already there. */
function render(force = false): void {
  // scrollTop can still hold the old, longer view's offset (a filter just shrank it) until the
  // browser clamps it on the next scroll event: clamp here, or this frame shows no rows at all.
  const maxScroll = Math.max(0, view.length * LH + PAD_TOP * 2 - logEl.clientHeight);
  const top = Math.max(0, Math.min(logEl.scrollTop, maxScroll) - PAD_TOP);
  const from = Math.max(0, Math.floor(top / LH) - OVERSCAN);
  const to = Math.min(view.length, Math.ceil((top + logEl.clientHeight) / LH) + OVERSCAN);
  const firstId = view[from]?.id ?? -1;
  const lastId = view[to - 1]?.id ?? -1;
  if (
    !force &&
    from === rendered.from &&
    to === rendered.to &&
    firstId === rendered.firstId &&
    lastId === rendered.lastId
  )
    return;
  rendered = { from, to, firstId, lastId };
  rows.style.transform = `translateY(${PAD_TOP + from * LH}px)`;
  let html = '';
  for (let i = from; i < to; i++) html += `<div class="line">${view[i]!.data || ' '}</div>`;
  rows.innerHTML = html;
  applyTrueColours(rows);
  highlight();
}

function flush(): void {
  frame = 0;
  if (!queued.length) return;
  const follow = followEl.checked;
  // The line at the top of the viewport, to keep it there when not following.
  const anchor = view[Math.floor(Math.max(0, logEl.scrollTop - PAD_TOP) / LH)];
  const offset = Math.max(0, logEl.scrollTop - PAD_TOP) % LH;
  const { added } = buffer.push(queued);
  queued = [];
  if (query) {
    const oldest = buffer.all[0]?.id ?? 0;
    let drop = 0;
    while (drop < filtered.length && filtered[drop]!.id < oldest) drop++;
    if (drop) filtered.splice(0, drop);
    for (const l of added) if (matches(l.text, query)) filtered.push(l);
  }
  layoutSizer();
  // The notice above may appear now and shrink the log: settle the chrome before scrolling.
  updateChrome();
  if (follow) scrollLogTo(logEl.scrollHeight);
  else if (anchor) scrollLogTo(PAD_TOP + indexOfId(anchor.id) * LH + offset);
  render(true);
}

function applyFilter(): void {
  filtered = query ? buffer.all.filter((l) => matches(l.text, query)) : [];
  view = query ? filtered : buffer.all;
  layoutSizer();
  updateChrome();
  if (followEl.checked) scrollLogTo(logEl.scrollHeight);
  render(true);
}

function updateChrome(): void {
  const count = query ? `${view.length} of ${buffer.size} lines` : buffer.size ? `${buffer.size} lines` : '';
  if (countEl.textContent !== count) countEl.textContent = count;
  let notice: string | null = null;
  if (pending === null && buffer.size === 0) notice = emptyText();
  else if (tailTruncated || buffer.total > buffer.size)
    notice = `Showing the last ${buffer.size} lines. Open in Console for the whole file.`;
  noticeEl.hidden = notice === null;
  if (notice !== null && noticeEl.textContent !== notice) noticeEl.textContent = notice;
  consoleBtn.disabled = logPath === null;
}

let current: VmSnapshot | undefined;

/** What an empty log means, and how to get lines into it. */
function emptyText(): string {
  const up = current?.state === 'starting' || current?.state === 'running';
  if (kind === 'build') {
    if (current?.build.status === 'building') return 'Waiting for the build to write its first line…';
    return logPath || current?.build.logPath
      ? 'The last build wrote nothing.'
      : `${JSON.stringify(vm)} has not been built yet: its build log appears here while it builds.`;
  }
  return up
    ? 'Waiting for console output…'
    : `${JSON.stringify(vm)} has no console output yet: start it to see it boot here.`;
}

// ---------- search highlight (CSS Custom Highlight API, where available) ----------

const highlights = (globalThis as { CSS?: { highlights?: Map<string, unknown> } }).CSS?.highlights;
const HighlightCtor = (globalThis as { Highlight?: new (...r: Range[]) => unknown }).Highlight;

/** Marks the filter text in the rows on screen. */
function highlight(): void {
  if (!highlights || !HighlightCtor) return;
  if (!query) {
    highlights.delete('search');
    return;
  }
  const ranges: Range[] = [];
  const needle = query.toLowerCase();
  const walker = document.createTreeWalker(rows, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = (n.nodeValue ?? '').toLowerCase();
    for (let i = text.indexOf(needle); i >= 0; i = text.indexOf(needle, i + needle.length)) {
      const r = document.createRange();
      r.setStart(n, i);
      r.setEnd(n, i + needle.length);
      ranges.push(r);
    }
  }
  highlights.set('search', new HighlightCtor(...ranges));
}

// ---------- loading ----------

let unsubscribe: (() => void) | null = null;

function onLog(ev: AgentEvent): void {
  if (ev.type === 'log' && ev.vm === vm && ev.kind === kind) {
    if (pending) pending.push(...ev.lines);
    else ingest(ev.lines);
  }
}

async function load(k: LogKind): Promise<void> {
  const gen = ++generation;
  kind = k;
  // Subscribe before reading the tail; lines that arrive meanwhile wait in `pending`.
  pending = [];
  unsubscribe?.();
  unsubscribe = bridge.onEvent(onLog, { logs: [{ vm, kind: k }] });
  const url = new URL(location.href);
  url.searchParams.set('kind', k);
  history.replaceState(null, '', url);
  for (const t of tabs) t.setAttribute('aria-selected', String(t.dataset.kind === k));
  document.title = `${vm} — ${k === 'build' ? 'Build Log' : 'Console'}`;
  buffer = new LineBuffer<string>(MEMORY_MAX);
  ansi = new AnsiRenderer();
  queued = [];
  maxChars = 0;
  logPath = null;
  tailTruncated = false;
  followEl.checked = true;
  applyFilter();
  try {
    const tail = await bridge.call('logs', { vm, kind: k, lines: TAIL_LINES });
    if (gen !== generation) return;
    logPath = tail.path;
    tailTruncated = tail.lines.length >= TAIL_LINES;
    const live = newAfterTail(tail.lines, pending);
    pending = null;
    ingest([...tail.lines, ...live]);
    updateChrome();
  } catch (e) {
    if (gen !== generation) return;
    pending = null;
    noticeEl.hidden = false;
    noticeEl.textContent = errorMessage(e);
  }
}

function showVm(v: VmSnapshot | undefined): void {
  current = v;
  vmNameEl.textContent = v ? `${v.name} — ${stateLabel(v)}` : vm;
  titleEl.dataset.state = v ? v.state : 'stopped';
  if (v?.build.status === 'building') titleEl.dataset.state = 'building';
  if (!logPath && v) {
    const known = kind === 'build' ? v.build.logPath : v.consoleLog;
    if (known && pending === null) logPath = known;
    consoleBtn.disabled = logPath === null;
  }
  if (buffer.size === 0 && pending === null) updateChrome();
}

bridge.onEvent((ev) => {
  if (ev.type === 'snapshot') showVm(ev.snapshot.vms.find((v) => v.name === vm));
});

// The Terminal tab: the console in xterm.js, typed into (the log's tabs read the file instead).
const termEl = document.getElementById('term')!;
const termTab = document.querySelector<HTMLButtonElement>('.seg [data-mode="terminal"]')!;
const logOnly = [searchEl, countEl, followEl.parentElement!, consoleBtn];
let termView: ConsoleView | null = null;

function showTerminal(on: boolean): void {
  termEl.hidden = !on;
  logEl.hidden = on;
  for (const el of logOnly) el.hidden = on;
  termTab.setAttribute('aria-selected', String(on));
  if (on) for (const t of tabs) t.setAttribute('aria-selected', 'false');
  if (!on) {
    termView?.close();
    termView = null;
    termEl.replaceChildren();
    return;
  }
  noticeEl.hidden = true;
  document.title = `${vm} — Terminal`;
  void openConsoleView(termEl, vm, (text, level) => {
    noticeEl.hidden = false;
    noticeEl.textContent = text;
    noticeEl.dataset.level = level;
  }).then((v) => {
    if (termEl.hidden) v.close();
    else termView = v;
  });
}

termTab.addEventListener('click', () => {
  if (termEl.hidden) showTerminal(true);
  else termView?.focus();
});
for (const t of tabs)
  t.addEventListener('click', () => {
    if (!termEl.hidden) showTerminal(false);
    void load(t.dataset.kind === 'build' ? 'build' : 'console');
  });
searchEl.addEventListener('input', () => {
  query = searchEl.value;
  applyFilter();
});
searchEl.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape') {
    searchEl.value = '';
    query = '';
    applyFilter();
  }
});
followEl.addEventListener('change', () => {
  if (followEl.checked) scrollLogTo(logEl.scrollHeight);
});
// Scrolling up pauses following (like a terminal); scrolling back to the end resumes it. Only the
// user's scrolling does: a scroll that lands where our own code put the log is ours.
let scrollFrame = 0;
logEl.addEventListener(
  'scroll',
  () => {
    const ours = ownScrollTop !== null && logEl.scrollTop === ownScrollTop;
    ownScrollTop = null;
    const bottom = atBottom();
    if (!ours && followEl.checked !== bottom) followEl.checked = bottom;
    if (!scrollFrame) {
      scrollFrame = requestAnimationFrame(() => {
        scrollFrame = 0;
        render();
      });
    }
  },
  { passive: true },
);
// A resized log area (window resized, notice shown) stays pinned to the end while following.
new ResizeObserver(() => {
  if (followEl.checked) scrollLogTo(logEl.scrollHeight);
  render();
}).observe(logEl);
consoleBtn.addEventListener('click', () => {
  bridge.ui('openInConsoleApp', { vm, kind }).catch((e) => {
    noticeEl.hidden = false;
    noticeEl.textContent = errorMessage(e);
  });
});
document.addEventListener('keydown', (ev) => {
  if ((ev.metaKey || ev.ctrlKey) && ev.key.toLowerCase() === 'f') {
    ev.preventDefault();
    searchEl.focus();
    searchEl.select();
  }
});

vmNameEl.textContent = vm;
bridge.call('snapshot', {}).then(
  (s) => showVm(s.vms.find((v) => v.name === vm)),
  () => {},
);
void load(kind);
