/**
 * The menubar dropdown: one row per VM with its state, progress and actions; flake and agent
 * errors in place; a helpful empty state. Everything shown comes from the agent's snapshot;
 * every button is a bridge call. Rows are keyed and patched in place (never rebuilt) so a click
 * is not lost when a build pushes ten snapshots a second.
 */
import { vmActions, type ActionContext, type VmAction, type VmActionId, type VmActions } from '../api/actions.ts';
import { firstRunChecklist, type ChecklistAction, type ChecklistItem } from '../api/checklist.ts';
import type { AgentEvent, AgentSnapshot, DiskImage, DoctorReport, FlakeSnapshot, VmSnapshot } from '../api/types.ts';
import {
  buildLabel,
  compactCodeFrames,
  drvName,
  exitText,
  folderName,
  formatBytes,
  formatElapsed,
  HIDDEN_WHY,
  hiddenCount,
  isBuilding,
  isUp,
  primaryAddress,
  quotedNames,
  resourcesLine,
  stateLabel,
} from '../api/describe.ts';
import { bridge, errorMessage } from './bridge.ts';
import { h, icon, tildify } from './dom.ts';
import { applyWindowFlags } from './window-flags.ts';

applyWindowFlags();

const content = document.getElementById('content')!;
const head = document.querySelector<HTMLElement>('header.head')!;
const summaryEl = document.getElementById('summary')!;
const toastEl = document.getElementById('toast')!;
const footer = document.getElementById('footer')!;
const headButtons = document.getElementById('head-buttons')!;

let snap: AgentSnapshot | null = null;

// ---------- feedback ----------

let toastTimer: ReturnType<typeof setTimeout> | undefined;
function toast(message: string, kind: 'info' | 'error' = 'info'): void {
  clearTimeout(toastTimer);
  toastEl.replaceChildren(
    h('span', { class: 'toast-text' }, message),
    h(
      'button',
      { class: 'toast-close', title: 'Dismiss', 'aria-label': 'Dismiss', onclick: () => (toastEl.hidden = true) },
      icon('xmark', 10),
    ),
  );
  toastEl.className = `toast ${kind}`;
  toastEl.hidden = false;
  // Errors stay until dismissed: they say what to do.
  if (kind === 'info') toastTimer = setTimeout(() => (toastEl.hidden = true), 2500);
}

/** Runs a bridge call from a button: busy while in flight, errors shown as one sentence. */
async function act(
  btn: HTMLButtonElement | null,
  fn: () => Promise<unknown>,
  done?: (r: unknown) => string | void,
): Promise<void> {
  if (btn) btn.classList.add('busy');
  try {
    const r = await fn();
    const msg = done?.(r);
    if (msg) toast(msg);
  } catch (e) {
    toast(errorMessage(e), 'error');
  } finally {
    if (btn) btn.classList.remove('busy');
  }
}

function button(
  label: string,
  action: string,
  opts: { primary?: boolean; icon?: string; title?: string } = {},
  onClick?: (btn: HTMLButtonElement) => void,
): HTMLButtonElement {
  const b = h(
    'button',
    { class: `btn${opts.primary ? ' primary' : ''}`, 'data-action': action, title: opts.title ?? null, type: 'button' },
    opts.icon ? icon(opts.icon) : null,
    h('span', {}, label),
  );
  if (onClick)
    b.addEventListener('click', (ev) => {
      ev.stopPropagation();
      onClick(b);
    });
  return b;
}

function show(el: HTMLElement, visible: boolean): void {
  if (el.hidden === visible) el.hidden = !visible;
}

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** "3.1 GiB of 20 GiB allocated" (sparse), "340 MiB, all allocated", "5 KiB (8 KiB allocated)". */
export function diskSize(img: DiskImage): string {
  const apparent = formatBytes(img.apparentBytes);
  const allocated = formatBytes(img.allocatedBytes);
  if (img.allocatedBytes < img.apparentBytes && allocated !== apparent) return `${allocated} of ${apparent} allocated`;
  return allocated === apparent ? `${apparent}, all allocated` : `${apparent} (${allocated} allocated)`;
}

/** An image's file name, its leading store hash cut to 8 characters (the full path is its tooltip). */
export function diskFileName(p: string): string {
  const base = p.slice(p.lastIndexOf('/') + 1);
  const m = /^([0-9a-z]{32})(-.*)$/.exec(base);
  return m ? `${m[1]!.slice(0, 8)}…${m[2]}` : base;
}

