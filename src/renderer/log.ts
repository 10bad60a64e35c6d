/**
 * The log window: live tail of a VM's console or its last build, ANSI colours, filter, follow.
 * It reads only the end of the file (the agent's `logs` method), then appends `log` events.
 *
 * Smooth under a fast writer: lines are kept in memory (up to MEMORY_MAX, oldest dropped) and
 * the list is virtualised — every line is one fixed-height row, and only the rows in view (plus
 * a margin) exist in the DOM. New lines are batched to one update per frame, so the cost of a
 * frame does not grow with how many lines arrived or how many are kept.
 *
 * Wrapping keeps it virtual: lines are monospace and break at any character, so how many rows
 * a line takes follows from its width in cells; a prefix sum of those rows places every line.
 * The run-start lines the agent writes in a console log are drawn as separators, and the time
 * the agent stamped on each build log line as a gutter (src/api/log-lines.ts).
 *
 * With `?flake=<dir>` it shows a flake's whole evaluation error instead (the dropdown's error
 * card shows its first lines): from the snapshots, following them, with the same filter and wrap.
 */
import type { AgentEvent, AgentSnapshot, LogKind, VmSnapshot } from '../api/types.ts';
import { vmActions } from '../api/actions.ts';
import { folderName, vmStatusLine } from '../api/describe.ts';
import { runStartOf, unstamp } from '../api/log-lines.ts';
import { bridge, errorMessage } from './bridge.ts';
import { AnsiRenderer, applyTrueColours, stripAnsi } from './ansi.ts';
import { LineBuffer, matches, newAfterTail, type LogLine } from './log-buffer.ts';
import { runStartText } from './console-history.ts';
import { openConsoleView, type ConsoleView } from './terminal.ts';
import { applyWindowFlags } from './window-flags.ts';

const TAIL_LINES = 5000;
const MEMORY_MAX = 20_000;
/** Row height in px; styles/log.css sets the same on .line. */
const LH = 16;
const PAD_TOP = 6;
const OVERSCAN = 20;
/** Horizontal padding of a row (styles/log.css: .line padding 0 12px). */
const PAD_X = 24;
/** Cells of the build log's time gutter ("13:40:01" and a space); styles/log.css uses 9ch. */
const GUTTER = 9;
const WRAP_KEY = 'nixvm.log.wrap';
const PASS_SIZE_KEY = 'nixvm.terminal.passSize';

/** One line as the window keeps it: its HTML, its width in cells, and what it marks. */
interface Row {
  html: string;
  cells: number;
  /** A run-start separator: when the run started. */
  run?: number;
  /** A build log line: when the agent received it. */
  at?: number;
}

const q = applyWindowFlags();
const vm = q.get('vm') ?? '';
/** Flake mode: the flake whose evaluation error is shown, or null (a VM's logs). */
const flakeDir = q.get('flake');
let kind: LogKind = q.get('kind') === 'build' ? 'build' : 'console';

const logEl = document.getElementById('log')!;
const searchEl = document.getElementById('search') as HTMLInputElement;
const followEl = document.getElementById('follow') as HTMLInputElement;
const wrapEl = document.getElementById('wrap') as HTMLInputElement;
const emptyEl = document.getElementById('empty')!;
const emptyText = document.getElementById('empty-text')!;
const emptyBtn = document.getElementById('empty-action') as HTMLButtonElement;
const emptyError = document.getElementById('empty-error')!;
const countEl = document.getElementById('count')!;
const noticeEl = document.getElementById('notice')!;
/** The Terminal tab owns the notice while it is shown (the log's own notices wait). */
let terminalShown = false;
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

let buffer = new LineBuffer<Row>(MEMORY_MAX);
let ansi = new AnsiRenderer();
let query = '';
/** The lines the filter lets through (all of them without a filter), oldest first. */
let view: readonly LogLine<Row>[] = buffer.all;
let filtered: LogLine<Row>[] = [];
let wrap = localStorage.getItem(WRAP_KEY) === '1';
/** While wrapping: starts[i] is the first row of view[i], starts[view.length] the row count. */
let starts = new Int32Array(1);
/** Cells per row while wrapping. */
let cols = 80;
let generation = 0;
/** Live lines that arrived while the initial tail was being read. */
let pending: string[] | null = null;
/** Lines waiting for the next frame. */
let queued: { text: string; data: Row }[] = [];
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

/** East Asian wide characters and emoji take two cells in a monospace font. */
const WIDE =
  /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1faff}\u{20000}-\u{3fffd}]/u;

/** How many cells `text` takes: tabs to the next multiple of 8, wide characters two. */
function cellsOf(text: string): number {
  let n = 0;
  for (const ch of text) {
    if (ch === '\t') n += 8 - (n % 8);
    else n += WIDE.test(ch) ? 2 : 1;
  }
  return n;
}

