/**
 * The menubar dropdown: one row per VM with its state, progress and actions; flake and agent
 * errors in place; a helpful empty state. Everything shown comes from the agent's snapshot;
 * every button is a bridge call. Rows are keyed and patched in place (never rebuilt) so a click
 * is not lost when a build pushes ten snapshots a second.
 */
import { firstRunChecklist, type ChecklistAction, type ChecklistItem } from '../api/checklist.ts';
import type { AgentEvent, AgentSnapshot, DoctorReport, FlakeSnapshot, VmSnapshot } from '../api/types.ts';
import {
  compactCodeFrames,
  folderName,
  HIDDEN_WHY,
  hiddenCount,
  isBuilding,
  isUp,
  quotedNames,
} from '../api/describe.ts';
import { bridge, errorMessage } from './bridge.ts';
import { h, tildify } from './dom.ts';
import { act, button, setText, show, toast, toastEl } from './feedback.ts';
import { VmRow } from './vm-row.ts';
import { applyWindowFlags } from './window-flags.ts';

applyWindowFlags();

const content = document.getElementById('content')!;
const head = document.querySelector<HTMLElement>('header.head')!;
const summaryEl = document.getElementById('summary')!;
const footer = document.getElementById('footer')!;
const headButtons = document.getElementById('head-buttons')!;

let snap: AgentSnapshot | null = null;

// ---------- sections ----------

const problemsEl = h('div', { class: 'problems' });
const flakeErrorsEl = h('div', { class: 'flake-errors' });
const emptyEl = h('div', { class: 'empty' });
const list = h('ul', { class: 'vms', 'aria-label': 'Virtual machines' });
/** More VMs than fit at a glance: compact rows and a filter by name. */
const MANY_VMS = 8;
const filterInput = h('input', {
  class: 'filter',
  type: 'search',
  placeholder: 'Filter by name',
  'aria-label': 'Filter virtual machines by name',
  autocomplete: 'off',
  spellcheck: 'false',
});
const filterBox = h('div', { class: 'filter-box', hidden: true }, filterInput);
const noMatch = h('div', { class: 'no-match', role: 'status', hidden: true });
filterInput.addEventListener('input', () => snap && render(snap));
filterInput.addEventListener('keydown', (ev) => {
  // Escape clears the filter first (as a Finder search field does).
  if (ev.key === 'Escape' && filterInput.value) {
    ev.stopPropagation();
    filterInput.value = '';
    if (snap) render(snap);
  }
});
const checklistEl = h('section', { class: 'checklist', 'aria-label': 'Get started', hidden: true });
const inner = h(
  'div',
  { class: 'content-inner' },
  checklistEl,
  problemsEl,
  flakeErrorsEl,
  emptyEl,
  filterBox,
  list,
  noMatch,
);
content.append(inner);

// The window fits its content: ask the app for the height the rows need.
let lastFit = 0;
let fitFrame = 0;
function requestFit(): void {
  if (fitFrame) return;
  fitFrame = requestAnimationFrame(() => {
    fitFrame = 0;
    const pad = parseFloat(getComputedStyle(content).paddingTop) + parseFloat(getComputedStyle(content).paddingBottom);
    const toastH = toastEl.hidden ? 0 : toastEl.getBoundingClientRect().height + 6;
    const want = Math.ceil(
      head.getBoundingClientRect().height +
        inner.getBoundingClientRect().height +
        pad +
        toastH +
        footer.getBoundingClientRect().height,
    );
    if (Math.abs(want - lastFit) < 2) return;
    lastFit = want;
    bridge.ui('fitHeight', { height: want }).catch(() => {});
  });
}
new ResizeObserver(requestFit).observe(inner);
new ResizeObserver(requestFit).observe(toastEl);

const rows = new Map<string, VmRow>();
const groupHeads = new Map<string, HTMLLIElement>();
let initialExpand: boolean | null = null;
const memo = new WeakMap<HTMLElement, string>();