/**
 * The row's disks, one line each: "Store image  3x9q1fa2…-nixos-system-builder-vm.img  340 MiB, all
 * allocated", "Writable store  store-writable.img  3.1 GiB of 20 GiB allocated", then the diskSize
 * notice; or the store image being made ("Building the store image: 12 MiB of 340 MiB written").
 */
export function diskLines(vm: VmSnapshot): HTMLElement[] {
  const d = vm.disks;
  if (!d) return [];
  const p = d.preparing;
  if (p) {
    const of = p.bytesExpected !== null ? ` of ${formatBytes(p.bytesExpected)}` : '';
    return [
      h(
        'div',
        { class: 'disk-preparing' },
        p.phase === 'building the store image'
          ? `Building the store image: ${formatBytes(p.bytesWritten)}${of} written`
          : `Store image: ${p.phase}…`,
      ),
    ];
  }
  const lines = d.images.map((img) =>
    h(
      'div',
      { class: 'disk', 'data-role': img.role },
      h('span', { class: 'disk-role' }, img.role === 'nix-store' ? 'Store image' : 'Writable store'),
      h('span', { class: 'disk-file mono', title: img.path }, diskFileName(img.path)),
      h('span', { class: 'disk-size' }, diskSize(img)),
    ),
  );
  if (d.notice) lines.push(h('div', { class: 'disk-notice', title: d.notice }, d.notice));
  return lines;
}

// ---------- one VM row ----------

/** Icons of the actions that show one (presentation only: which actions apply is vmActions'). */
const ACTION_ICONS: Partial<Record<VmActionId, string>> = {
  start: 'play',
  stop: 'stop',
  apply: 'restart',
  cancelBuild: 'xmark',
  openSshInTerminal: 'terminal',
  copySshCommand: 'copy',
  copyIp: 'copy',
};

/** Two of the icon buttons copy: a word beside the icon says what (the tooltip says more). */
const QUICK_CAPTIONS: Partial<Record<VmActionId, string>> = {
  copySshCommand: 'ssh',
  copyIp: 'IP',
};

/** "CPU 12% · 1.2 GiB in use · up 4m 10s": what a running VM uses (VmSnapshot.usage), and for how long it has run. */
export function usageLine(vm: VmSnapshot, now: number): string | null {
  if (vm.state !== 'running') return null;
  const parts: string[] = [];
  const u = vm.usage;
  if (u)
    parts.push(
      `CPU ${u.cpuPercent < 10 ? u.cpuPercent.toFixed(1) : Math.round(u.cpuPercent)}%`,
      `${formatBytes(u.rssBytes)} in use`,
    );
  if (vm.startedAt !== null) parts.push(`up ${formatElapsed(now - vm.startedAt)}`);
  return parts.length ? parts.join(' · ') : null;
}

/** What a click on an action runs, and what the toast says after. */
function runVmAction(btn: HTMLButtonElement | null, a: VmAction): void {
  const run = a.run;
  if (!run || !a.enabled) return;
  // It deletes something: ask first, with the words vmActions gives.
  if (a.confirm && !window.confirm(a.confirm)) return;
  void act(
    btn,
    () =>
      run.kind === 'agent'
        ? (bridge.call as (m: string, p: unknown) => Promise<unknown>)(run.method, run.params)
        : (bridge.ui as (v: string, p: unknown) => Promise<unknown>)(run.verb, run.params),
    (r) => {
      if (a.id === 'copySshCommand') return 'Copied the ssh command';
      if (a.id === 'copyIp' || a.id === 'copyIpv4' || a.id === 'copyIpv6')
        return `Copied ${(r as { text: string }).text}`;
      if (a.id === 'resetDisk')
        return `Reset the writable store of ${JSON.stringify((run.params as { vm: string }).vm)}`;
      return undefined;
    },
  );
}

/** Shows an action's state on its button: enabled or not, and the reason (or what it does) as the tooltip. */
function paint(btn: HTMLButtonElement, a: VmAction, label: string): void {
  btn.disabled = !a.enabled;
  const tip = a.reason ?? a.label;
  if (btn.title !== tip) btn.title = tip;
  // Icon-only buttons are named by their label; the tooltip says why when disabled.
  if (btn.getAttribute('aria-label') !== label) btn.setAttribute('aria-label', label);
  if (!a.enabled && a.reason) btn.setAttribute('aria-description', a.reason);
  else btn.removeAttribute('aria-description');
}