const timeFmt = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});

function ingest(lines: string[]): void {
  for (const raw of lines) {
    const line = normalise(raw);
    const run = kind === 'console' ? runStartOf(line) : null;
    if (run !== null) {
      const text = runStartText(run);
      queued.push({ text, data: { html: text, cells: text.length, run } });
      continue;
    }
    const stamped = kind === 'build' ? unstamp(line) : null;
    const body = stamped ? stamped.text : line;
    const text = stripAnsi(body);
    const cells = cellsOf(text) + (kind === 'build' ? GUTTER : 0);
    if (cells > maxChars) maxChars = Math.min(cells, 4000);
    queued.push({ text, data: { html: ansi.toHtml(body), cells, ...(stamped ? { at: stamped.at } : {}) } });
  }
  if (!frame) frame = requestAnimationFrame(flush);
}

/** A row's HTML: a separator, a stamped build line (the stamp in its gutter), or a plain line. */
function rowHtml(r: Row): string {
  if (r.run !== undefined)
    return `<div class="line run" data-run="${new Date(r.run).toISOString()}"><span>${r.html}</span></div>`;
  if (kind === 'build') {
    const ts =
      r.at === undefined
        ? '<span class="ts"></span>'
        : `<span class="ts" title="${new Date(r.at).toISOString()}">${timeFmt.format(r.at)}</span>`;
    return `<div class="line stamped">${ts}${r.html}</div>`;
  }
  return `<div class="line">${r.html || ' '}</div>`;
}

/** Rows a line takes while wrapping (a separator always one: it never wraps). */
function rowsOf(r: Row): number {
  if (r.run !== undefined) return 1;
  const gutter = kind === 'build' ? GUTTER : 0;
  return Math.max(1, Math.ceil((r.cells - gutter) / Math.max(1, cols - gutter)));
}

/** The first row of view[i] (i may be view.length: the row count). */
function rowStart(i: number): number {
  return wrap ? starts[i]! : i;
}

/** Index of the line that holds row `row`. */
function indexAtRow(row: number): number {
  if (!wrap) return Math.min(Math.max(0, Math.floor(row)), Math.max(0, view.length - 1));
  let lo = 0;
  let hi = view.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= row) lo = mid;
    else hi = mid - 1;
  }
  return Math.max(0, lo);
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
  if (wrap) {
    cols = Math.max(8, Math.floor((logEl.clientWidth - PAD_X) / charWidth));
    if (starts.length < view.length + 1) starts = new Int32Array(Math.max(view.length + 1, starts.length * 2));
    let row = 0;
    for (let i = 0; i < view.length; i++) {
      starts[i] = row;
      row += rowsOf(view[i]!.data);
    }
    starts[view.length] = row;
  }
  sizer.style.height = `${rowStart(view.length) * LH + PAD_TOP * 2}px`;
  sizer.style.width = wrap ? '' : `${Math.ceil(maxChars * charWidth) + PAD_X}px`;
}

/** Puts the rows in view (plus a margin) in the DOM; does nothing when they are already there. */
function render(force = false): void {
  // scrollTop can still hold the old, longer view's offset (a filter just shrank it) until the
  // browser clamps it on the next scroll event: clamp here, or this frame shows no rows at all.
  const maxScroll = Math.max(0, rowStart(view.length) * LH + PAD_TOP * 2 - logEl.clientHeight);
  const top = Math.max(0, Math.min(logEl.scrollTop, maxScroll) - PAD_TOP);
  const from = Math.max(0, indexAtRow(top / LH) - OVERSCAN);
  const to = Math.min(view.length, indexAtRow((top + logEl.clientHeight) / LH) + 1 + OVERSCAN);
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
  rows.style.transform = `translateY(${PAD_TOP + rowStart(from) * LH}px)`;
  let html = '';
  for (let i = from; i < to; i++) html += rowHtml(view[i]!.data);
  rows.innerHTML = html;
  applyTrueColours(rows);
  highlight();
}

function flush(): void {
  frame = 0;
  if (!queued.length) return;
  const follow = followEl.checked;
  const { anchor, offset } = topLine();
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
  else if (anchor) scrollLogTo(PAD_TOP + rowStart(indexOfId(anchor.id)) * LH + offset);
  render(true);
}

/** The line at the top of the viewport and how far into it the view is, to keep it there. */
function topLine(): { anchor: LogLine<Row> | undefined; offset: number } {
  const y = Math.max(0, logEl.scrollTop - PAD_TOP);
  const i = indexAtRow(y / LH);
  return { anchor: view[i], offset: Math.max(0, y - rowStart(i) * LH) };
}

