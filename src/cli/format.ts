/**
 * Everything the CLI prints, as pure functions from the contract's data to text. No I/O, no
 * clocks (callers pass `now`), no terminal queries (callers pass the width), so all of it is
 * unit-tested and the commander wiring stays thin.
 */
import type {
  AgentEvent,
  AgentSnapshot,
  BuildProgress,
  DiskImage,
  DiskListing,
  DoctorReport,
  FlakeSnapshot,
  Notice,
  SharedDir,
  StoreImageProgress,
  VmExit,
  VmSnapshot,
  VmSpec,
} from '../api/types.ts';
import { flakeSentence, formatBytes, formatElapsed } from '../api/describe.ts';
import type { LoginItemStatus } from '../host/launchd.ts';
import { shellWord } from '../host/shell.ts';
import { PLAIN, type Paint, visibleLength } from './color.ts';

/**
 * Characters a terminal acts on instead of showing: C0 controls (ESC starts sequences that set
 * the title or move the cursor), DEL, C1 controls (U+009B is a one-byte CSI), and the invisible
 * format characters that reorder or hide text (bidi overrides, zero-width ones).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;
const UNSAFE_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  if (c === '\n') return '\\n';
  if (c === '\t') return '\\t';
  if (c === '\r') return '\\r';
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * A VM name (or any one-line value) as the CLI prints it: what a terminal would act on (ESC, a
 * newline, a bidi override) is shown as an escape (`\x1b`, `\n`, `\u202e`), so a hostile name
 * can neither retitle the terminal nor fake a line of output. Every place a name is printed uses it.
 */
export function visibleName(s: string): string {
  return s.replace(UNSAFE, escapeChar);
}

