/**
 * The systemd units of the closure that the fake guest runs itself, as a NixOS guest would. A
 * closure carries them where NixOS writes them, `<toplevel>/etc/systemd/system/<name>.service`
 * (and `.socket`), a service's script in the file its `ExecStart=` names:
 *
 * - `copy-builder-keys.service` (nixpkgs' profiles/nix-builder-vz-vm.nix): once /var/keys is
 *   mounted, at boot and only then, its script copies every `*.pub` there into /run/builder-keys,
 *   where that profile's sshd reads its AuthorizedKeysFile. The simulator reads the script's two
 *   directories (`for key in <source>/*.pub` and `install … "$key" <dest>/`), copies from the host
 *   directory behind the share mounted at the source into a directory of the run standing for
 *   the destination, and hands that to the guest's sshd. A key put in the share after boot is not
 *   copied: the unit ran once.
 * - `register-nix-paths.service` (vm-base.nix): `nix-store --load-db` of the `regInfo=<path>` on the
 *   kernel command line, if any. The simulator finds that file through the guest's mounts (the
 *   store image, a share) and reads it as `--load-db` does, and the console says what came of it.
 * - `<name>.socket` with `ListenStream=vsock::<port>` and `Accept=true`, whose `<name>@.service`
 *   runs `sshd -i` (vz-vm.nix's vzvm-ssh): sshd on that vsock port.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface Unit {
  /** copy-builder-keys.service */
  name: string;
  /** Description=, else the unit's name (what systemd's status lines say). */
  description: string;
  requires: string[];
  /** ExecStart= without its prefix characters (`-`, `@`, `+`, `!`, `:`). */
  execStart: string | null;
  /** The file ExecStart= runs, read; null when there is none. */
  script: string | null;
  /** Every key of every section, the last value of each. */
  keys: Map<string, string>;
}

/** `<toplevel>/etc/systemd/system/<file>`, parsed; null when the closure has no such unit. */
export function readUnit(toplevel: string, file: string): Unit | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(toplevel, 'etc', 'systemd', 'system', file), 'utf8');
  } catch {
    return null;
  }
  const keys = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) keys.set(m[1]!, m[2]!);
  }
  const execStart = keys.get('ExecStart')?.replace(/^[-@+!:]+/, '') || null;
  let script: string | null = null;
  const program = execStart?.split(/\s+/)[0];
  if (program) {
    try {
      script = fs.readFileSync(program, 'utf8');
    } catch {
      script = null;
    }
  }
  return {
    name: file,
    description: keys.get('Description') || file,
    requires: (keys.get('Requires') ?? '').split(/\s+/).filter(Boolean),
    execStart,
    script,
    keys,
  };
}

/** A mount unit's mount point: systemd's path escaping undone (`var-keys.mount` → /var/keys). */
export function mountUnitPath(unit: string): string | null {
  const m = /^(.*)\.mount$/.exec(unit);
  if (!m) return null;
  if (m[1] === '-') return '/';
  return `/${m[1]!.replace(/-/g, '/').replace(/\\x([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))}`;
}

/** What copy-builder-keys' script copies: `for <v> in <source>/*.pub` into `install … "$<v>" <dest>/`. */
export interface KeyStaging {
  source: string;
  dest: string;
}

export function parseKeyStaging(script: string): KeyStaging | null {
  const loop = /^\s*for\s+([A-Za-z_]\w*)\s+in\s+(\/\S*?)\/\*\.pub\s*;\s*do\s*$/m.exec(script);
  if (!loop) return null;
  const install = new RegExp(String.raw`^\s*install\s[^\n]*"\$${loop[1]}"\s+(\/\S*?)\/?\s*$`, 'm').exec(script);
  if (!install) return null;
  return { source: loop[2]!, dest: install[1]! };
}

export interface StagedKeys {
  /** Console lines (systemd's status line, and which keys were copied). */
  lines: string[];
  /** The guest directory the keys went to and the host directory standing for it; null when the unit failed before making it. */
  staged: { guest: string; host: string } | null;
}

/**
 * Run copy-builder-keys at boot. `hostDirOf` maps a guest directory to the host directory behind
 * it (a virtio-fs share), or null (the guest's own tmpfs: nothing there); `mounted` says whether
 * a mount point is in the guest's fstab (null: the closure does not say); `runDir` is the run's
 * private directory, in which the destination is made.
 */