/** The one "…" menu open at a time (Escape or a click elsewhere closes it). */
let openMenu: VmRow | null = null;
document.addEventListener('click', () => openMenu?.closeMenu());
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && openMenu) {
    openMenu.closeMenu(true);
    ev.stopPropagation();
  }
});

class VmRow {
  readonly el: HTMLLIElement;
  private vm: VmSnapshot;
  private acts: VmActions;
  private readonly dot = h('span', { class: 'dot' });
  private readonly name = h('span', { class: 'vm-name' });
  private readonly stale = h(
    'span',
    { class: 'badge stale', title: 'The flake changed since this VM was built or booted.' },
    'stale',
  );
  private readonly status = h('span', { class: 'vm-status' });
  private readonly res = h('span', { class: 'vm-res' });
  /** What it uses while it runs: CPU, memory in use, uptime. */
  private readonly usage = h('div', { class: 'vm-usage' });
  /** The VM's disks, a line each: store image, writable store, or the store image being made. */
  private readonly disks = h('div', { class: 'vm-disks' });
  private disksKey = '';
  private readonly ip = h('button', { class: 'vm-ip', type: 'button', title: 'Copy address' });
  private readonly chevron = h('span', { class: 'chevron', 'aria-hidden': 'true' });
  private readonly progress = h('div', {
    class: 'vm-progress',
    role: 'progressbar',
    'aria-valuemin': '0',
    'aria-valuemax': '100',
  });
  private readonly fill = h('div', { class: 'fill' });
  private readonly pct = h('span', { class: 'pct' });
  private readonly drv = h('span', { class: 'drv' });
  private readonly lastLine = h('div', { class: 'lastline mono' });
  private readonly note = h('div', { class: 'vm-note' });
  private readonly noteText = h('span', { class: 'note-text' });
  private readonly problem = h('div', { class: 'vm-problem' });
  private readonly problemText = h('div', { class: 'problem-text' });
  private readonly problemDetail = h('pre', { class: 'problem-detail mono' });
  private readonly problemLog: HTMLButtonElement;
  private readonly problemFlake: HTMLButtonElement;
  /** The primary slot: one button per primary action id, the one for the VM's state shown. */
  private readonly primarySlot = h('div', { class: 'vm-primary' });
  private readonly primaryButtons = new Map<VmActionId, HTMLButtonElement>();
  private readonly actions = h('div', { class: 'vm-actions' });
  private readonly quick = h('div', { class: 'vm-quick' });
  private readonly quickButtons = new Map<VmActionId, HTMLButtonElement>();
  private readonly moreBtn: HTMLButtonElement;
  private readonly menu = h('div', { class: 'vm-menu', role: 'menu', hidden: true });
  private readonly menuItems = new Map<VmActionId, HTMLButtonElement>();
  private ctx: ActionContext;
  private problemLogKind: 'console' | 'build' = 'console';
  private expanded: boolean;

