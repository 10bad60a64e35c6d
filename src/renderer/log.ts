/**
 * The log window: live tail of a VM's console or its last build, ANSI colours, filter, follow.
 * It reads only the end of the file (the agent's `logs` method), then appends `log` events.
 * The DOM is capped (DOM_MAX lines) and updated at most once per frame, so a VM writing fast
 * costs one small append per frame however many lines arrive.
 */
import type { AgentEvent, LogKind, VmSnapshot } from '../api/types.ts';
import { stateLabel } from '../api/describe.ts';
import { bridge, errorMessage } from './bridge.ts';
import { AnsiRenderer, applyTrueColours, stripAnsi } from './ansi.ts';
import { LineBuffer, matches, newAfterTail } from './log-buffer.ts';
import { applyWindowFlags } from './window-flags.ts';

const TAIL_LINES = 5000;
const MEMORY_MAX = 20_000;
const DOM_MAX = 2000;

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

let buffer = new LineBuffer<string>(MEMORY_MAX);
let ansi = new AnsiRenderer();
let query = '';
let generation = 0;
/** Live lines that arrived while the initial tail was being read. */
let pending: string[] | null = null;
/** Lines waiting for the next frame. */
let queued: { text: string; data: string }[] = [];
let frame = 0;
let tailTruncated = false;
let logPath: string | null = null;

/** A line as a terminal would show it: the text after the last carriage return. */
function normalise(line: string): string {
  const l = line.endsWith('\r') ? line.slice(0, -1) : line;
  const cr = l.lastIndexOf('\r');
  return cr >= 0 ? l.slice(cr + 1) : l;
}

const W = window as unknown as { st: Record<string, number> };
W.st = { ingest: 0, flush: 0, append: 0, trim: 0, chrome: 0, n: 0, lines: 0 };
function ingest(lines: string[]): void {
  const t0 = performance.now();
  W.st.lines! += lines.length;
  for (const raw of lines) {
    const line = normalise(raw);
    queued.push({ text: stripAnsi(line), data: ansi.toHtml(line) });
  }
  if (!frame) frame = requestAnimationFrame(flush);
  W.st.ingest! += performance.now() - t0;
}

function atBottom(): boolean {
  return logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 4;
}

const tpl = document.createElement('template');
/** Appends lines to the log; true colours are applied once the nodes are in the document. */
function appendLines(items: readonly { text: string; data: string }[]): void {
  tpl.innerHTML = items.map((l) => `<div class="line">${l.data || ' '}</div>`).join('');
  const nodes = Array.from(tpl.content.children) as HTMLElement[];
  logEl.append(tpl.content);
  for (const n of nodes) applyTrueColours(n);
}

function flush(): void {
  const t0 = performance.now();
  W.st.n!++;
  try { flush2(); } finally { W.st.flush! += performance.now() - t0; }
}
function flush2(): void {
  frame = 0;
  if (!queued.length) return;
  const { added } = buffer.push(queued);
  queued = [];
  const visible = added.filter((l) => matches(l.text, query)).slice(-DOM_MAX);
  if (visible.length) {
    const follow = followEl.checked;
    // Drop from the top first and keep the viewport still when not following.
    const excess = logEl.childElementCount + visible.length - DOM_MAX;
    if (excess > 0) {
      const before = logEl.scrollHeight;
      for (let i = 0; i < excess && logEl.firstElementChild; i++) logEl.firstElementChild.remove();
      if (!follow) logEl.scrollTop -= before - logEl.scrollHeight;
    }
    const ta = performance.now();
    appendLines(visible);
    W.st.append! += performance.now() - ta;
    // The notice above the log may appear now and shrink it: settle the chrome before scrolling.
    updateChrome();
    if (follow) logEl.scrollTop = logEl.scrollHeight;
    highlightAll();
  } else {
    updateChrome();
  }
}