export function stageBuilderKeys(
  unit: Unit,
  hostDirOf: (guestDir: string) => string | null,
  mounted: ((mountPoint: string) => boolean) | null,
  runDir: string,
): StagedKeys {
  const failed = (why: string[]): StagedKeys => ({
    lines: [...why, `[FAILED] Failed to start ${unit.description}.`],
    staged: null,
  });
  for (const dep of unit.requires) {
    const at = mountUnitPath(dep);
    if (at !== null && mounted && !mounted(at)) {
      // A Requires= on a mount nothing defines: the unit never starts.
      return { lines: [`[DEPEND] Dependency failed for ${unit.description}.`], staged: null };
    }
  }
  const plan = unit.script === null ? null : parseKeyStaging(unit.script);
  if (!plan) {
    return failed([
      `nixvm-sim: ${unit.name}: the simulator does not know this script (it runs "for key in <dir>/*.pub … install … "$key" <dest>/")`,
    ]);
  }
  const dest = path.join(runDir, ...plan.dest.split('/').filter(Boolean));
  fs.mkdirSync(dest, { recursive: true, mode: 0o755 });
  const staged = { guest: plan.dest, host: dest };
  const source = hostDirOf(plan.source);
  const names = (() => {
    if (source === null) return [];
    try {
      // The shell's glob: no dot files, sorted.
      return fs
        .readdirSync(source)
        .filter((n) => n.endsWith('.pub') && !n.startsWith('.'))
        .sort();
    } catch {
      return [];
    }
  })();
  const copied: string[] = [];
  for (const n of names) {
    const file = path.join(source!, n);
    // `[ -e "$key" ]` follows a symlink as the guest would: a relative one inside the share, an
    // absolute one to a guest path.
    let target: string | null = file;
    const st = fs.lstatSync(file, { throwIfNoEntry: false });
    if (st?.isSymbolicLink()) {
      const link = fs.readlinkSync(file);
      target = path.isAbsolute(link)
        ? (() => {
            const dir = hostDirOf(path.posix.dirname(link));
            return dir === null ? null : path.join(dir, path.posix.basename(link));
          })()
        : path.resolve(source!, link);
    }
    const real = target === null ? undefined : fs.statSync(target, { throwIfNoEntry: false });
    if (!real) continue;
    if (real.isDirectory()) {
      // install(1) refuses a directory; the script runs under `set -e`.
      return {
        lines: [
          `install: omitting directory '${plan.source}/${n}'`,
          ...(copied.length ? [`copy-builder-keys: copied ${copied.join(', ')} to ${plan.dest} before that`] : []),
          `[FAILED] Failed to start ${unit.description}.`,
        ],
        staged,
      };
    }
    const out = path.join(dest, n);
    fs.rmSync(out, { force: true });
    fs.writeFileSync(out, fs.readFileSync(target!));
    fs.chmodSync(out, 0o444);
    copied.push(n);
  }
  return {
    lines: [
      copied.length
        ? `copy-builder-keys: copied ${copied.join(', ')} from ${plan.source} to ${plan.dest}`
        : `copy-builder-keys: no *.pub in ${plan.source}; nothing copied to ${plan.dest}`,
      `[  OK  ] Finished ${unit.description}.`,
    ],
    staged,
  };
}

/** Nix's parseStorePath, for the store at /nix/store (approximated texts). */
function storePathError(p: string): string | null {
  if (!p.startsWith('/nix/store/')) return `path '${p}' is not in the Nix store`;
  const base = p.slice('/nix/store/'.length);
  if (!/^[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]+$/.test(base) || base.slice(33).startsWith('.'))
    return `invalid store path '${p}'`;
  return null;
}

/** Hash::parseAny(s, sha256): base16, nix32 or base64, with or without `sha256:`, or SRI (approximated texts). */
function hashError(s: string): string | null {
  const m = /^(?:sha256[:-])?(.*)$/.exec(s)!;
  const h = m[1]!;
  const ok =
    (!s.startsWith('sha256-') && /^[0-9a-f]{64}$/.test(h)) ||
    (!s.startsWith('sha256-') && /^[0-9a-df-np-sv-z]{52}$/.test(h)) ||
    /^[A-Za-z0-9+/]{43}=$/.test(h);
  return ok ? null : `invalid SHA-256 hash '${s}'`;
}