  constructor(vm: VmSnapshot, ctx: ActionContext, expanded: boolean) {
    this.vm = vm;
    this.ctx = ctx;
    this.acts = vmActions(vm, ctx);
    this.expanded = expanded;
    this.problemLog = button(
      'Show Full Error',
      'problemLog',
      {},
      (btn) => void act(btn, () => bridge.ui('openLogWindow', { vm: this.vm.name, kind: this.problemLogKind })),
    );
    this.problemFlake = button(
      'Open Flake Folder',
      'openFlakeFolder',
      {},
      (btn) => void act(btn, () => bridge.ui('openFlakeFolder', { dir: this.vm.flake })),
    );
    this.ip.addEventListener('click', (ev) => {
      ev.stopPropagation();
      const a = this.acts.quick.find((x) => x.id === 'copyIp');
      if (a) runVmAction(null, a);
    });
    this.moreBtn = h(
      'button',
      {
        class: 'btn icon-only more',
        type: 'button',
        'data-action': 'more',
        title: 'More actions',
        'aria-label': 'More Actions',
        'aria-haspopup': 'menu',
        'aria-expanded': 'false',
      },
      icon('ellipsis'),
    );
    this.moreBtn.addEventListener('click', (ev) => {
      ev.stopPropagation();
      if (this.menu.hidden) this.openMenu();
      else this.closeMenu();
    });
    this.menu.addEventListener('click', (ev) => ev.stopPropagation());
    this.menu.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
      ev.preventDefault();
      const items = Array.from(this.menu.querySelectorAll<HTMLButtonElement>('[role="menuitem"]:not(:disabled)'));
      const i = items.indexOf(document.activeElement as HTMLButtonElement);
      items[(i + (ev.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length]?.focus();
    });

    const main = h(
      'div',
      { class: 'vm-main', role: 'button', tabindex: '0', 'aria-expanded': String(expanded) },
      this.dot,
      h(
        'div',
        { class: 'vm-text' },
        h('div', { class: 'vm-title' }, this.name, this.stale),
        h('div', { class: 'vm-sub' }, this.status, this.res, this.ip),
      ),
      this.primarySlot,
      this.chevron,
    );
    main.addEventListener('click', () => this.toggle());
    main.addEventListener('keydown', (ev) => {
      if (ev.target === main && (ev.key === 'Enter' || ev.key === ' ')) {
        ev.preventDefault();
        this.toggle();
      }
    });
    this.progress.append(
      h('div', { class: 'bar' }, this.fill),
      h('div', { class: 'progress-text' }, this.pct, this.drv),
      this.lastLine,
    );
    this.note.append(this.noteText);
    this.problem.append(
      h('div', { class: 'problem-row' }, this.problemText),
      this.problemDetail,
      h('div', { class: 'problem-buttons' }, this.problemLog, this.problemFlake),
    );
    this.actions.append(this.quick, h('span', { class: 'spacer' }), this.moreBtn);
    this.el = h(
      'li',
      { class: 'vm', 'data-vm': vm.name },
      main,
      this.progress,
      this.usage,
      this.disks,
      this.note,
      this.problem,
      this.actions,
      this.menu,
    );
    this.update(vm);
  }

  toggle(): void {
    this.expanded = !this.expanded;
    this.el.querySelector('.vm-main')!.setAttribute('aria-expanded', String(this.expanded));
    if (!this.expanded) this.closeMenu();
    this.update(this.vm);
  }

  get isExpanded(): boolean {
    return this.expanded;
  }

  openMenu(): void {
    if (openMenu && openMenu !== this) openMenu.closeMenu();
    openMenu = this;
    this.menu.hidden = false;
    this.moreBtn.setAttribute('aria-expanded', 'true');
    this.menu.querySelector<HTMLButtonElement>('[role="menuitem"]:not(:disabled)')?.focus();
  }

  closeMenu(refocus = false): void {
    if (openMenu === this) openMenu = null;
    if (this.menu.hidden) return;
    this.menu.hidden = true;
    this.moreBtn.setAttribute('aria-expanded', 'false');
    if (refocus) this.moreBtn.focus();
  }

  /** What it uses (sampled while the dropdown is open) and for how long it has run. */
  refreshUsage(now: number): void {
    const usage = this.vm.spec === null ? null : usageLine(this.vm, now);
    setText(this.usage, usage ?? '');
    const u = this.vm.usage;
    const tip = !u
      ? ''
      : `${u.vmService ? 'vfkit and the Virtualization service running its guest' : 'Its vfkit process'}: CPU in percent of one core, resident memory (from ps)`;
    if (this.usage.title !== tip) this.usage.title = tip;
    show(this.usage, usage !== null && (this.expanded || !compact));
  }

  /** The button of an action, made once and kept (a click is never lost to a re-render). */
  private actionButton(
    cache: Map<VmActionId, HTMLButtonElement>,
    a: VmAction,
    make: () => HTMLButtonElement,
  ): HTMLButtonElement {
    let btn = cache.get(a.id);
    if (!btn) {
      btn = make();
      const id = a.id;
      btn.addEventListener('click', (ev) => {
        ev.stopPropagation();
        // The action as it stands now, not as it stood when the button was made.
        const cur = [...(this.acts.primary ? [this.acts.primary] : []), ...this.acts.quick, ...this.acts.more].find(
          (x) => x.id === id,
        );
        if (cache === this.menuItems) this.closeMenu();
        if (cur) runVmAction(btn!, cur);
      });
      cache.set(a.id, btn);
    }
    return btn;
  }