/** Rebuilds a small section only when what it shows changed (keeps its buttons clickable). */
function renderIfChanged(el: HTMLElement, key: string, build: () => (Node | string)[]): void {
  if (memo.get(el) === key) return;
  memo.set(el, key);
  el.replaceChildren(...build());
}

/**
 * A flake's header in the list: Finder's name for its folder (the path on hover), then, quieter,
 * how many of its configurations are hidden ("3 other configurations hidden", the words `nixvm ls`
 * uses), the names and why on hover. Kept per folder and patched in place.
 */
function groupHead(dir: string, f: FlakeSnapshot | undefined, vms: number): HTMLLIElement {
  let head = groupHeads.get(dir);
  if (!head) {
    head = h(
      'li',
      { class: 'group', 'data-flake': dir, title: dir },
      h('span', { class: 'group-name' }, folderName(dir)),
      h('span', { class: 'group-hidden', hidden: true }),
    );
    groupHeads.set(dir, head);
  }
  const note = head.querySelector<HTMLElement>('.group-hidden')!;
  const count = f ? hiddenCount(f.hidden.length, vms) : null;
  show(note, count !== null);
  if (f && count) {
    setText(note, count);
    const tip = `${quotedNames(f.hidden, 8)}: ${HIDDEN_WHY}. Settings chooses which configurations are VMs.`;
    if (note.title !== tip) note.title = tip;
  }
  return head;
}

/** A flake whose hidden configurations are worth a line: it evaluated, and nothing else is said about it. */
function hasHidden(f: FlakeSnapshot): boolean {
  return f.hidden.length > 0 && !f.error && f.state === 'ok';
}

function flakeErrorCard(f: FlakeSnapshot): HTMLElement {
  const [headline, ...rest] = (f.error ?? '').split('\n');
  const detailText = compactCodeFrames(rest.join('\n').trim());
  // nix's code frame wraps at the card's edge (the caret line may drift; the words stay whole and
  // in view); the card shows its first lines, "Show Full Error" all of it in the log window.
  const detail = detailText ? h('pre', { class: 'card-detail mono clamped' }, detailText) : null;
  const full = detail
    ? button(
        'Show Full Error',
        'showFullError',
        {},
        (btn) => void act(btn, () => bridge.ui('openFlakeError', { dir: f.dir })),
      )
    : null;
  return h(
    'section',
    { class: 'card error', 'data-flake': f.dir },
    h('div', { class: 'card-title', title: f.dir }, `${folderName(f.dir)} failed to evaluate`),
    h('div', { class: 'card-text' }, headline ?? ''),
    detail,
    h(
      'div',
      { class: 'card-buttons' },
      button(
        'Re-evaluate',
        'reevaluate',
        { icon: 'refresh' },
        (btn) => void act(btn, () => bridge.call('reevaluate', {})),
      ),
      button(
        'Open Folder',
        'openFlakeFolder',
        { icon: 'folder' },
        (btn) => void act(btn, () => bridge.ui('openFlakeFolder', { dir: f.dir })),
      ),
      full,
    ),
  );
}

/**
 * Running VMs first, then by name, within each flake. The order is taken when the dropdown opens
 * (and when VMs come or go), not at every state change: a row must not jump away from under the
 * pointer right after its Start was clicked.
 */
let upFirst = new Map<string, boolean>();
let resort = true;
function orderVms(vms: readonly VmSnapshot[], flakes: readonly FlakeSnapshot[]): VmSnapshot[] {
  if (resort || vms.some((v) => !upFirst.has(v.name)) || upFirst.size !== vms.length) {
    upFirst = new Map(vms.map((v) => [v.name, isUp(v) || v.state === 'stopping']));
    resort = false;
  }
  // Flakes in the settings' order; a VM no flake defines any more (flake '') last.
  const flakeOrder = new Map<string, number>(flakes.map((f, i) => [f.dir, i]));
  for (const v of vms) if (!flakeOrder.has(v.flake)) flakeOrder.set(v.flake, flakeOrder.size + 1000);
  return [...vms].sort(
    (a, b) =>
      flakeOrder.get(a.flake)! - flakeOrder.get(b.flake)! ||
      Number(upFirst.get(b.name)) - Number(upFirst.get(a.name)) ||
      a.name.localeCompare(b.name),
  );
}

