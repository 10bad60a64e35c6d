/**
 * The menubar dropdown: one row per VM with its state, progress and actions; flake and agent
 * errors in place; a helpful empty state. Everything shown comes from the agent's snapshot;
 * every button is a bridge call. Rows are keyed and patched in place (never rebuilt) so a click
 * is not lost when a build pushes ten snapshots a second.
 */
import { vmActions, type ActionContext, type VmAction, type VmActionId } from '../api/actions.ts';
import { firstRunChecklist, type ChecklistAction, type ChecklistItem } from '../api/checklist.ts';
import type { AgentSnapshot, DiskImage, DoctorReport, FlakeSnapshot, VmSnapshot } from '../api/types.ts';
import {
  buildLabel,
  drvName,
  exitText,
  isBuilding,
  isUp,
  primaryAddress,
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

/** "1 KiB", "20 GiB" (binary units, as the CLI). */
function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 || v >= 100 || Number.isInteger(v) ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** "3.1 GiB of 20 GiB allocated" (sparse), "340 MiB, all allocated", "5 KiB (8 KiB allocated)". */
export function diskSize(img: DiskImage): string {
  const apparent = bytes(img.apparentBytes);
  const allocated = bytes(img.allocatedBytes);
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
    const of = p.bytesExpected !== null ? ` of ${bytes(p.bytesExpected)}` : '';
    return [
      h(
        'div',
        { class: 'disk-preparing' },
        p.phase === 'building the store image'
          ? `Building the store image: ${bytes(p.bytesWritten)}${of} written`
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

class VmRow {
  readonly el: HTMLLIElement;
  private vm: VmSnapshot;
  private readonly dot = h('span', { class: 'dot' });
  private readonly name = h('span', { class: 'vm-name' });
  private readonly stale = h(
    'span',
    { class: 'badge stale', title: 'The flake changed since this VM was built or booted.' },
    'stale',
  );
  private readonly status = h('span', { class: 'vm-status' });
  private readonly res = h('span', { class: 'vm-res' });
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
  private readonly actions = h('div', { class: 'vm-actions' });
  private readonly b: Partial<Record<VmActionId, HTMLButtonElement>>;
  /** Each button's own tooltip, shown when no reason replaces it. */
  private readonly titles = new Map<HTMLButtonElement, string>();
  private ctx: ActionContext;
  private problemLogKind: 'console' | 'build' = 'console';
  private expanded: boolean;

  constructor(vm: VmSnapshot, ctx: ActionContext, expanded: boolean) {
    this.vm = vm;
    this.ctx = ctx;
    this.expanded = expanded;
    const ref = () => ({ vm: this.vm.name });
    const call =
      (method: 'start' | 'stop' | 'restart' | 'build' | 'cancelBuild' | 'apply') => (btn: HTMLButtonElement) =>
        void act(btn, () => bridge.call(method, ref()));
    this.b = {
      start: button('Start', 'start', { primary: true, icon: 'play' }, call('start')),
      stop: button('Stop', 'stop', { icon: 'stop' }, call('stop')),
      stopping: button('Stopping…', 'stopping'),
      // Its title comes from vmActions: switch in place, or why only a restart will do.
      apply: button('Apply', 'apply', { icon: 'restart' }, call('apply')),
      cancelBuild: button('Cancel', 'cancelBuild', { title: 'Cancel the build' }, call('cancelBuild')),
      restart: button('Restart', 'restart', { icon: 'restart' }, call('restart')),
      build: button('Rebuild', 'build', { icon: 'hammer' }, call('build')),
      openSshInTerminal: button(
        'Terminal',
        'openSshInTerminal',
        { icon: 'terminal', title: 'Open ssh in Terminal' },
        (btn) => void act(btn, () => bridge.ui('openSshInTerminal', ref())),
      ),
      copySshCommand: button(
        'Copy ssh',
        'copySshCommand',
        { icon: 'copy', title: 'Copy the ssh command' },
        (btn) =>
          void act(
            btn,
            () => bridge.ui('copySshCommand', ref()),
            () => 'Copied the ssh command',
          ),
      ),
      copyIpv4: button(
        'IPv4',
        'copyIpv4',
        { icon: 'copy', title: 'Copy the IPv4 address' },
        (btn) =>
          void act(
            btn,
            () => bridge.ui('copyIp', { vm: this.vm.name, family: 'ipv4' }),
            (r) => `Copied ${(r as { text: string }).text}`,
          ),
      ),
      copyIpv6: button(
        'IPv6',
        'copyIpv6',
        { icon: 'copy', title: 'Copy the IPv6 link-local address' },
        (btn) =>
          void act(
            btn,
            () => bridge.ui('copyIp', { vm: this.vm.name, family: 'ipv6' }),
            (r) => `Copied ${(r as { text: string }).text}`,
          ),
      ),
      openConsoleInTerminal: button(
        'Console',
        'openConsoleInTerminal',
        { icon: 'terminal', title: 'Type into the serial console in Terminal' },
        (btn) => void act(btn, () => bridge.ui('openConsoleInTerminal', ref())),
      ),
      viewConsoleLog: button(
        'Log',
        'viewConsoleLog',
        { icon: 'doc', title: 'View the console log' },
        (btn) => void act(btn, () => bridge.ui('openLogWindow', { vm: this.vm.name, kind: 'console' })),
      ),
      viewBuildLog: button(
        'Build log',
        'viewBuildLog',
        { icon: 'hammer', title: 'View the last build log' },
        (btn) => void act(btn, () => bridge.ui('openLogWindow', { vm: this.vm.name, kind: 'build' })),
      ),
      revealStateDir: button(
        'Folder',
        'revealStateDir',
        { icon: 'folder', title: 'Reveal the state folder in Finder' },
        (btn) => void act(btn, () => bridge.ui('revealStateDir', ref())),
      ),
      growDisk: button(
        'Grow disk',
        'growDisk',
        { icon: 'hammer' },
        (btn) => void act(btn, () => bridge.call('diskGrow', ref())),
      ),
      resetDisk: button('Reset disk', 'resetDisk', {}, (btn) => {
        // It deletes what the VM kept: ask first, with the words vmActions gives.
        const a = vmActions(this.vm, this.ctx).more.find((x) => x.id === 'resetDisk');
        if (a?.confirm && !window.confirm(a.confirm)) return;
        void act(
          btn,
          () => bridge.call('diskReset', ref()),
          () => `Reset the writable store of ${JSON.stringify(this.vm.name)}`,
        );
      }),
    };
    for (const btn of Object.values(this.b)) this.titles.set(btn, btn.title);
    this.problemLog = button(
      'View Log',
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
      const family = this.vm.ipv4 ? 'ipv4' : 'ipv6';
      void act(
        null,
        () => bridge.ui('copyIp', { vm: this.vm.name, family }),
        (r) => `Copied ${(r as { text: string }).text}`,
      );
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
      h('div', { class: 'vm-primary' }, this.b.cancelBuild!, this.b.start!, this.b.stop!, this.b.stopping!),
      this.chevron,
    );
    main.addEventListener('click', () => this.toggle());
    main.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        this.toggle();
      }
    });
    this.progress.append(
      h('div', { class: 'bar' }, this.fill),
      h('div', { class: 'progress-text' }, this.pct, this.drv),
      this.lastLine,
    );
    this.note.append(this.noteText, this.b.apply!);
    this.problem.append(
      h('div', { class: 'problem-row' }, this.problemText),
      this.problemDetail,
      h('div', { class: 'problem-buttons' }, this.problemLog, this.problemFlake),
    );
    this.actions.append(
      this.b.restart!,
      this.b.build!,
      this.b.openSshInTerminal!,
      this.b.copySshCommand!,
      this.b.copyIpv4!,
      this.b.copyIpv6!,
      this.b.openConsoleInTerminal!,
      this.b.viewConsoleLog!,
      this.b.viewBuildLog!,
      this.b.revealStateDir!,
      this.b.growDisk!,
      this.b.resetDisk!,
    );
    this.el = h(
      'li',
      { class: 'vm', 'data-vm': vm.name },
      main,
      this.progress,
      this.disks,
      this.note,
      this.problem,
      this.actions,
    );
    this.update(vm);
  }

  toggle(): void {
    this.expanded = !this.expanded;
    this.el.querySelector('.vm-main')!.setAttribute('aria-expanded', String(this.expanded));
    this.update(this.vm);
  }

  get isExpanded(): boolean {
    return this.expanded;
  }

  update(vm: VmSnapshot, ctx: ActionContext = this.ctx): void {
    this.vm = vm;
    this.ctx = ctx;
    const acts = vmActions(vm, ctx);
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

    // A running VM on an older closure: say so, with the fix beside it.
    show(this.note, acts.apply !== null);
    if (acts.apply) setText(this.noteText, `The flake changed since ${JSON.stringify(vm.name)} booted.`);

    // Every button: shown when its action applies, enabled or not with the reason (src/api/actions.ts).
    const applies = new Map<VmActionId, VmAction>();
    for (const a of [...acts.primary, ...(acts.apply ? [acts.apply] : []), ...acts.more]) applies.set(a.id, a);
    for (const [id, btn] of Object.entries(this.b) as [VmActionId, HTMLButtonElement][]) {
      const a = applies.get(id);
      show(btn, a !== undefined);
      if (!a) continue;
      btn.disabled = !a.enabled;
      const own = this.titles.get(btn) || null;
      btn.title = (a.enabled ? (own ?? a.reason) : (a.reason ?? own)) ?? '';
    }

    // Build progress.
    show(this.progress, building);
    if (building) {
      const p = vm.build.progress;
      const pct = Math.max(0, Math.min(100, p?.percent ?? 0));
      this.fill.style.width = `${pct}%`;
      this.progress.setAttribute('aria-valuenow', String(Math.round(pct)));
      setText(this.pct, `${Math.round(pct)}%`);
      const what = [drvName(p?.currentDrv ?? null), p?.phase].filter(Boolean).join(' · ');
      const counts = p && p.buildsExpected > 0 ? `${p.buildsDone}/${p.buildsExpected} built` : '';
      setText(this.drv, [what, counts].filter(Boolean).join(' — ') || 'Preparing…');
      setText(this.lastLine, p?.lastLine ?? '');
      show(this.lastLine, Boolean(p?.lastLine));
    }

    // Rebuilt only when what it shows changed (nothing in it is clickable; its tooltips stay put).
    const disksKey = JSON.stringify(vm.disks ? [vm.disks.preparing, vm.disks.images, vm.disks.notice] : null);
    if (disksKey !== this.disksKey) {
      this.disksKey = disksKey;
      this.disks.replaceChildren(...diskLines(vm));
    }
    show(this.disks, this.disks.childElementCount > 0 && !evalFailed);

    // Problems, in place, with nix's own words a click away.
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
    setText(this.problemDetail, detail ?? '');
    show(this.problemDetail, Boolean(detail));
    show(this.problemLog, logKind !== null);
    show(this.problemFlake, evalFailed);
    if (logKind) {
      this.problemLogKind = logKind;
      setText(this.problemLog.querySelector('span')!, logKind === 'build' ? 'View Build Log' : 'View Console Log');
    }
    // Nothing to expand on a VM that did not evaluate.
    show(this.chevron, !evalFailed);

    // Secondary actions.
    show(this.actions, this.expanded && !evalFailed);
  }
}

// ---------- sections ----------

const problemsEl = h('div', { class: 'problems' });
const flakeErrorsEl = h('div', { class: 'flake-errors' });
const emptyEl = h('div', { class: 'empty' });
const list = h('ul', { class: 'vms', 'aria-label': 'Virtual machines' });
const checklistEl = h('section', { class: 'checklist', 'aria-label': 'Get started', hidden: true });
const inner = h('div', { class: 'content-inner' }, checklistEl, problemsEl, flakeErrorsEl, emptyEl, list);
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

function flakeErrorCard(f: FlakeSnapshot): HTMLElement {
  const [headline, ...rest] = (f.error ?? '').split('\n');
  return h(
    'section',
    { class: 'card error', 'data-flake': f.dir },
    h('div', { class: 'card-title', title: f.dir }, 'The flake failed to evaluate'),
    h('div', { class: 'card-text' }, headline ?? ''),
    rest.join('\n').trim() ? h('pre', { class: 'card-detail mono' }, rest.join('\n').trim()) : null,
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
    ),
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
  let emptyKey = '';
  if (flakeDirs.length === 0) emptyKey = 'no-flake';
  else if (s.vms.length === 0 && !errored.length)
    emptyKey = evaluating ? 'evaluating' : `no-vms:${flakeDirs.join(',')}`;
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
      return [
        h('div', { class: 'empty-title' }, 'No virtual machines'),
        h(
          'p',
          { class: 'empty-text' },
          `${flakeDirs.map(tildify).join(', ')} define${flakeDirs.length === 1 ? 's' : ''} no nixosConfigurations. Add one to the flake and NixVM picks it up.`,
        ),
        button(
          'Open Flake Folder',
          'openFlakeFolder',
          { icon: 'folder' },
          (btn) => void act(btn, () => bridge.ui('openFlakeFolder', {})),
        ),
      ];
    }
    return [];
  });
  // The checklist's flake item says the same with more: no second "No flake configured".
  show(emptyEl, emptyKey !== '' && !(emptyKey === 'no-flake' && checklistCoversFlake));

  // The VM list, keyed by name; grouped by flake when there are several.
  if (initialExpand === null && s.vms.length) initialExpand = s.vms.length <= 2;
  const grouped = new Set(s.vms.map((v) => v.flake)).size > 1;
  const wanted: HTMLElement[] = [];
  const seen = new Set<string>();
  let lastFlake: string | null = null;
  for (const vm of s.vms) {
    if (grouped && vm.flake !== lastFlake) {
      lastFlake = vm.flake;
      let head = groupHeads.get(vm.flake);
      if (!head) {
        head = h('li', { class: 'group' }, tildify(vm.flake));
        groupHeads.set(vm.flake, head);
      }
      wanted.push(head);
    }
    let row = rows.get(vm.name);
    if (row) row.update(vm, s.agent);
    else {
      row = new VmRow(vm, s.agent, initialExpand ?? false);
      rows.set(vm.name, row);
    }
    seen.add(vm.name);
    wanted.push(row.el);
  }
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
    { primary: verb === 'chooseFlakeFolder', icon: verb === 'openSettings' ? 'gear' : 'folder' },
    (btn) =>
      void act(
        btn,
        () => bridge.ui(verb, {}),
        (r) => {
          refreshDoctor();
          const dir = (r as { dir?: string | null } | null)?.dir;
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
  const systems = [...new Set(s.vms.flatMap((v) => (v.spec?.system ? [v.spec.system] : [])))].sort();
  const key = JSON.stringify([
    s.flakes.length,
    systems,
    s.settings.vfkitPath,
    s.settings.nixPath,
    s.agent.problems.length,
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

bridge.onEvent((ev) => {
  if (ev.type !== 'snapshot') return;
  render(ev.snapshot);
  maybeRefreshDoctor(ev.snapshot);
  renderChecklist();
});
bridge.call('snapshot', {}).then(
  (s) => {
    // An event may already have brought a newer snapshot.
    if (!snap) render(s);
    maybeRefreshDoctor(snap ?? s);
    renderChecklist();
  },
  (e) => toast(`Could not reach the NixVM agent: ${errorMessage(e)}`, 'error'),
);
