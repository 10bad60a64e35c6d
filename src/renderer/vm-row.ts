/**
 * One VM's row in the dropdown: state, progress, usage, disks, problems and its actions (which
 * apply is vmActions'; this only paints them). Made once per VM and patched in place, so a click
 * is never lost to a re-render.
 */
import { vmActions, type ActionContext, type VmAction, type VmActionId, type VmActions } from '../api/actions.ts';
import type { DiskImage, VmSnapshot } from '../api/types.ts';
import {
  buildLabel,
  compactCodeFrames,
  drvName,
  exitText,
  formatBytes,
  formatElapsed,
  isBuilding,
  isUp,
  primaryAddress,
  resourcesLine,
  stateLabel,
} from '../api/describe.ts';
import { bridge } from './bridge.ts';
import { h, icon } from './dom.ts';
import { act, button, setText, show } from './feedback.ts';

/** Many VMs: rows are compact (the dropdown sets the body's class; the class is the one owner). */
const compact = () => document.body.classList.contains('compact');

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

export class VmRow {
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
    show(this.usage, usage !== null && (this.expanded || !compact()));
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
    show(this.disks, this.disks.childElementCount > 0 && !evalFailed && (this.expanded || !compact()));

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

export function sameChildren(parent: HTMLElement, want: readonly Element[]): boolean {
  const cur = parent.children;
  return cur.length === want.length && want.every((el, i) => cur[i] === el);
}