  update(vm: VmSnapshot, ctx: ActionContext = this.ctx): void {
    this.vm = vm;
    this.ctx = ctx;
    const acts = vmActions(vm, ctx);
    this.acts = acts;
    const building = isBuilding(vm);
    const evalFailed = vm.spec === null;
    this.el.dataset.state = evalFailed ? 'error' : vm.state;
    this.el.classList.toggle('expanded', this.expanded);
    this.el.classList.toggle('building', building);
    setText(this.name, vm.name);
    show(this.stale, vm.stale && !evalFailed);

    const status = evalFailed
      ? 'Evaluation failed'
      : building && vm.state === 'stopped'
        ? (buildLabel(vm) ?? '')
        : stateLabel(vm);
    setText(this.status, status);
    const res = evalFailed ? '' : (resourcesLine(vm) ?? '');
    setText(this.res, res);
    show(this.res, res !== '');
    const addr = primaryAddress(vm);
    setText(this.ip, addr ?? '');
    show(this.ip, addr !== null && isUp(vm));
    this.ip.title = addr ? `Copy ${addr}` : '';

    // The one primary action for its state (src/api/actions.ts decides which, and why it is off).
    const p = acts.primary;
    for (const [id, btn] of this.primaryButtons) show(btn, p?.id === id);
    if (p) {
      const btn = this.actionButton(this.primaryButtons, p, () =>
        button(p.short, p.id, { primary: p.id === 'start' || p.id === 'apply', icon: ACTION_ICONS[p.id] }),
      );
      setText(btn.querySelector('span')!, p.short);
      paint(btn, p, p.label);
      show(btn, true);
      if (btn.parentElement !== this.primarySlot) this.primarySlot.append(btn);
    }

    // A running VM on an older closure: say so (the primary is the fix). Else what is known
    // before a start: it cannot run on this Mac, or nothing here builds it (with the fix); or
    // that it is this Mac's Linux builder.
    let note: string | null = null;
    if (p?.id === 'apply') {
      const how =
        vm.applyPreview?.how === 'switch'
          ? 'Apply switches it in place.'
          : vm.applyPreview?.how === 'restart'
            ? 'Apply restarts it.'
            : '';
      note = `The flake changed since ${JSON.stringify(vm.name)} booted.${how ? ` ${how}` : ''}`;
    } else if (vm.platform?.cannotRun) note = `Cannot run on this Mac: ${vm.platform.cannotRun}.`;
    else if (vm.platform?.problem && !isUp(vm)) note = vm.platform.problem;
    else if (vm.platform?.isBuilder) note = "This Mac's Linux builder: nix builds on it while it runs.";
    show(this.note, note !== null);
    // Said for information, not as a warning.
    this.note.classList.toggle(
      'info',
      note !== null && p?.id !== 'apply' && !vm.platform?.cannotRun && !(vm.platform?.problem && !isUp(vm)),
    );
    if (note !== null) setText(this.noteText, note);

    // The frequent ones as icon buttons, named for screen readers, the reason as the tooltip.
    const quick = acts.quick.map((a) => {
      const btn = this.actionButton(this.quickButtons, a, () =>
        h(
          'button',
          { class: `btn quick${QUICK_CAPTIONS[a.id] ? '' : ' icon-only'}`, type: 'button', 'data-action': a.id },
          icon(ACTION_ICONS[a.id] ?? 'doc'),
          QUICK_CAPTIONS[a.id] ? h('span', { class: 'caption' }, QUICK_CAPTIONS[a.id]!) : null,
        ),
      );
      paint(btn, a, a.label);
      return btn;
    });
    if (!sameChildren(this.quick, quick)) this.quick.replaceChildren(...quick);

    // The rest in the "…" menu, in vmActions' order.
    const items = acts.more.map((a) => {
      const btn = this.actionButton(this.menuItems, a, () =>
        h('button', { class: 'menu-item', type: 'button', role: 'menuitem', 'data-action': a.id }, h('span', {})),
      );
      setText(btn.querySelector('span')!, a.label);
      paint(btn, a, a.label);
      return btn;
    });
    if (!sameChildren(this.menu, items)) this.menu.replaceChildren(...items);

    // Build progress; else an apply's switch in place, its output's last line as it comes.
    const switching = !building && vm.applied?.how === 'switching';
    show(this.progress, building || switching);
    this.progress.classList.toggle('switching', switching);
    if (switching) {
      this.progress.removeAttribute('aria-valuenow');
      setText(this.pct, '');
      setText(this.drv, 'Switching in place…');
      setText(this.lastLine, vm.applied?.lastLine ?? '');
      show(this.lastLine, Boolean(vm.applied?.lastLine));
    } else if (building) {
      const bp = vm.build.progress;
      const pct = Math.max(0, Math.min(100, bp?.percent ?? 0));
      this.fill.style.width = `${pct}%`;
      this.progress.setAttribute('aria-valuenow', String(Math.round(pct)));
      setText(this.pct, `${Math.round(pct)}%`);
      const what = [drvName(bp?.currentDrv ?? null), bp?.phase].filter(Boolean).join(' · ');
      const counts = bp && bp.buildsExpected > 0 ? `${bp.buildsDone}/${bp.buildsExpected} built` : '';
      // A remote build says where it runs (nix names the builder by its store URI).
      const where = bp?.remote ? `on ${bp.remote.replace(/^[a-z-]+:\/\//, '').replace(/\?.*$/, '')}` : '';
      setText(this.drv, [what, counts, where].filter(Boolean).join(' — ') || 'Preparing…');
      setText(this.lastLine, bp?.lastLine ?? '');
      show(this.lastLine, Boolean(bp?.lastLine));
    }

    this.refreshUsage(Date.now());

    // Rebuilt only when what it shows changed (nothing in it is clickable; its tooltips stay put).
    const disksKey = JSON.stringify(vm.disks ? [vm.disks.preparing, vm.disks.images, vm.disks.notice] : null);
    if (disksKey !== this.disksKey) {
      this.disksKey = disksKey;
      this.disks.replaceChildren(...diskLines(vm));
    }
    show(this.disks, this.disks.childElementCount > 0 && !evalFailed && (this.expanded || !compact));

    // Problems, in place, wrapped to the row's width; the whole of nix's words a click away.
    let problem: string | null = null;
    let detail: string | null = null;
    let logKind: 'console' | 'build' | null = null;
    if (vm.error) {
      problem = vm.error;
      logKind = evalFailed ? null : 'console';
      detail = evalFailed ? null : vm.exit?.lastLines.length ? vm.exit.lastLines.slice(-6).join('\n') : null;
    } else if (vm.build.status === 'failed') {
      problem = vm.build.error ?? 'The build failed.';
      detail = vm.build.detail;
      logKind = 'build';
    } else if (vm.state === 'crashed') {
      problem = `Crashed (${vm.exit ? exitText(vm.exit) : 'unknown exit'}).`;
      detail = vm.exit?.lastLines.length ? vm.exit.lastLines.slice(-6).join('\n') : null;
      logKind = 'console';
    }
    show(this.problem, problem !== null);
    setText(this.problemText, problem ?? '');
    setText(this.problemDetail, detail ? compactCodeFrames(detail) : '');
    show(this.problemDetail, Boolean(detail));
    show(this.problemLog, logKind !== null);
    show(this.problemFlake, evalFailed);
    if (logKind) {
      this.problemLogKind = logKind;
      // A build's error is the end of its log; a run's is the end of its console.
      setText(this.problemLog.querySelector('span')!, logKind === 'build' ? 'Show Full Error' : 'Show Log');
      this.problemLog.title =
        logKind === 'build' ? 'The whole build log, in the log window' : 'The console log, in the log window';
    }
    // Nothing to expand on a VM that did not evaluate.
    show(this.chevron, !evalFailed);

    // Secondary actions.
    show(this.actions, this.expanded && !evalFailed);
    if (!this.expanded || evalFailed) this.closeMenu();
  }
}

function sameChildren(parent: HTMLElement, want: readonly Element[]): boolean {
  const cur = parent.children;
  return cur.length === want.length && want.every((el, i) => cur[i] === el);
}

// ---------- sections ----------

const problemsEl = h('div', { class: 'problems' });
const flakeErrorsEl = h('div', { class: 'flake-errors' });
const emptyEl = h('div', { class: 'empty' });
const list = h('ul', { class: 'vms', 'aria-label': 'Virtual machines' });
/** More VMs than fit at a glance: compact rows and a filter by name. */
const MANY_VMS = 8;
let compact = false;
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
  if (many !== compact) {
    compact = many;
    document.body.classList.toggle('compact', compact);
  }
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
