/**
 * The settings window. Changes apply as they are made (no Save button, like macOS preferences):
 * each control sends a `setSettings` patch; the agent's answer (and later snapshots, e.g. from
 * the CLI) update the form, except the text field being typed in. An edit the agent has not
 * answered yet overlays every snapshot (PendingEdits), so no control flips back meanwhile; a
 * refused edit is dropped, its control shows the saved value again and the reason stays shown.
 */
import { HIDDEN_WHY, hiddenCount, quotedNames } from '../api/describe.ts';
import { ownValue, withEntry, withoutEntry } from '../api/records.ts';
import { setConfigurationList } from '../api/settings-schema.ts';
import type { CliToolStatus } from '../api/ipc.ts';
import type { AgentSnapshot, Settings } from '../api/types.ts';
import { bridge, errorMessage } from './bridge.ts';
import { h, icon, tildify } from './dom.ts';
import { PendingEdits } from './pending.ts';
import { applyWindowFlags } from './window-flags.ts';

applyWindowFlags();

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const flakesEl = $<HTMLUListElement>('flakes');
const autoRebuild = $<HTMLSelectElement>('autoRebuild');
const terminal = $<HTMLSelectElement>('terminal');
const terminalOther = $<HTMLInputElement>('terminal-other');
const stopTimeout = $<HTMLInputElement>('stopTimeout');
const onQuit = $<HTMLSelectElement>('onQuit');
const launchAtLogin = $<HTMLInputElement>('launchAtLogin');
const vmsEl = $<HTMLTableSectionElement>('vms');
const noVms = $<HTMLParagraphElement>('no-vms');
const statusEl = $<HTMLElement>('status');
const paths = {
  nixPath: $<HTMLInputElement>('nixPath'),
  vfkitPath: $<HTMLInputElement>('vfkitPath'),
  bridgeInterface: $<HTMLInputElement>('bridgeInterface'),
};

const sshInclude = $<HTMLElement>('ssh-include');
const sshStatus = $<HTMLElement>('ssh-status');
/** The agent's last word on the settings (its answer to an edit, or a snapshot). */
let base: Settings | null = null;
const edits = new PendingEdits<Settings>();
/** What the form shows: the agent's settings with the edits still in flight on top. */
const shown = (): Settings => edits.overlay(base!);
let sshConfig: AgentSnapshot['agent']['sshConfig'] | null = null;
let vms: AgentSnapshot['vms'] = [];
/** The agent's word on each flake (its hidden configurations); none before the first snapshot. */
let flakeStates: AgentSnapshot['flakes'] = [];
let statusTimer: ReturnType<typeof setTimeout> | undefined;

function status(text: string, error = false): void {
  clearTimeout(statusTimer);
  statusEl.textContent = text;
  statusEl.classList.toggle('error', error);
  if (!error) statusTimer = setTimeout(() => (statusEl.textContent = ''), 1800);
}

async function save(patch: Partial<Settings>): Promise<void> {
  const edit = edits.add(patch);
  render();
  try {
    const saved = await bridge.call('setSettings', patch);
    edits.settle(edit);
    base = saved;
    render();
    status('Saved');
  } catch (e) {
    edits.settle(edit);
    status(errorMessage(e), true);
    render(true);
  }
}

const focused = (el: HTMLElement) => document.activeElement === el;

function setValue(el: HTMLInputElement | HTMLSelectElement, v: string, force: boolean): void {
  if ((force || !focused(el)) && el.value !== v) el.value = v;
}

/** "laptop, old-vm" → ["laptop", "old-vm"]: the names a configurations field holds, as typed. */
function namesIn(text: string): string[] {
  return text
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
}

/**
 * One configurations field of a flake folder: which of its nixosConfigurations are VMs although
 * they set no option nixvm reads ('include'), or are never VMs ('exclude'). A change saves the
 * whole list (the schema checks it, as every setting); a name on it leaves the other list.
 */
function configurationsField(dir: string, list: 'include' | 'exclude'): HTMLElement {
  const label = list === 'include' ? 'Also VMs' : 'Never VMs';
  const input = h('input', {
    type: 'text',
    spellcheck: 'false',
    'data-list': list,
    placeholder: list === 'include' ? 'none, e.g. laptop' : 'none, e.g. old-vm',
    'aria-label': `${list === 'include' ? 'Configurations shown as VMs' : 'Configurations never shown as VMs'} in ${dir}`,
  });
  input.addEventListener('change', () => void save(setConfigurationList(shown(), dir, list, namesIn(input.value))));
  return h('label', { class: 'config-field' }, h('span', {}, label), input);
}

