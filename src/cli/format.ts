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
  FlakeSnapshot,
  Notice,
  SharedDir,
  StoreImageProgress,
  VmExit,
  VmSnapshot,
  VmSpec,
} from '../api/types.ts';
import type { LoginItemStatus } from '../host/launchd.ts';
import { shellWord } from '../host/shell.ts';

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

/** Text from the agent printed as lines: the same escapes, but newlines stay line breaks. */
export function visibleText(s: string): string {
  return s.replace(UNSAFE_BUT_NEWLINE, escapeChar);
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

/** "0 B", "812 KiB", "1.5 GiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 || v >= 100 || Number.isInteger(v) ? Math.round(v) : Number(v.toFixed(1))} ${units[i]}`;
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

/** "nix-store 8 KiB (8 KiB used), read-only" for one image. */
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
    d.vms.length ? d.vms.join(',') : '-',
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
      `warning: ${[vm.name, ...others].join(', ')} have the same MAC address ${vm.mac ?? '?'}: only one of them can run at a time (give one another virtualisation.macAddress).`,
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
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

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

/** The build progress as a short phrase: "42% (3/7 builds) nixos-system-dev.drv". */
export function formatProgressPhrase(p: BuildProgress): string {
  const parts = [`${Math.floor(p.percent)}%`];
  if (p.buildsExpected > 0) parts.push(`(${p.buildsDone}/${p.buildsExpected} builds)`);
  if (p.downloadsExpected > 0) parts.push(`(${p.downloadsDone}/${p.downloadsExpected} downloads)`);
  if (p.currentDrv) parts.push(storeName(p.currentDrv) + (p.phase ? ` ${p.phase}` : ''));
  else if (p.phase) parts.push(p.phase);
  return parts.join(' ');
}

/** What the NOTE column says about a VM: the thing most worth knowing besides its state. */
function vmNote(vm: VmSnapshot): string {
  if (vm.build.status === 'building') {
    return vm.build.progress ? `building ${formatProgressPhrase(vm.build.progress)}` : 'building';
  }
  if (vm.disks?.preparing) return formatStoreImageProgress(vm.disks.preparing);
  if (vm.error) return firstLine(vm.error);
  if (vm.build.status === 'failed') return `build failed: ${firstLine(vm.build.error ?? 'see `nixvm logs --build`')}`;
  if (vm.state === 'crashed' && vm.exit) return `crashed: ${formatExitReason(vm.exit)}`;
  if (vm.disks?.error) return firstLine(vm.disks.error);
  if (vm.disks?.notice) return firstLine(vm.disks.notice);
  return '';
}

/** The `ls` table, followed by one line per flake error or warning. */
export function formatVmTable(snap: AgentSnapshot, width?: number): string {
  const out: string[] = [];
  if (snap.vms.length === 0) {
    out.push(
      snap.flakes.length === 0
        ? "No flake configured; start the agent with `nixvm daemon --flake DIR` or add one in NixVM's settings."
        : `No VMs: ${snap.flakes.map((f) => f.dir).join(', ')} define${snap.flakes.length === 1 ? 's' : ''} no nixosConfigurations.`,
    );
  } else {
    const anyNote = snap.vms.some((vm) => vmNote(vm) !== '');
    const headers = ['NAME', 'STATE', 'STALE', 'CPUS/MEM', 'IP'];
    if (anyNote) headers.push('NOTE');
    const rows = snap.vms.map((vm) => {
      const row = [
        visibleName(vm.name),
        vm.state,
        vm.stale ? 'yes' : 'no',
        vm.cpus !== null && vm.memoryMiB !== null ? `${vm.cpus}/${formatMemory(vm.memoryMiB)}` : '-',
        preferredAddress(vm) ?? '-',
      ];
      if (anyNote) row.push(visibleName(vmNote(vm)));
      return row;
    });
    // Only the NOTE column may be cut to the width; names and addresses are what users copy.
    out.push(renderTable(headers, rows, anyNote ? width : undefined));
  }
  out.push(...macWarnings(snap.vms));
  out.push(...formatFlakeProblems(snap.flakes));
  for (const p of snap.agent.problems) out.push(`agent: ${visibleName(p)}`);
  return out.join('\n');
}

/** One line per flake-wide error or warning ("flake /dir: error: …"). */
export function formatFlakeProblems(flakes: FlakeSnapshot[]): string[] {
  const out: string[] = [];
  for (const f of flakes) {
    if (f.error) out.push(`flake ${visibleName(f.dir)}: error: ${visibleName(firstLine(f.error))}`);
    for (const w of f.warnings) out.push(`flake ${visibleName(f.dir)}: warning: ${visibleName(firstLine(w))}`);
  }
  return out;
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
  add('stale', vm.stale ? 'yes: the flake changed since this closure was built or booted' : 'no');
  add('current', vm.drvPath ?? '(not evaluated)');
  add('built', vm.builtOutPath ?? vm.builtDrvPath ?? '(never built)');
  add('booted', vm.bootedOutPath ?? vm.bootedDrvPath ?? (vm.state === 'stopped' ? '(not running)' : null));
  if (vm.cpus !== null || vm.memoryMiB !== null) {
    add('resources', `${vm.cpus ?? '?'} cpus, ${vm.memoryMiB !== null ? formatMemory(vm.memoryMiB) : '?'} memory`);
  }
  add('mac', vm.mac);
  add('ipv4', vm.ipv4 ?? (vm.state === 'running' ? '(no DHCP lease yet)' : null));
  add('ipv6', vm.ipv6);
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

/** One line of plain (non-TTY) progress for a VM's build; null when it is not building. */
export function formatProgressLine(vm: VmSnapshot): string | null {
  if (vm.build.status !== 'building') return null;
  const p = vm.build.progress;
  if (!p) return `${visibleName(vm.name)}: building`;
  const last = p.lastLine ? ` | ${visibleName(p.lastLine)}` : '';
  return `${visibleName(vm.name)}: building ${visibleName(formatProgressPhrase(p))}${last}`;
}

/** The payload the TTY progress bar renders (cli-progress fills {bar} and {percentage} itself). */
export function progressPayload(vm: VmSnapshot): { vm: string; builds: string; drv: string; line: string } {
  const p = vm.build.progress;
  return {
    vm: visibleName(vm.name),
    builds: p && p.buildsExpected > 0 ? `${p.buildsDone}/${p.buildsExpected} builds` : '',
    drv: visibleName(p?.currentDrv ? storeName(p.currentDrv) + (p.phase ? ` ${p.phase}` : '') : (p?.phase ?? '')),
    line: visibleName(p?.lastLine ?? ''),
  };
}

/** The sentence a command prints when it is done with a VM. */
export function formatOutcome(verb: string, vm: VmSnapshot): string {
  const addr = preferredAddress(vm);
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