/** Select Graphic Rendition (colours, bold): the one escape sequence our own output uses. */
const SGR = /^\x1b\[[0-9;]*m/;

/**
 * Text printed as lines (the last net under every line the CLI writes): the same escapes as
 * visibleName, but newlines stay line breaks and colour sequences (SGR: they can only recolour,
 * never move the cursor or retitle the terminal) stay colours. Names inside it were made visible
 * by visibleName already, which shows their escapes whole.
 */
export function visibleText(s: string): string {
  return s.replace(UNSAFE_BUT_NEWLINE, (c, offset: number, all: string) =>
    c === '\x1b' && SGR.test(all.slice(offset)) ? c : escapeChar(c),
  );
}

/** A VM name inside a command the CLI suggests: quoted as a shell word, so pasting it runs nothing else. */
export function commandName(s: string): string {
  return shellWord(s);
}

/** "512 MiB", "2 GiB", "1.5 GiB". */
export function formatMemory(mib: number): string {
  if (mib < 1024) return `${mib} MiB`;
  const gib = mib / 1024;
  return `${Number.isInteger(gib) ? gib : Number(gib.toFixed(1))} GiB`;
}

/** A share's source: its host path, or the word it resolves from when it is not resolved yet. */
export function shareSource(s: SharedDir): string {
  if (s.source) return s.source;
  const w = s.word;
  if (!w) return '?';
  const rel = (x: { rel: string }) => (x.rel ? `/${x.rel}` : '');
  if (w.word === 'SHARED_DIR') {
    const fb = 'path' in w.fallback ? w.fallback.path : `$${w.fallback.word}${rel(w.fallback)}`;
    return `\${SHARED_DIR:-${fb}}`;
  }
  return `$${w.word}${rel(w)}`;
}

/** "Nix store image /…/x.img: 340 MiB, 340 MiB on disk, read-only": one image, its path, apparent and allocated size. */
export function formatDiskImage(d: DiskImage): string {
  const what = d.role === 'nix-store' ? 'Nix store image' : 'writable store';
  return `${what} ${d.path}: ${formatBytes(d.apparentBytes)}, ${formatBytes(d.allocatedBytes)} on disk${d.readOnly ? ', read-only' : ''}`;
}

/** "building the store image: 12 MiB of 340 MiB". */
export function formatStoreImageProgress(p: StoreImageProgress): string {
  if (p.phase !== 'building the store image') return p.phase;
  return `${p.phase}: ${formatBytes(p.bytesWritten)}${p.bytesExpected !== null ? ` of ${formatBytes(p.bytesExpected)}` : ''} written`;
}

/** `nixvm disk ls`: every image in the state dir. */
export function formatDiskList(disks: DiskListing[]): string {
  if (disks.length === 0) return 'No disk images in the state dir.';
  const rows = disks.map((d) => [
    d.role,
    d.vms.length ? d.vms.map(visibleName).join(',') : '-',
    formatBytes(d.apparentBytes),
    formatBytes(d.allocatedBytes),
    d.orphan ? (d.role === 'writable-store' ? 'no flake defines this VM' : 'no VM uses it') : '',
    d.path,
  ]);
  return renderTable(['ROLE', 'VM', 'SIZE', 'ON DISK', 'NOTE', 'PATH'], rows);
}

/** The ls warnings for VMs that share one MAC (each pair once). */
export function macWarnings(vms: readonly VmSnapshot[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const vm of vms) {
    const others = (vm.macShared ?? []).filter((o) => !seen.has(o));
    seen.add(vm.name);
    if (others.length === 0) continue;
    out.push(
      `warning: ${[vm.name, ...others].map(visibleName).join(', ')} have the same MAC address ${vm.mac ?? '?'}: only one of them can run at a time (give one another virtualisation.macAddress).`,
    );
  }
  return out;
}

/** The address a user would connect to: IPv4 when the lease is known, else the link-local IPv6. */
export function preferredAddress(vm: Pick<VmSnapshot, 'ipv4' | 'ipv6'>): string | null {
  return vm.ipv4 ?? vm.ipv6 ?? null;
}

/** "/nix/store/abc…-nixos-system-dev.drv" → "nixos-system-dev.drv"; anything else unchanged. */
export function storeName(p: string): string {
  const m = /^\/nix\/store\/[0-9a-z]{32}-(.+)$/.exec(p);
  return m?.[1] ?? p;
}

/** "3s", "4m 10s", "2h 5m", "3d 4h". */
export const formatDuration = formatElapsed;

function ago(at: number, now: number): string {
  return `${formatDuration(now - at)} ago`;
}

/** Cut a single-line string to `max` characters, marking the cut. */
export function truncate(s: string, max: number): string {
  if (max <= 0) return '';
  if (s.length <= max) return s;
  if (max === 1) return '…';
  return `${s.slice(0, max - 1)}…`;
}

function firstLine(s: string): string {
  return s.split('\n', 1)[0] ?? '';
}

/**
 * A plain text table: columns padded to their widest cell, two spaces apart, no trailing blanks.
 * With `width`, only the last column is cut to fit (names and states are never cut: they are
 * what a user copies).
 */
export function renderTable(headers: string[], rows: string[][], width?: number): string {
  const all = [headers, ...rows];
  const n = headers.length;
  const widths: number[] = [];
  for (let c = 0; c < n; c++) widths.push(Math.max(...all.map((r) => (r[c] ?? '').length)));
  const lines = all.map((r) => {
    let line = '';
    for (let c = 0; c < n; c++) {
      const cell = r[c] ?? '';
      if (c === n - 1) {
        const room = width !== undefined ? width - line.length : Infinity;
        line += cell.length > room ? truncate(cell, Math.max(room, 8)) : cell;
      } else {
        line += `${cell.padEnd(widths[c] ?? 0)}  `;
      }
    }
    return line.trimEnd();
  });
  return lines.join('\n');
}

/**
 * Lines of at most `width` columns, broken between words (a word longer than the line stays
 * whole); continuation lines start with `indent`. No width: the text as it is.
 */
export function wrap(text: string, width: number | undefined, indent = '  '): string[] {
  if (width === undefined || visibleLength(text) <= width) return [text];
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const candidate = line === '' ? word : `${line} ${word}`;
    if (line !== '' && visibleLength(candidate) > width) {
      out.push(line);
      line = `${indent}${word}`;
    } else line = candidate;
  }
  if (line !== '') out.push(line);
  return out;
}

/** An address cut to `max` characters in the middle, keeping its zone (`fe80::f425:e2ff…%bridge100`). */
export function elideAddress(addr: string, max: number): string {
  // An IPv4 address is short and useless cut; an IPv6 one keeps its start and its zone.
  if (addr.length <= max || !addr.includes(':')) return addr;
  const zone = addr.includes('%') ? addr.slice(addr.indexOf('%')) : '';
  const keep = max - zone.length - 1;
  if (keep < 4) return truncate(addr, max);
  return `${addr.slice(0, keep)}…${zone}`;
}

export interface Column {
  header: string;
  /** May be elided to fit the width (addresses); others are never cut. */
  elide?: (cell: string, max: number) => string;
}

/**
 * A table laid out for `width` columns: cells padded to their column, two spaces apart; the
 * last column (notes) moves under its row, wrapped, when the row would not fit; then elidable
 * columns give up what is still missing. `style(row, col, text)` colours a cell after layout.
 */