function flakeItem(dir: string): HTMLLIElement {
  return h(
    'li',
    { 'data-dir': dir },
    h(
      'div',
      { class: 'flake-row' },
      icon('folder', 13),
      h('span', { class: 'path', title: dir }, tildify(dir)),
      h(
        'button',
        {
          type: 'button',
          class: 'btn small',
          title: `Remove ${dir}`,
          'aria-label': `Remove ${dir}`,
          onclick: () => void save({ flakes: shown().flakes.filter((d) => d !== dir) }),
        },
        'Remove',
      ),
    ),
    h(
      'div',
      { class: 'flake-configs' },
      configurationsField(dir, 'include'),
      configurationsField(dir, 'exclude'),
      h('p', { class: 'hint flake-hidden', hidden: true }),
    ),
  );
}

/** A flake folder's fields and its hidden configurations, patched in place (never while typed in). */
function renderFlakeItem(li: HTMLElement, dir: string, s: Settings, force: boolean): void {
  for (const input of Array.from(li.querySelectorAll<HTMLInputElement>('input[data-list]'))) {
    const lists = input.dataset.list === 'include' ? s.includeConfigurations : s.excludeConfigurations;
    setValue(input, (ownValue(lists, dir) ?? []).join(', '), force);
  }
  const hiddenEl = li.querySelector<HTMLElement>('.flake-hidden')!;
  const f = flakeStates.find((x) => x.dir === dir);
  const count = f && !f.error ? hiddenCount(f.hidden.length, vms.filter((v) => v.flake === dir).length) : null;
  // The words `nixvm ls` and the dropdown use; the names themselves, and why.
  const text = f && count ? `${count}: ${quotedNames(f.hidden, 8)} (${HIDDEN_WHY}).` : '';
  hiddenEl.hidden = text === '';
  if (hiddenEl.textContent !== text) hiddenEl.textContent = text;
}

function render(force = false): void {
  if (!base) return;
  const s = shown();
  // Flakes.
  const key = JSON.stringify(s.flakes);
  if (flakesEl.dataset.key !== key) {
    flakesEl.dataset.key = key;
    flakesEl.replaceChildren(...s.flakes.map(flakeItem));
    if (!s.flakes.length) flakesEl.append(h('li', { class: 'empty' }, 'No flake folders yet.'));
  }
  for (const li of Array.from(flakesEl.querySelectorAll<HTMLElement>('li[data-dir]')))
    renderFlakeItem(li, li.dataset.dir!, s, force);
  setValue(autoRebuild, s.autoRebuild, force);
  const known = s.terminalApp === 'Terminal' || s.terminalApp === 'iTerm';
  if (force || (!focused(terminal) && !focused(terminalOther))) {
    terminal.value = known ? s.terminalApp : 'other';
    terminalOther.hidden = known;
    if (!known) terminalOther.value = s.terminalApp;
  }
  setValue(stopTimeout, String(s.stopTimeoutSec), force);
  setValue(onQuit, s.onQuit, force);
  setValue(paths.nixPath, s.nixPath ?? '', force);
  setValue(paths.vfkitPath, s.vfkitPath ?? '', force);
  setValue(paths.bridgeInterface, s.bridgeInterface ?? '', force);

  if (sshConfig) {
    if (sshInclude.textContent !== sshConfig.includeLine) sshInclude.textContent = sshConfig.includeLine;
    const text = {
      included: '~/.ssh/config includes it.',
      'not-included': '~/.ssh/config does not include it yet.',
      missing: 'There is no ~/.ssh/config yet: create it with this line.',
      unreadable: '~/.ssh/config could not be read.',
    }[sshConfig.status];
    if (sshStatus.textContent !== text) sshStatus.textContent = text;
    sshStatus.dataset.status = sshConfig.status;
  }

  // Per-VM rows, keyed by name so an input being typed in is not replaced.
  noVms.hidden = vms.length > 0;
  const seen = new Set<string>();
  for (const vm of vms) {
    seen.add(vm.name);
    let row = vmsEl.querySelector<HTMLTableRowElement>(`tr[data-vm="${CSS.escape(vm.name)}"]`);
    if (!row) {
      const auto = h('input', { type: 'checkbox', 'aria-label': `Start ${vm.name} with NixVM` });
      auto.addEventListener(
        'change',
        () => void save({ autostart: withEntry(shown().autostart, vm.name, auto.checked) }),
      );
      const user = h('input', { type: 'text', spellcheck: 'false', 'aria-label': `ssh user for ${vm.name}` });
      user.addEventListener('change', () => {
        const value = user.value.trim();
        const current = shown().sshUser;
        void save({ sshUser: value ? withEntry(current, vm.name, value) : withoutEntry(current, vm.name) });
      });
      const shared = h('input', {
        type: 'text',
        spellcheck: 'false',
        placeholder: '$TMPDIR/xchg',
        'aria-label': `shared folder for ${vm.name}`,
      });
      shared.addEventListener('change', () => {
        const value = shared.value.trim();
        const current = shown().sharedDir;
        void save({ sharedDir: value ? withEntry(current, vm.name, value) : withoutEntry(current, vm.name) });
      });
      row = h(
        'tr',
        { 'data-vm': vm.name },
        h('td', { class: 'name' }, vm.name),
        h('td', {}, auto),
        h('td', {}, user),
        h('td', {}, shared),
      );
      vmsEl.append(row);
    }
    const [auto, user, shared] = row.querySelectorAll('input');
    auto!.checked = ownValue(s.autostart, vm.name) === true;
    user!.placeholder = vm.spec?.ssh.user ?? 'root';
    if (force || !focused(user!)) user!.value = ownValue(s.sshUser, vm.name) ?? '';
    if (shared && (force || !focused(shared))) shared.value = ownValue(s.sharedDir, vm.name) ?? '';
  }
  for (const row of Array.from(vmsEl.querySelectorAll<HTMLTableRowElement>('tr[data-vm]'))) {
    if (!seen.has(row.dataset.vm!)) row.remove();
  }
}