/**
 * How many paths `nix-store --load-db` registers from this text, read as Nix's
 * decodeValidPathInfo reads it (libstore/store-api.cc): blocks of path, NAR hash, NAR size,
 * deriver (may be empty), reference count, references, each a line; the end is where a path line
 * meets the end of the input. Then registerValidPaths (local-store.cc) into a fresh database:
 * every reference must be one of the registered paths.
 */
export function readRegistration(text: string): { paths: number } | { error: string } {
  let pos = 0;
  let eof = false;
  let fail = false;
  // std::getline: up to '\n'; at the end, eofbit; nothing extracted, failbit.
  const getline = (): string => {
    if (eof) {
      fail = true;
      return '';
    }
    const nl = text.indexOf('\n', pos);
    if (nl < 0) {
      const s = text.slice(pos);
      pos = text.length;
      eof = true;
      if (s === '') fail = true;
      return s;
    }
    const s = text.slice(pos, nl);
    pos = nl + 1;
    return s;
  };
  const infos = new Map<string, string[]>();
  for (;;) {
    const p = getline();
    if (eof) break;
    const bad = storePathError(p);
    const hash = getline();
    const hashBad = hashError(hash);
    if (hashBad) return { error: hashBad };
    const size = getline();
    if (!/^\d+$/.test(size)) return { error: 'number expected' };
    if (bad) return { error: bad };
    const deriver = getline();
    if (deriver !== '') {
      const d = storePathError(deriver);
      if (d) return { error: d };
    }
    const count = getline();
    if (!/^\d+$/.test(count)) return { error: 'number expected' };
    const refs: string[] = [];
    for (let n = Number(count); n > 0; n--) {
      const r = getline();
      const e = storePathError(r);
      if (e) return { error: e };
      refs.push(r);
    }
    if (fail || eof) return { error: 'missing input' };
    infos.set(p, refs);
  }
  for (const refs of infos.values())
    for (const r of refs) if (!infos.has(r)) return { error: `path '${r}' is not valid` };
  return { paths: infos.size };
}

/**
 * Run register-nix-paths: its script's `[[ "$(cat /proc/cmdline)" =~ regInfo=([^ ]*) ]]`, then
 * `nix-store --load-db < <that path>`. `read` gives the guest's file (null: not there, and why).
 */
export function registerNixPaths(
  unit: Unit,
  cmdline: string,
  read: (guestPath: string) => { text: string } | { missing: string },
): string[] {
  const done = `[  OK  ] Finished ${unit.description}.`;
  const failed = `[FAILED] Failed to start ${unit.description}.`;
  const notRegistered = "the store's paths are not registered in the guest's Nix database";
  const m = /regInfo=([^ ]*)/.exec(cmdline);
  if (!m) return [`register-nix-paths: no regInfo= on the kernel command line; ${notRegistered}`, done];
  const file = m[1]!;
  const got = file === '' ? { missing: 'regInfo= names no file' } : read(file);
  if ('missing' in got) {
    return [
      `register-nix-paths: regInfo=${file}: no such file in the guest (${got.missing}); ${notRegistered}`,
      failed,
    ];
  }
  const r = readRegistration(got.text);
  if ('error' in r)
    return [`register-nix-paths: nix-store --load-db < ${file}: error: ${r.error}; ${notRegistered}`, failed];
  return [`register-nix-paths: registered ${r.paths} store path${r.paths === 1 ? '' : 's'} from ${file}`, done];
}

/**
 * The vsock ports socket units listen on for sshd: `ListenStream=vsock::<port>` (or
 * `vsock:<cid>:<port>`), `Accept=true`, and a `<name>@.service` whose ExecStart runs `sshd -i`.
 */
export function sshVsockPorts(toplevel: string): number[] {
  const dir = path.join(toplevel, 'etc', 'systemd', 'system');
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.socket'));
  } catch {
    return [];
  }
  const ports: number[] = [];
  for (const f of files) {
    const socket = readUnit(toplevel, f);
    const port = /^vsock:[^:]*:(\d+)$/.exec(socket?.keys.get('ListenStream') ?? '')?.[1];
    if (!socket || !port || !/^(true|yes|on|1)$/i.test(socket.keys.get('Accept') ?? '')) continue;
    const service = readUnit(toplevel, `${f.replace(/\.socket$/, '')}@.service`);
    if (service?.execStart && /(^|\/)sshd\s(.*\s)?-i(\s|$)/.test(service.execStart)) ports.push(Number(port));
  }
  return ports;
}