function render(s: AgentSnapshot): void {
  snap = s;
  const up = s.vms.filter(isUp).length;
  const building = s.vms.filter(isBuilding).length;
  const evaluating = s.flakes.some((f) => f.evaluating);
  const parts = [
    up ? `${up} running` : s.vms.length ? 'none running' : '',
    building ? `${building} building` : '',
    evaluating ? 'evaluating…' : '',
  ].filter(Boolean);
  setText(summaryEl, parts.join(' · '));

  renderIfChanged(problemsEl, JSON.stringify(s.agent.problems), () =>
    s.agent.problems.map((p) => h('section', { class: 'card warning' }, h('div', { class: 'card-text' }, p))),
  );

  const errored = s.flakes.filter((f) => f.error);
  renderIfChanged(flakeErrorsEl, JSON.stringify(errored.map((f) => [f.dir, f.error])), () =>
    errored.map(flakeErrorCard),
  );

  // Empty states.
  // The flakes the agent runs: settings' plus any a headless `nixvm daemon --flake DIR` was given.
  const flakeDirs = s.flakes.map((f) => f.dir);
  const hiddenTotal = s.flakes.filter(hasHidden).reduce((n, f) => n + f.hidden.length, 0);
  let emptyKey = '';
  if (flakeDirs.length === 0) emptyKey = 'no-flake';
  else if (s.vms.length === 0 && !errored.length)
    emptyKey = evaluating ? 'evaluating' : `no-vms:${flakeDirs.join(',')}:${hiddenTotal}`;
  renderIfChanged(emptyEl, emptyKey, () => {
    if (emptyKey === 'no-flake') {
      return [
        h('div', { class: 'empty-title' }, 'No flake configured'),
        h(
          'p',
          { class: 'empty-text' },
          'NixVM runs the NixOS machines a flake defines in nixosConfigurations. Choose the folder that holds your flake.nix.',
        ),
        button(
          'Choose Folder…',
          'chooseFlakeFolder',
          { primary: true, icon: 'folder' },
          (btn) =>
            void act(
              btn,
              () => bridge.ui('chooseFlakeFolder', {}),
              (r) => {
                const dir = (r as { dir: string | null }).dir;
                return dir ? `Added ${tildify(dir)}` : undefined;
              },
            ),
        ),
      ];
    }
    if (emptyKey === 'evaluating') return [h('div', { class: 'empty-text' }, 'Evaluating the flake…')];
    if (emptyKey.startsWith('no-vms')) {
      const defines = `${flakeDirs.map(tildify).join(', ')} define${flakeDirs.length === 1 ? 's' : ''}`;
      const hidden = hiddenCount(hiddenTotal, 0);
      return [
        h('div', { class: 'empty-title' }, 'No virtual machines'),
        h(
          'p',
          { class: 'empty-text' },
          hidden
            ? `${defines} no VMs: ${hidden} (${HIDDEN_WHY}). Settings chooses which configurations are VMs.`
            : `${defines} no nixosConfigurations. Add one to the flake and NixVM picks it up.`,
        ),
        h(
          'div',
          { class: 'empty-buttons' },
          hidden
            ? button(
                'Settings…',
                'openSettings',
                { icon: 'gear' },
                (btn) => void act(btn, () => bridge.ui('openSettings', {})),
              )
            : null,
          button(
            'Open Flake Folder',
            'openFlakeFolder',
            { icon: 'folder' },
            (btn) => void act(btn, () => bridge.ui('openFlakeFolder', {})),
          ),
        ),
      ];
    }
    return [];
  });
  // The checklist's flake item says the same with more: no second "No flake configured".
  show(emptyEl, emptyKey !== '' && !(emptyKey === 'no-flake' && checklistCoversFlake));

  // The VM list, keyed by name; grouped by flake when there are several.
  if (initialExpand === null && s.vms.length) initialExpand = s.vms.length <= 2;
  const many = s.vms.length > MANY_VMS;
  // The body's class is the one record of compact rows (vm-row.ts reads it); toggle with force
  // changes nothing when it already stands so.
  document.body.classList.toggle('compact', many);
  show(filterBox, many);
  const needle = many ? filterInput.value.trim().toLowerCase() : '';
  // Grouped by flake when there are several, or when a flake has configurations to count as hidden.
  const flakeOf = new Map(s.flakes.map((f) => [f.dir, f]));
  const vmsIn = (dir: string) => s.vms.filter((v) => v.flake === dir).length;
  const grouped = new Set(s.vms.map((v) => v.flake)).size > 1 || s.flakes.some(hasHidden);
  const wanted: HTMLElement[] = [];
  const seen = new Set<string>();
  let lastFlake: string | null = null;
  let shown = 0;
  for (const vm of orderVms(s.vms, s.flakes)) {
    let row = rows.get(vm.name);
    if (row) row.update(vm, s.agent);
    else {
      row = new VmRow(vm, s.agent, initialExpand ?? false);
      rows.set(vm.name, row);
    }
    seen.add(vm.name);
    if (needle && !vm.name.toLowerCase().includes(needle)) continue;
    shown++;
    if (grouped && vm.flake !== lastFlake) {
      lastFlake = vm.flake;
      wanted.push(groupHead(vm.flake, flakeOf.get(vm.flake), vmsIn(vm.flake)));
    }
    wanted.push(row.el);
  }
  // A flake none of whose configurations is a VM still says how many it has (not while filtering).
  if (grouped && shown > 0 && !needle) {
    for (const f of s.flakes) if (hasHidden(f) && vmsIn(f.dir) === 0) wanted.push(groupHead(f.dir, f, 0));
  }
  show(noMatch, needle !== '' && shown === 0);
  if (needle && shown === 0) setText(noMatch, `No VM matches “${filterInput.value.trim()}”.`);
  for (const [name, row] of rows)
    if (!seen.has(name)) {
      row.el.remove();
      rows.delete(name);
    }
  // Move nodes only when the order really changed (moving a node under the cursor eats clicks).
  const current = Array.from(list.children);
  if (current.length !== wanted.length || current.some((c, i) => c !== wanted[i])) list.replaceChildren(...wanted);

  // Footer.
  const stale = s.vms.filter((v) => v.stale && v.spec !== null).length;
  const rebuildBtn = footer.querySelector<HTMLButtonElement>('[data-action="rebuildStale"]');
  if (rebuildBtn) {
    rebuildBtn.disabled = stale === 0;
    setText(rebuildBtn.querySelector('span')!, stale ? `Rebuild Stale (${stale})` : 'Rebuild Stale');
  }
  const openBtn = footer.querySelector<HTMLButtonElement>('[data-action="openFlakeFolder"]');
  if (openBtn) openBtn.disabled = flakeDirs.length === 0;
  const quitBtn = footer.querySelector<HTMLButtonElement>('[data-action="quit"]');
  if (quitBtn) {
    quitBtn.title =
      up && s.settings.onQuit === 'stop'
        ? `Quit NixVM and stop ${up} VM${up === 1 ? '' : 's'}`
        : up
          ? 'Quit NixVM (VMs keep running)'
          : 'Quit NixVM';
  }
}