autoRebuild.addEventListener('change', () => void save({ autoRebuild: autoRebuild.value as Settings['autoRebuild'] }));
onQuit.addEventListener('change', () => void save({ onQuit: onQuit.value as Settings['onQuit'] }));
terminal.addEventListener('change', () => {
  terminalOther.hidden = terminal.value !== 'other';
  if (terminal.value === 'other') terminalOther.focus();
  else void save({ terminalApp: terminal.value });
});
terminalOther.addEventListener('change', () => {
  if (terminalOther.value.trim()) void save({ terminalApp: terminalOther.value.trim() });
});
stopTimeout.addEventListener('change', () => void save({ stopTimeoutSec: Number(stopTimeout.value) }));
for (const [key, el] of Object.entries(paths) as [keyof typeof paths, HTMLInputElement][]) {
  el.addEventListener('change', () => void save({ [key]: el.value.trim() || null }));
}
launchAtLogin.addEventListener('change', async () => {
  const wanted = launchAtLogin.checked;
  try {
    launchAtLogin.checked = (await bridge.ui('setLaunchAtLogin', { enabled: wanted })).enabled;
    status('Saved');
  } catch (e) {
    launchAtLogin.checked = !wanted;
    status(errorMessage(e), true);
  }
});
// ---------- the app itself: its command-line tool, whether it is signed ----------

const appGroup = $<HTMLElement>('app-group');
const cliStatus = $<HTMLElement>('cli-status');
const installCli = $<HTMLButtonElement>('install-cli');
const unsignedNote = $<HTMLElement>('unsigned-note');

function showCliTool(st: CliToolStatus): void {
  installCli.hidden = st.state !== 'not-installed';
  cliStatus.textContent =
    st.state === 'installed'
      ? `nixvm is installed: ${st.link}`
      : st.state === 'not-installed'
        ? `Not installed. It goes to ${st.link}${st.admin ? ' (asks for an administrator password)' : ''}.`
        : st.reason;
}

bridge.app('appInfo', {}).then(
  (info) => {
    appGroup.hidden = false;
    showCliTool(info.cliTool);
    // Said once, here: the tray title is where the notices go meanwhile (src/main/notify.ts).
    unsignedNote.hidden = info.signed || info.platform !== 'darwin';
  },
  // A face without the app verbs (none today) shows no such section.
  () => {},
);

installCli.addEventListener('click', async () => {
  installCli.disabled = true;
  try {
    const r = await bridge.app('installCliTool', {});
    showCliTool(r.status);
    if (!r.cancelled && r.status.state === 'installed') status(`Installed ${r.status.link}`);
  } catch (e) {
    status(errorMessage(e), true);
  } finally {
    installCli.disabled = false;
  }
});

$<HTMLButtonElement>('copy-include').addEventListener('click', async () => {
  try {
    await bridge.ui('copySshInclude', {});
    status('Copied the Include line');
  } catch (e) {
    status(errorMessage(e), true);
  }
});
$<HTMLButtonElement>('add-flake').addEventListener('click', async () => {
  try {
    const { dir } = await bridge.ui('chooseFlakeFolder', {});
    if (dir) {
      base = await bridge.call('getSettings', {});
      render();
      status(`Added ${tildify(dir)}`);
    }
  } catch (e) {
    status(errorMessage(e), true);
  }
});

bridge.onEvent((ev) => {
  if (ev.type !== 'snapshot') return;
  base = ev.snapshot.settings;
  vms = ev.snapshot.vms;
  flakeStates = ev.snapshot.flakes;
  sshConfig = ev.snapshot.agent.sshConfig;
  render();
});
Promise.all([bridge.call('snapshot', {}), bridge.ui('getLaunchAtLogin', {})]).then(
  ([s, login]) => {
    base = s.settings;
    vms = s.vms;
    flakeStates = s.flakes;
    sshConfig = s.agent.sshConfig;
    launchAtLogin.checked = login.enabled;
    render(true);
  },
  (e) => status(`Could not reach the NixVM agent: ${errorMessage(e)}`, true),
);