export function layoutTable(
  columns: Column[],
  rows: string[][],
  width: number | undefined,
  style: (row: number, col: number, text: string) => string = (_r, _c, t) => t,
  opts: { lastBelow?: boolean } = {},
): string[] {
  let cols = columns.length;
  const widthOf = (n: number, cells: string[][]): number[] =>
    Array.from({ length: n }, (_, c) =>
      Math.max(...[columns[c]!.header, ...cells.map((r) => r[c] ?? '')].map((x) => x.length)),
    );
  const total = (ws: number[]): number => ws.reduce((a, b) => a + b, 0) + 2 * (ws.length - 1);
  let cells = rows.map((r) => [...r]);
  let widths = widthOf(cols, cells);
  let below = false;
  if (opts.lastBelow && width !== undefined && total(widths) > width) {
    below = true;
    cols -= 1;
    widths = widthOf(cols, cells);
  }
  if (width !== undefined && total(widths) > width) {
    for (let c = 0; c < cols; c++) {
      const elide = columns[c]!.elide;
      if (!elide) continue;
      const room = Math.max(columns[c]!.header.length, 18, widths[c]! - (total(widths) - width));
      cells = cells.map((r) => r.map((x, i) => (i === c ? elide(x, room) : x)));
      widths = widthOf(cols, cells);
    }
  }
  const line = (r: number, row: string[]): string => {
    let out = '';
    for (let c = 0; c < cols; c++) {
      const text = row[c] ?? '';
      const pad = c === cols - 1 ? '' : ' '.repeat((widths[c] ?? 0) - text.length + 2);
      out += (r < 0 ? text : style(r, c, text)) + pad;
    }
    return out.trimEnd();
  };
  const out = [
    line(
      -1,
      columns.slice(0, cols).map((c) => c.header),
    ),
  ];
  cells.forEach((row, r) => {
    out.push(line(r, row));
    const note = below ? (rows[r]?.[columns.length - 1] ?? '') : '';
    if (note) {
      for (const l of wrap(note, width !== undefined ? width - 2 : undefined, '  ')) {
        out.push(`  ${style(r, columns.length - 1, l)}`);
      }
    }
  });
  return out;
}

/** The build progress as a short phrase: "42% (3/7 builds) nixos-system-dev.drv". */
export function formatProgressPhrase(p: BuildProgress): string {
  const parts = [`${Math.floor(p.percent)}%`];
  if (p.buildsExpected > 0) parts.push(`(${p.buildsDone}/${p.buildsExpected} builds)`);
  if (p.downloadsExpected > 0) parts.push(`(${p.downloadsDone}/${p.downloadsExpected} downloads)`);
  if (p.currentDrv) parts.push(storeName(p.currentDrv) + (p.phase ? ` ${p.phase}` : ''));
  else if (p.phase) parts.push(p.phase);
  if (p.remote) parts.push(`on ${remoteName(p.remote)}`);
  return parts.join(' ');
}