// ---------- the first-run checklist ----------
// Built on `nixvm doctor`'s checks (asked of the agent when the dropdown opens and when the
// flakes or tool paths change). Shown until everything passes once; after that a broken item
// brings back a badge in the header that opens it.

const CHECKLIST_DONE = 'nixvm.checklistDone';
let doctor: DoctorReport | null = null;
let doctorKey = '';
let doctorInFlight = false;
/** Something changed while the doctor was out: ask once more when it answers. */
let doctorAgain = false;
let checklistShown = false;
/** The checklist is up with its flake-folder item open. */
let checklistCoversFlake = false;
const badgeEl = h('button', { class: 'badge', type: 'button', 'data-action': 'showChecklist', hidden: true });
badgeEl.addEventListener('click', (ev) => {
  ev.stopPropagation();
  checklistShown = !checklistShown;
  renderChecklist();
});

function refreshDoctor(): void {
  if (doctorInFlight) {
    doctorAgain = true;
    return;
  }
  doctorInFlight = true;
  const done = (): void => {
    doctorInFlight = false;
    if (doctorAgain) {
      doctorAgain = false;
      refreshDoctor();
    }
  };
  bridge.call('doctor', {}).then((r) => {
    doctor = r;
    renderChecklist();
    done();
  }, done);
}