function setWrap(on: boolean): void {
  const { anchor } = topLine();
  wrap = on;
  wrapEl.checked = on;
  logEl.classList.toggle('wrap', on);
  layoutSizer();
  if (followEl.checked) scrollLogTo(logEl.scrollHeight);
  else if (anchor) scrollLogTo(PAD_TOP + rowStart(indexOfId(anchor.id)) * LH);
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
  if (tailTruncated || buffer.total > buffer.size)
    notice = `Showing the last ${buffer.size} lines. Open in Console for the whole file.`;
  // Hiding the terminal's notice would also resize the terminal, and tell the guest a wrong size.
  if (!loadError && !terminalShown) {
    noticeEl.hidden = notice === null;
    if (notice !== null && noticeEl.textContent !== notice) noticeEl.textContent = notice;
  }
  const empty = pending === null && buffer.size === 0 && !loadError ? emptyState() : null;
  showEmpty(empty);
  // Nothing to open while the VM never ran (or was never built): the file does not exist yet.
  consoleBtn.disabled = logPath === null || empty?.action != null;
}

let current: VmSnapshot | undefined;
let agentInfo: AgentSnapshot['agent'] | null = null;
/** The tail could not be read: the notice says why, in place of the empty state. */
let loadError = false;
/** Why the empty state's action failed, shown under it until the next load. */
let actionError = '';

interface EmptyState {
  text: string;
  /** The button that gets lines into the log: Start for a console, Build for a build log. */
  action: { label: string; method: 'start' | 'build'; enabled: boolean; reason: string | null } | null;
}

/** What an empty log means, and how to get lines into it (enabled as the VM's actions say). */
function emptyState(): EmptyState {
  if (flakeDir !== null) return { text: 'No evaluation error to show.', action: null };
  const up = current?.state === 'starting' || current?.state === 'running';
  const acts = current && agentInfo ? vmActions(current, agentInfo) : null;
  const action = (id: 'start' | 'build', label: string, method: 'start' | 'build'): EmptyState['action'] => {
    const a = acts && [...(acts.primary ? [acts.primary] : []), ...acts.quick, ...acts.more].find((x) => x.id === id);
    return a ? { label, method, enabled: a.enabled, reason: a.reason } : null;
  };
  if (kind === 'build') {
    if (current?.build.status === 'building')
      return { text: 'Waiting for the build to write its first line…', action: null };
    // The snapshot's logPath is set only once a build log exists (the `logs` reply names the file regardless).
    if (current?.build.logPath) return { text: 'The last build wrote nothing.', action: null };
    return {
      text: `${vm} has no build yet: its log appears here while it builds.`,
      action: action('build', 'Build', 'build'),
    };
  }
  if (up) return { text: 'Waiting for console output…', action: null };
  return {
    text: `${vm} has not run yet: its console appears here from its first boot.`,
    action: action('start', 'Start', 'start'),
  };
}

function showEmpty(st: EmptyState | null): void {
  emptyEl.hidden = st === null;
  logEl.classList.toggle('is-empty', st !== null);
  if (!st) return;
  if (emptyText.textContent !== st.text) emptyText.textContent = st.text;
  emptyBtn.hidden = st.action === null;
  if (st.action) {
    emptyBtn.textContent = st.action.label;
    emptyBtn.dataset.method = st.action.method;
    emptyBtn.disabled = !st.action.enabled || emptyBtn.classList.contains('busy');
    emptyBtn.title = st.action.reason ?? '';
  }
  if (emptyError.textContent !== actionError) emptyError.textContent = actionError;
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

/** Empty the window for other lines (another log, or a flake's new error). */
function clearLines(): void {
  buffer = new LineBuffer<Row>(MEMORY_MAX);
  ansi = new AnsiRenderer();
  queued = [];
  maxChars = 0;
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
  clearLines();
  loadError = false;
  actionError = '';
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
    loadError = true;
    showEmpty(null);
    noticeEl.hidden = false;
    noticeEl.textContent = errorMessage(e);
  }
}

function showVm(v: VmSnapshot | undefined): void {
  if (flakeDir !== null) return;
  current = v;
  // "web — Running", "builder — Building 42%": what the Build tab is showing, too.
  vmNameEl.textContent = v ? `${v.name} — ${vmStatusLine(v)}` : vm;
  titleEl.dataset.state = v ? v.state : 'stopped';
  if (v?.build.status === 'building') titleEl.dataset.state = 'building';
  if (!logPath && v) {
    const known = kind === 'build' ? v.build.logPath : v.consoleLog;
    if (known && pending === null) logPath = known;
  }
  if (pending === null) updateChrome();
}

/** What flake mode last showed: whether the flake is known, and its error (null: nothing shown yet). */
let flakeShown: string | null = null;