/** A builder's URI as a person reads it: `root@192.168.64.5`, without scheme and parameters. */
export function remoteName(uri: string): string {
  return uri.replace(/^[a-z-]+:\/\//, '').replace(/\?.*$/, '');
}

/** What the NOTE column says about a VM: the thing most worth knowing besides its state. */
function vmNote(vm: VmSnapshot): string {
  if (vm.build.status === 'building') {
    const p = vm.build.progress;
    if (p?.stage === 'evaluating') return 'building: nix is evaluating it';
    return p ? `building ${formatProgressPhrase(p)}` : 'building';
  }
  if (vm.disks?.preparing) return formatStoreImageProgress(vm.disks.preparing);
  if (vm.error) return firstLine(vm.error);
  if (vm.platform?.cannotRun) return `cannot run on this Mac: ${vm.platform.cannotRun}`;
  if (vm.build.status === 'failed') return `build failed: ${firstLine(vm.build.error ?? 'see `nixvm logs --build`')}`;
  if (vm.state === 'crashed' && vm.exit) return `crashed: ${formatExitReason(vm.exit)}`;
  // Known before anyone starts it: nothing here builds its system (or its builder is silent).
  if (vm.platform?.problem && !isReachable(vm)) return vm.platform.problem;
  if (vm.disks?.error) return firstLine(vm.disks.error);
  if (vm.disks?.notice) return firstLine(vm.disks.notice);
  return '';
}

/** Has an address worth connecting to: the link-local one only answers while the VM runs. */
export function isReachable(vm: Pick<VmSnapshot, 'state'>): boolean {
  return vm.state === 'running' || vm.state === 'starting' || vm.state === 'stopping';
}

/** STALE: yes, no, or "never built" (nothing built or booted to compare the flake with). */
export function staleText(vm: VmSnapshot): string {
  if (vm.spec === null && vm.drvPath === null) return '-';
  if (vm.stale) return 'yes';
  return vm.builtDrvPath === null && vm.bootedDrvPath === null ? 'never built' : 'no';
}

export interface TableOptions {
  paint?: Paint;
  /** For "evaluating for 12s" (default: now). */
  now?: number;
}

/**
 * The `ls` output: the table (or, with no VMs, why there are none), then one line per flake that
 * is not simply fine (evaluating, failed, hidden configurations, warnings) and the agent's
 * problems. At `width` columns notes wrap under their row and addresses are elided in the middle.
 */
export function formatVmTable(snap: AgentSnapshot, width?: number, o: TableOptions = {}): string {
  const paint = o.paint ?? PLAIN;
  const now = o.now ?? Date.now();
  const out: string[] = [];
  if (snap.vms.length === 0) {
    if (snap.flakes.length === 0) {
      out.push(
        "No flake configured; add one with `nixvm flake add DIR` (or start the agent with `nixvm daemon --flake DIR`, or add one in NixVM's settings).",
      );
    } else {
      for (const f of snap.flakes) {
        out.push(...wrap(visibleName(flakeSentence(f, now, 0, commandName) ?? `${f.dir} defines no VMs.`), width));
      }
    }
  } else {
    const columns: Column[] = [
      { header: 'NAME' },
      { header: 'STATE' },
      { header: 'STALE' },
      { header: 'CPUS/MEM' },
      { header: 'IP', elide: elideAddress },
      { header: 'NOTE' },
    ];
    const rows = snap.vms.map((vm) => [
      visibleName(vm.name),
      vm.state,
      staleText(vm),
      vm.cpus !== null && vm.memoryMiB !== null ? `${vm.cpus}/${formatMemory(vm.memoryMiB)}` : '-',
      isReachable(vm) ? (preferredAddress(vm) ?? '-') : '-',
      visibleName(vmNote(vm)),
    ]);
    const anyNote = rows.some((r) => r[5] !== '');
    const used = anyNote ? columns : columns.slice(0, 5);
    const style = (r: number, c: number, text: string): string => {
      const vm = snap.vms[r]!;
      if (c === 1) return paint.state(vm.state, text);
      if (c === 2) return vm.stale ? paint.warn(text) : text;
      if (c === 5 && (vm.error || vm.build.status === 'failed' || vm.state === 'crashed')) return paint.bad(text);
      return text;
    };
    out.push(
      ...layoutTable(
        used,
        rows.map((r) => r.slice(0, used.length)),
        width,
        style,
        { lastBelow: anyNote },
      ),
    );
  }
  const lines: string[] = macWarnings(snap.vms).map((w) => paint.warn(visibleName(w)));
  for (const f of snap.flakes) {
    // With no VMs at all, the flake's own sentence above already said it.
    if (snap.vms.length > 0) {
      const sentence = flakeSentence(f, now, snap.vms.filter((v) => v.flake === f.dir).length, commandName);
      if (sentence) lines.push(f.error ? paint.bad(visibleName(sentence)) : visibleName(sentence));
    }
    for (const w of f.warnings) {
      lines.push(`flake ${visibleName(f.dir)}: ${paint.warn('warning:')} ${visibleName(firstLine(w))}`);
    }
  }
  for (const p of snap.agent.problems) lines.push(`agent: ${paint.bad(visibleName(p))}`);
  for (const l of lines) out.push(...wrap(l, width));
  return out.join('\n');
}

/** "exit code 1", "signal SIGKILL". */
export function formatExitReason(exit: VmExit): string {
  if (exit.signal) return `killed by ${exit.signal}`;
  return `exit code ${exit.code ?? '?'}`;
}

function describeState(vm: VmSnapshot, now: number): string {
  const bits: string[] = [];
  if (vm.pid !== null) bits.push(`pid ${vm.pid}`);
  if (vm.state === 'running' && vm.startedAt !== null) bits.push(`up ${formatDuration(now - vm.startedAt)}`);
  return bits.length ? `${vm.state} (${bits.join(', ')})` : vm.state;
}

/** The `status` block: everything a user asks about one VM, labelled, one fact per line. */
export function formatStatus(vm: VmSnapshot, now: number): string {
  const rows: [string, string][] = [];
  const add = (k: string, v: string | null | undefined): void => {
    if (v !== null && v !== undefined && v !== '') rows.push([k, v]);
  };
  add('state', describeState(vm, now));
  add('flake', vm.flake);
  add('error', vm.error);
  add(
    'stale',
    vm.stale
      ? 'yes: the flake changed since this closure was built or booted'
      : staleText(vm) === 'never built'
        ? 'never built (nothing to compare the flake with yet)'
        : 'no',
  );
  add('system', vm.spec?.system ?? null);
  add('builds on', platformWords(vm));
  add('cannot run', vm.platform?.cannotRun);
  add('current', vm.drvPath ?? '(not evaluated)');
  add('built', vm.builtOutPath ?? vm.builtDrvPath ?? '(never built)');
  add('booted', vm.bootedOutPath ?? vm.bootedDrvPath ?? (vm.state === 'stopped' ? '(not running)' : null));
  // Switched in place: the guest runs this closure on the booted kernel; its next boot starts it.
  add('switched to', vm.switchedOutPath ? `${vm.switchedOutPath} (in place; a restart boots it)` : null);
  add('apply', vm.applyPreview ? applyWords(vm.applyPreview) : null);
  add('last apply', vm.applied ? formatApplied(vm.applied, now) : null);
  if (vm.cpus !== null || vm.memoryMiB !== null) {
    add('resources', `${vm.cpus ?? '?'} cpus, ${vm.memoryMiB !== null ? formatMemory(vm.memoryMiB) : '?'} memory`);
  }
  add('mac', vm.mac);
  add('ipv4', vm.ipv4 ?? (vm.state === 'running' ? '(no DHCP lease yet)' : null));
  // The link-local address follows from the MAC, but nothing answers on it until the VM runs.
  add('ipv6', vm.ipv6 && !isReachable(vm) ? `${vm.ipv6} (reachable while it runs)` : vm.ipv6);
  add('ssh', vm.sshCommand);
  for (const s of vm.shares) add('share', `${shareSource(s)} → ${s.target} (tag ${s.tag})`);
  for (const d of vm.disks?.images ?? []) add('disk', formatDiskImage(d));
  if (vm.disks?.preparing) add('store image', formatStoreImageProgress(vm.disks.preparing));
  add('store image', vm.disks?.error);
  add('disk size', vm.disks?.notice);
  if (vm.macShared?.length) add('same mac as', vm.macShared.join(', '));
  add('console log', vm.consoleLog);
  add('build', formatBuild(vm, now));
  add('build error', vm.build.error);
  add('build log', vm.build.logPath);
  add('autostart', vm.autostart ? 'yes' : null);
  add('state dir', vm.stateDir);
  if (vm.exit) add('last exit', `${formatExitReason(vm.exit)}, ${ago(vm.exit.at, now)}`);

  const keyWidth = Math.max(...rows.map(([k]) => k.length)) + 1;
  const lines = [visibleName(vm.name)];
  for (const [k, v] of rows) {
    const [first = '', ...rest] = visibleText(v).split('\n');
    lines.push(`  ${(`${k}:`).padEnd(keyWidth)} ${first}`);
    for (const r of rest) lines.push(`  ${''.padEnd(keyWidth)} ${r}`);
  }
  if (vm.build.status === 'failed' && vm.build.detail) {
    lines.push('  build detail:');
    for (const l of vm.build.detail.trimEnd().split('\n')) lines.push(`    ${visibleName(l)}`);
  }
  if (vm.exit && vm.exit.lastLines.length > 0) {
    lines.push('  last console lines:');
    for (const l of vm.exit.lastLines) lines.push(`    ${visibleName(l)}`);
  }
  return lines.join('\n');
}

/** `builds on`: this machine, which builders, or what is missing. */
function platformWords(vm: VmSnapshot): string | null {
  const p = vm.platform;
  if (!p) return null;
  if (p.buildsOn === 'local') return 'this machine';
  if (p.buildsOn === 'builder') return `${p.builders.join(', ')}${p.problem ? ` (${p.problem})` : ''}`;
  return p.problem;
}

function formatBuild(vm: VmSnapshot, now: number): string {
  const b = vm.build;
  switch (b.status) {
    case 'idle':
      return 'idle';
    case 'building': {
      const phrase = b.progress ? ` ${formatProgressPhrase(b.progress)}` : '';
      const since = b.startedAt !== null ? `, started ${ago(b.startedAt, now)}` : '';
      return `building${phrase}${since}${b.again ? ', will build once more after' : ''}`;
    }
    default:
      return b.finishedAt !== null ? `${b.status} ${ago(b.finishedAt, now)}` : b.status;
  }
}

/** How long the VM's build has run, for progress lines ("12s"), or null before it started. */
export function buildElapsed(vm: VmSnapshot, now: number): string | null {
  return vm.build.startedAt !== null ? formatElapsed(now - vm.build.startedAt) : null;
}

/** One line of plain (non-TTY) progress for a VM's build; null when it is not building. */
export function formatProgressLine(vm: VmSnapshot, now?: number): string | null {
  if (vm.build.status !== 'building') return null;
  const p = vm.build.progress;
  const elapsed = now !== undefined ? buildElapsed(vm, now) : null;
  const took = elapsed ? `, ${elapsed}` : '';
  if (!p || p.stage === 'evaluating') return `${visibleName(vm.name)}: evaluating${elapsed ? ` (${elapsed})` : ''}`;
  const last = p.lastLine ? ` | ${visibleName(p.lastLine)}` : '';
  return `${visibleName(vm.name)}: building ${visibleName(formatProgressPhrase(p))}${took}${last}`;
}

/** The payload the TTY progress bar renders (cli-progress fills {bar} and {percentage} itself). */
export function progressPayload(
  vm: VmSnapshot,
  now?: number,
): { vm: string; builds: string; drv: string; line: string; elapsed: string; evaluating: boolean } {
  const p = vm.build.progress;
  return {
    vm: visibleName(vm.name),
    builds: p && p.buildsExpected > 0 ? `${p.buildsDone}/${p.buildsExpected} builds` : '',
    drv: visibleName(p?.currentDrv ? storeName(p.currentDrv) + (p.phase ? ` ${p.phase}` : '') : (p?.phase ?? '')),
    line: visibleName(p?.lastLine ?? ''),
    elapsed: now !== undefined ? (buildElapsed(vm, now) ?? '') : '',
    evaluating: vm.build.status === 'building' && (!p || p.stage === 'evaluating'),
  };
}

/** What `apply` would do to a running stale VM. */
function applyWords(p: NonNullable<VmSnapshot['applyPreview']>): string {
  return p.how === 'switch' ? 'switches it in place (no reboot)' : `restarts it: ${p.reasons.join('; ')}`;
}

/** What the last apply did, with its time. */
export function formatApplied(a: NonNullable<VmSnapshot['applied']>, now: number): string {
  const ago = `${formatDuration(Math.max(0, now - a.at))} ago`;
  switch (a.how) {
    case 'switching':
      return `switching now${a.lastLine ? `: ${visibleText(a.lastLine)}` : ''}`;
    case 'switch':
      return `switched in place to ${a.outPath} (${ago})`;
    case 'restart':
      return `restarted (${ago}): ${a.reasons.join('; ')}`;
    case 'failed':
      return `failed (${ago}): ${visibleText(a.error ?? 'the switch failed')}`;
  }
}

/** The sentence a command prints when it is done with a VM. */
export function formatOutcome(verb: string, vm: VmSnapshot): string {
  const addr = isReachable(vm) ? preferredAddress(vm) : null;
  // "stopped (stopped, …)" says nothing twice; "started (running, …)" does say something.
  const bits: string[] = vm.state === verb ? [] : [vm.state];
  if (addr) bits.push(addr);
  if (vm.stale) bits.push('stale');
  const name = visibleName(vm.name);
  return bits.length ? `${name}: ${verb} (${bits.join(', ')})` : `${name}: ${verb}`;
}

/** A failure of a build, in one sentence plus nix's own text. */
export function formatBuildFailure(vm: VmSnapshot): string[] {
  const out = [`${visibleName(vm.name)}: ${visibleText(vm.build.error ?? 'the build failed')}`];
  if (vm.build.detail)
    out.push(
      ...vm.build.detail
        .trimEnd()
        .split('\n')
        .map((l) => `  ${visibleName(l)}`),
    );
  if (vm.build.logPath) out.push(`  full log: ${visibleName(vm.build.logPath)}`);
  return out;
}

/**
 * What changed between two snapshots, as human lines for `watch`: state changes, staleness,
 * builds starting and ending, new addresses, errors. The first snapshot (prev null) lists each VM once.
 */
export function describeChanges(prev: AgentSnapshot | null, next: AgentSnapshot): string[] {
  const out: string[] = [];
  const before = new Map((prev?.vms ?? []).map((v) => [v.name, v]));
  for (const vm of next.vms) {
    const old = before.get(vm.name);
    before.delete(vm.name);
    const name = visibleName(vm.name);
    if (!old) {
      out.push(
        `${name}: ${vm.state}${vm.stale ? ', stale' : ''}${vm.error ? `: ${visibleName(firstLine(vm.error))}` : ''}`,
      );
      continue;
    }
    if (old.state !== vm.state) {
      const why = vm.state === 'crashed' && vm.exit ? ` (${formatExitReason(vm.exit)})` : '';
      out.push(`${name}: ${old.state} → ${vm.state}${why}`);
    }
    if (old.stale !== vm.stale) out.push(`${name}: ${vm.stale ? 'stale (the flake changed)' : 'up to date'}`);
    if (old.build.status !== vm.build.status) {
      if (vm.build.status === 'failed')
        out.push(`${name}: build failed: ${visibleName(firstLine(vm.build.error ?? ''))}`.trimEnd());
      else if (vm.build.status !== 'idle') out.push(`${name}: build ${vm.build.status}`);
    } else if (vm.build.status === 'building') {
      const a = old.build.progress ? Math.floor(old.build.progress.percent / 10) : -1;
      const b = vm.build.progress ? Math.floor(vm.build.progress.percent / 10) : -1;
      if (a !== b && vm.build.progress)
        out.push(`${name}: building ${visibleName(formatProgressPhrase(vm.build.progress))}`);
    }
    if (old.ipv4 !== vm.ipv4 && vm.ipv4) out.push(`${name}: ipv4 ${vm.ipv4}`);
    if (old.ipv6 !== vm.ipv6 && vm.ipv6) out.push(`${name}: ipv6 ${vm.ipv6}`);
    if (old.error !== vm.error && vm.error) out.push(`${name}: error: ${visibleName(firstLine(vm.error))}`);
  }
  for (const gone of before.keys()) out.push(`${visibleName(gone)}: removed from the flake`);
  const oldFlakes = new Map((prev?.flakes ?? []).map((f) => [f.dir, f]));
  for (const f of next.flakes) {
    const o = oldFlakes.get(f.dir);
    if (f.error && f.error !== o?.error) out.push(`flake ${f.dir}: error: ${firstLine(f.error)}`);
    if (!f.error && o?.error) out.push(`flake ${f.dir}: evaluates again`);
  }
  return out;
}

/** Human lines for one event of `watch` (snapshots are diffed against the previous one). */
export function formatEvent(ev: AgentEvent, prev: AgentSnapshot | null): string[] {
  switch (ev.type) {
    case 'snapshot':
      return describeChanges(prev, ev.snapshot);
    case 'log':
      return ev.lines.map((l) => `[${visibleName(ev.vm)} ${ev.kind}] ${visibleName(l)}`);
    case 'notice':
      return [formatNotice(ev.notice)];
  }
}

/** A notice in one line, names and all made visible ("error: web: web crashed — …"). */
export function formatNotice(n: Notice): string {
  const who = n.vm ? `${visibleName(n.vm)}: ` : '';
  return `${n.level === 'error' ? 'error' : 'notice'}: ${who}${visibleName(n.title)}${n.body ? ` — ${visibleName(n.body)}` : ''}`;
}

/** An argv as a pasteable shell command line, one argument group per line. */
export function formatArgv(argv: string[]): string {
  const quote = (words: string[]): string => words.map(shellWord).join(' ');
  const out: string[] = [];
  let cur: string[] = [];
  for (const a of argv) {
    // Start a new line at each flag so `--device …` pairs read one per line.
    if (a.startsWith('-') && cur.length > 0) {
      out.push(quote(cur));
      cur = [];
    }
    cur.push(a);
  }
  if (cur.length) out.push(quote(cur));
  return out.join(' \\\n  ');
}

/** The human form of `inspect`: the spec's facts, then the exact vfkit command. */
export function formatInspect(name: string, spec: VmSpec | null, argv: string[]): string {
  const lines: string[] = [];
  const shown = visibleName(name);
  if (spec) {
    lines.push(`${shown} (${spec.system ?? 'unknown system'}) from ${visibleName(spec.flake)}`);
    lines.push(`  toplevel drv:  ${spec.drvPath}`);
    lines.push(`  cpus/memory:   ${spec.cpus} / ${formatMemory(spec.memoryMiB)}`);
    lines.push(`  mac:           ${spec.macAddress ?? '(generated)'}`);
    lines.push(`  rosetta:       ${spec.rosetta ? 'yes' : 'no'}`);
    lines.push(
      `  graphics:      ${spec.graphics ? (spec.resolution ? `${spec.resolution.width}x${spec.resolution.height}` : 'yes') : 'no'}`,
    );
    lines.push(`  host store:    ${spec.mountHostNixStore ? 'mounted' : 'not mounted'}`);
    if (spec.storeImage) lines.push('  store image:   yes (erofs, read-only nvme)');
    if (spec.writableStore) {
      lines.push(
        `  writable store: image of ${formatMemory(spec.writableStore.sizeMiB)}${spec.writableStore.device ? ` (${spec.writableStore.device})` : ''}`,
      );
    }
    if (spec.hostCerts) lines.push('  host certs:    yes ($TMPDIR/certs)');
    lines.push(`  ssh:           ${spec.ssh.enabled ? `user ${spec.ssh.user}, port ${spec.ssh.port}` : 'disabled'}`);
    for (const s of spec.shares) lines.push(`  share:         ${shareSource(s)} → ${s.target} (tag ${s.tag})`);
    lines.push(`  kernel params: ${spec.kernelParams.join(' ')}`);
  } else {
    lines.push(`${shown}: no spec (its configuration does not evaluate)`);
  }
  lines.push('', 'vfkit command:', argv.length ? formatArgv(argv) : '(none: the VM cannot be composed)');
  return lines.join('\n');
}

/** `login-item status` in a line (plus launchd's problem, if any). */
export function formatLoginItem(s: LoginItemStatus): string {
  const lines: string[] = [];
  if (!s.installed) {
    lines.push(`Login item: off${s.loaded ? ` (launchd still has ${s.label} loaded)` : ''}.`);
  } else {
    const svc = s.service;
    const state = !s.loaded
      ? 'not loaded in launchd (it starts at next login)'
      : svc?.pid
        ? `running (pid ${svc.pid})`
        : `loaded${svc?.state ? `, ${svc.state}` : ''}${svc?.lastExitCode !== null && svc?.lastExitCode !== undefined ? `, last exit ${svc.lastExitCode}` : ''}`;
    lines.push(`Login item: on, ${state}; ${s.plistPath}.`);
  }
  if (s.problem) lines.push(s.problem);
  return lines.join('\n');
}

/** "14:03:07", local time: what `watch` prints before each line. */
export function timeOfDay(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** The fields of `b` that differ from `a` (compared as JSON), or null when none do. */
function changedFields<T extends object>(a: T, b: T): Partial<T> | null {
  const out: Partial<T> = {};
  let any = false;
  for (const k of Object.keys(b) as (keyof T)[]) {
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) {
      out[k] = b[k];
      any = true;
    }
  }
  return any ? out : null;
}

export interface SnapshotChange {
  /** Changed fields per VM (a new VM comes whole, under `added`). */
  vms?: Record<string, Partial<VmSnapshot>>;
  added?: VmSnapshot[];
  removed?: string[];
  /** Changed fields per flake, by directory (a new flake comes whole). */
  flakes?: Record<string, Partial<FlakeSnapshot>>;
  flakesRemoved?: string[];
  agent?: Partial<AgentSnapshot['agent']>;
  settings?: AgentSnapshot['settings'];
}

/**
 * What `watch --json` sends for a snapshot after the first: only what changed, so a build's
 * progress is a few hundred bytes a tick, not the whole state. Null when nothing did.
 */
export function snapshotChanges(prev: AgentSnapshot, next: AgentSnapshot): SnapshotChange | null {
  const out: SnapshotChange = {};
  const before = new Map(prev.vms.map((v) => [v.name, v]));
  for (const vm of next.vms) {
    const old = before.get(vm.name);
    before.delete(vm.name);
    if (!old) (out.added ??= []).push(vm);
    else {
      const d = changedFields(old, vm);
      // Keyed by VM name: prototype-free, so a VM called `__proto__` is a key like any other.
      if (d) (out.vms ??= Object.create(null) as Record<string, typeof d>)[vm.name] = d;
    }
  }
  if (before.size) out.removed = [...before.keys()];
  const flakes = new Map(prev.flakes.map((f) => [f.dir, f]));
  for (const f of next.flakes) {
    const old = flakes.get(f.dir);
    flakes.delete(f.dir);
    const d = old ? changedFields(old, f) : f;
    if (d) (out.flakes ??= {})[f.dir] = d;
  }
  if (flakes.size) out.flakesRemoved = [...flakes.keys()];
  const agent = changedFields(prev.agent, next.agent);
  if (agent) out.agent = agent;
  if (JSON.stringify(prev.settings) !== JSON.stringify(next.settings)) out.settings = next.settings;
  return Object.keys(out).length ? out : null;
}

const DOCTOR_MARK = { ok: 'ok', warn: 'warn', fail: 'FAIL', skip: 'skip' } as const;

/** `nixvm doctor`: one line per check, what to do under each one that is not ok. */
export function formatDoctor(report: DoctorReport, width?: number, paint: Paint = PLAIN): string {
  const titleWidth = Math.max(...report.checks.map((c) => c.title.length));
  const lines: string[] = [];
  for (const c of report.checks) {
    const mark = DOCTOR_MARK[c.status].padEnd(4);
    const colored =
      c.status === 'ok'
        ? paint.good(mark)
        : c.status === 'warn'
          ? paint.warn(mark)
          : c.status === 'fail'
            ? paint.bad(mark)
            : paint.dim(mark);
    const indent = ' '.repeat(4 + 2 + titleWidth + 2);
    lines.push(...wrap(`${colored}  ${c.title.padEnd(titleWidth)}  ${c.summary}`, width, indent));
    if (c.status === 'ok' || c.status === 'skip') continue;
    if (c.fix) lines.push(...wrap(`${indent}fix: ${c.fix}`, width, `${indent}     `));
    for (const d of c.details) lines.push(...wrap(`${indent}${d}`, width, `${indent}  `));
  }
  const fails = report.checks.filter((c) => c.status === 'fail').length;
  const warns = report.checks.filter((c) => c.status === 'warn').length;
  lines.push(
    fails
      ? `${fails} problem${fails === 1 ? '' : 's'} to fix before nixvm can run VMs${warns ? `, ${warns} warning${warns === 1 ? '' : 's'}` : ''}.`
      : warns
        ? `Nothing blocks nixvm; ${warns} warning${warns === 1 ? '' : 's'}.`
        : 'Everything nixvm needs is in place.',
  );
  return lines.join('\n');
}