function checklistAction(a: ChecklistAction): HTMLButtonElement {
  if (a.kind === 'copy') {
    return button(
      a.label,
      `copySetupCommand:${a.command}`,
      { icon: 'copy' },
      (btn) =>
        void act(
          btn,
          () => bridge.ui('copySetupCommand', { command: a.command }),
          (r) => `Copied: ${(r as { text: string }).text}`,
        ),
    );
  }
  const verb = a.verb;
  return button(
    a.label,
    verb,
    {
      primary: verb === 'chooseFlakeFolder' || verb === 'setUpLinuxBuilder',
      icon: verb === 'openSettings' ? 'gear' : verb === 'setUpLinuxBuilder' ? 'play' : 'folder',
    },
    (btn) =>
      void act(
        btn,
        () => bridge.ui(verb, {}),
        (r) => {
          refreshDoctor();
          const dir = (r as { dir?: string | null } | null)?.dir;
          if (verb === 'setUpLinuxBuilder')
            return (r as { done: boolean }).done ? 'Setting up the Linux builder…' : 'Nothing was changed';
          return dir ? `Added ${tildify(dir)}` : undefined;
        },
      ),
  );
}

function checklistRow(i: ChecklistItem): HTMLElement {
  const mark = i.state === 'done' ? '✓' : i.state === 'open' ? '!' : i.state === 'note' ? '•' : '–';
  return h(
    'li',
    { class: `check ${i.state}`, 'data-check': i.id },
    h('span', { class: 'check-mark', 'aria-hidden': 'true' }, mark),
    h(
      'div',
      { class: 'check-body' },
      h('div', { class: 'check-title' }, i.title),
      h('div', { class: 'check-summary' }, i.summary),
      i.fix ? h('div', { class: 'check-fix' }, i.fix) : null,
      i.actions.length ? h('div', { class: 'check-actions' }, ...i.actions.map(checklistAction)) : null,
    ),
  );
}

function renderChecklist(): void {
  if (!snap) return;
  const c = firstRunChecklist(doctor, snap);
  if (doctor && c.open === 0) {
    localStorage.setItem(CHECKLIST_DONE, '1');
    checklistShown = false;
  }
  const doneOnce = localStorage.getItem(CHECKLIST_DONE) === '1';
  const full = c.open > 0 && (!doneOnce || checklistShown);
  show(badgeEl, doneOnce && c.open > 0);
  setText(badgeEl, `${c.open}`);
  badgeEl.title = `${c.open} thing${c.open === 1 ? '' : 's'} to set up: click to see`;
  badgeEl.setAttribute('aria-label', badgeEl.title);
  // Shown only with the doctor's answer in (no flash of "checking…" items at every open).
  show(checklistEl, full && doctor !== null);
  const covers = full && doctor !== null && c.items.some((i) => i.id === 'flake' && i.state === 'open');
  if (covers !== checklistCoversFlake) {
    checklistCoversFlake = covers;
    render(snap);
  }
  renderIfChanged(checklistEl, JSON.stringify([full, c.items]), () => [
    h('div', { class: 'checklist-title' }, 'Get Started'),
    h('ul', { class: 'checks' }, ...c.items.filter((i) => i.state !== 'na').map(checklistRow)),
  ]);
}