/** Flake mode: show the flake's whole error, again only when it changed. */
function showFlake(s: AgentSnapshot): void {
  const f = s.flakes.find((x) => x.dir === flakeDir);
  const text = f?.error ?? null;
  const shown = JSON.stringify([f !== undefined, text]);
  if (shown === flakeShown) return;
  flakeShown = shown;
  clearLines();
  pending = null;
  applyFilter();
  if (text) ingest(text.split('\n'));
  noticeEl.hidden = text !== null;
  if (text === null)
    noticeEl.textContent = f
      ? `${folderName(flakeDir!)} evaluates now: there is no error to show.`
      : `${flakeDir} is not one of the flakes NixVM runs.`;
  updateChrome();
}

bridge.onEvent((ev) => {
  if (ev.type === 'snapshot' && flakeDir !== null) showFlake(ev.snapshot);
  else if (ev.type === 'snapshot') {
    agentInfo = ev.snapshot.agent;
    showVm(ev.snapshot.vms.find((v) => v.name === vm));
  }
});

// The Terminal tab: the console in xterm.js, typed into (the log's tabs read the file instead).
const termEl = document.getElementById('term')!;
const termTab = document.querySelector<HTMLButtonElement>('.seg [data-mode="terminal"]')!;
const logOnly = [searchEl, countEl, followEl.parentElement!, wrapEl.parentElement!, consoleBtn];
const passSizeEl = document.getElementById('pass-size') as HTMLInputElement;
passSizeEl.checked = localStorage.getItem(PASS_SIZE_KEY) === '1';
passSizeEl.addEventListener('change', () => {
  localStorage.setItem(PASS_SIZE_KEY, passSizeEl.checked ? '1' : '0');
  termView?.passSize(passSizeEl.checked);
});
let termView: ConsoleView | null = null;

function showTerminal(on: boolean): void {
  terminalShown = on;
  termEl.hidden = !on;
  logEl.hidden = on;
  if (on) emptyEl.hidden = true;
  for (const el of logOnly) el.hidden = on;
  passSizeEl.parentElement!.hidden = !on;
  termTab.setAttribute('aria-selected', String(on));
  if (on) for (const t of tabs) t.setAttribute('aria-selected', 'false');
  noticeEl.classList.toggle('for-term', on);
  if (!on) {
    termView?.close();
    termView = null;
    termEl.replaceChildren();
    noticeEl.hidden = true;
    return;
  }
  // Shown from the start, so the terminal's size does not change when the first news comes.
  noticeEl.hidden = false;
  noticeEl.dataset.level = 'info';
  noticeEl.textContent = `Attaching to the console of ${JSON.stringify(vm)}…`;
  document.title = `${vm} — Terminal`;
  void openConsoleView(
    termEl,
    vm,
    (text, level) => {
      noticeEl.hidden = false;
      noticeEl.textContent = text;
      noticeEl.dataset.level = level;
    },
    { passSize: passSizeEl.checked },
  ).then((v) => {
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
wrapEl.addEventListener('change', () => {
  localStorage.setItem(WRAP_KEY, wrapEl.checked ? '1' : '0');
  setWrap(wrapEl.checked);
});
// The empty state's button runs the VM's own action (Start, Build); its lines then stream in.
emptyBtn.addEventListener('click', () => {
  const method = emptyBtn.dataset.method === 'build' ? 'build' : 'start';
  emptyBtn.classList.add('busy');
  emptyBtn.disabled = true;
  bridge
    .call(method, { vm })
    .catch((e) => {
      actionError = errorMessage(e);
    })
    .finally(() => {
      emptyBtn.classList.remove('busy');
      updateChrome();
    });
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
// While wrapping, a new width wraps every line anew.
let observedWidth = -1;
new ResizeObserver(() => {
  if (wrap && logEl.clientWidth !== observedWidth) {
    observedWidth = logEl.clientWidth;
    layoutSizer();
  }
  if (followEl.checked) scrollLogTo(logEl.scrollHeight);
  render(wrap);
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

wrapEl.checked = wrap;
logEl.classList.toggle('wrap', wrap);
if (flakeDir !== null) {
  // No tabs, no file to open in Console: the error lives in the agent's snapshot.
  for (const el of [document.querySelector<HTMLElement>('.seg'), consoleBtn, followEl.parentElement]) el!.hidden = true;
  vmNameEl.textContent = `${folderName(flakeDir)} failed to evaluate`;
  vmNameEl.title = flakeDir;
  titleEl.dataset.state = 'crashed';
  document.title = `${folderName(flakeDir)} — Evaluation Error`;
  bridge.call('snapshot', {}).then(showFlake, (e) => {
    noticeEl.hidden = false;
    noticeEl.textContent = errorMessage(e);
  });
} else {
  vmNameEl.textContent = vm;
  bridge.call('snapshot', {}).then(
    (s) => {
      agentInfo = s.agent;
      showVm(s.vms.find((v) => v.name === vm));
    },
    () => {},
  );
  void load(kind);
}