function rerender(): void {
  const visible = buffer.all.filter((l) => matches(l.text, query)).slice(-DOM_MAX);
  logEl.replaceChildren();
  appendLines(visible);
  if (followEl.checked) logEl.scrollTop = logEl.scrollHeight;
  highlightAll();
  updateChrome();
}

function updateChrome(): void {
  const shown = logEl.childElementCount;
  if (query) {
    const n = buffer.all.reduce((c, l) => c + (matches(l.text, query) ? 1 : 0), 0);
    countEl.textContent = `${n} of ${buffer.size} lines`;
  } else {
    countEl.textContent = buffer.size ? `${buffer.size} lines` : '';
  }
  const older = tailTruncated || buffer.total > buffer.size || shown >= DOM_MAX;
  if (pending === null && buffer.size === 0) {
    noticeEl.hidden = false;
    noticeEl.textContent = emptyText();
  } else if (older) {
    noticeEl.hidden = false;
    noticeEl.textContent = `Showing the last ${Math.min(shown, DOM_MAX)} lines. Open in Console for the whole file.`;
  } else {
    noticeEl.hidden = true;
  }
  consoleBtn.disabled = logPath === null;
}

let current: VmSnapshot | undefined;

/** What an empty log means, and how to get lines into it. */
function emptyText(): string {
  const up = current?.state === 'starting' || current?.state === 'running';
  if (kind === 'build') {
    if (current?.build.status === 'building') return 'Waiting for the build to write its first line…';
    return logPath || current?.build.logPath ? 'The last build wrote nothing.' : `${vm} has not been built yet: its build log appears here while it builds.`;
  }
  return up ? 'Waiting for console output…' : `${vm} has no console output yet: start it to see it boot here.`;
}

// ---------- search highlight (CSS Custom Highlight API, where available) ----------

const highlights = (globalThis as { CSS?: { highlights?: Map<string, unknown> } }).CSS?.highlights;
const HighlightCtor = (globalThis as { Highlight?: new (...r: Range[]) => unknown }).Highlight;

function rangesIn(root: Node): Range[] {
  if (!query) return [];
  const out: Range[] = [];
  const needle = query.toLowerCase();
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = (n.nodeValue ?? '').toLowerCase();
    for (let i = text.indexOf(needle); i >= 0; i = text.indexOf(needle, i + needle.length)) {
      const r = document.createRange();
      r.setStart(n, i);
      r.setEnd(n, i + needle.length);
      out.push(r);
    }
  }
  return out;
}

/** Ranges must point into the live document, so they are (re)computed after each insertion. */
function highlightAll(): void {
  if (!highlights || !HighlightCtor) return;
  if (!query) {
    highlights.delete('search');
    return;
  }
  highlights.set('search', new HighlightCtor(...rangesIn(logEl)));
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
  logEl.replaceChildren();
  logPath = null;
  tailTruncated = false;
  updateChrome();
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

for (const t of tabs) t.addEventListener('click', () => void load(t.dataset.kind === 'build' ? 'build' : 'console'));
searchEl.addEventListener('input', () => {
  query = searchEl.value;
  rerender();
});
searchEl.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape') {
    searchEl.value = '';
    query = '';
    rerender();
  }
});
followEl.addEventListener('change', () => {
  if (followEl.checked) logEl.scrollTop = logEl.scrollHeight;
});
// Scrolling up pauses following (like a terminal); scrolling back to the end resumes it. Our own
// scrolling only ever goes to the end, so any scroll that leaves the end is the user's.
logEl.addEventListener('scroll', () => {
  const bottom = atBottom();
  if (followEl.checked !== bottom) followEl.checked = bottom;
}, { passive: true });
// A resized log area (window resized, notice shown) stays pinned to the end while following.
new ResizeObserver(() => {
  if (followEl.checked) logEl.scrollTop = logEl.scrollHeight;
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
bridge.call('snapshot', {}).then((s) => showVm(s.vms.find((v) => v.name === vm)), () => {});
void load(kind);