/** Ask the doctor again when what it checks may have changed: flakes, tool paths, the agent's problems. */
function maybeRefreshDoctor(s: AgentSnapshot): void {
  const systems = [
    ...new Set(s.vms.flatMap((v) => (v.spec ? [v.spec.buildSystem ?? v.spec.system ?? ''] : []))),
  ].sort();
  const key = JSON.stringify([
    s.flakes.length,
    systems,
    s.settings.vfkitPath,
    s.settings.nixPath,
    s.agent.problems.length,
    // The builder check follows the builders: a builder VM ready, one that stopped.
    s.agent.builders?.status ?? null,
    s.agent.builders?.machines.map((m) => [m.uri, m.answers]) ?? null,
  ]);
  if (key === doctorKey) return;
  doctorKey = key;
  refreshDoctor();
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') refreshDoctor();
});

// ---------- chrome ----------

headButtons.append(
  badgeEl,
  button(
    '',
    'reevaluate',
    { icon: 'refresh', title: 'Re-evaluate the flake' },
    (btn) => void act(btn, () => bridge.call('reevaluate', {})),
  ),
  button(
    '',
    'openSettings',
    { icon: 'gear', title: 'Settings…' },
    (btn) => void act(btn, () => bridge.ui('openSettings', {})),
  ),
);
footer.append(
  button(
    'Rebuild Stale',
    'rebuildStale',
    { icon: 'hammer', title: 'Rebuild every VM whose configuration changed' },
    (btn) =>
      void act(
        btn,
        () => bridge.call('rebuildStale', {}),
        (r) => {
          const n = (r as string[]).length;
          return n ? `Rebuilding ${(r as string[]).join(', ')}` : 'Nothing is stale';
        },
      ),
  ),
  button(
    'Flake Folder',
    'openFlakeFolder',
    { icon: 'folder', title: 'Open the flake folder in Finder' },
    (btn) => void act(btn, () => bridge.ui('openFlakeFolder', {})),
  ),
  h('span', { class: 'spacer' }),
  button('Quit', 'quit', { title: 'Quit NixVM' }, (btn) => void act(btn, () => bridge.ui('quit', {}))),
);

function onEvent(ev: AgentEvent): void {
  if (ev.type !== 'snapshot') return;
  render(ev.snapshot);
  maybeRefreshDoctor(ev.snapshot);
  renderChecklist();
}

// The window is hidden while the dropdown is closed (the menubar hides it, and the page's
// visibility follows): the agent samples the VMs' CPU and memory only while it is open.
let unsubscribe: (() => void) | null = null;
let uptimeTimer: ReturnType<typeof setInterval> | undefined;
function whileOpen(visible: boolean): void {
  // The new subscription first, so the agent never sees nobody asking in between.
  const off = unsubscribe;
  unsubscribe = bridge.onEvent(onEvent, { usage: visible });
  off?.();
  clearInterval(uptimeTimer);
  // Uptime ticks on its own between snapshots.
  if (visible)
    uptimeTimer = setInterval(() => {
      const now = Date.now();
      for (const row of rows.values()) row.refreshUsage(now);
    }, 1000);
  if (visible) {
    resort = true;
    if (snap) render(snap);
  }
}
document.addEventListener('visibilitychange', () => whileOpen(document.visibilityState === 'visible'));
whileOpen(document.visibilityState === 'visible');
bridge.call('snapshot', {}).then(
  (s) => {
    // An event may already have brought a newer snapshot.
    if (!snap) render(s);
    maybeRefreshDoctor(snap ?? s);
    renderChecklist();
  },
  (e) => toast(`Could not reach the NixVM agent: ${errorMessage(e)}`, 'error'),
);
