/**
 * nixpkgs' darwin.linux-builder-vz as nixvm meets it, with the stand-in in test/fixtures/seed-exact
 * (nixpkgs/linux-builder-vz.nix): a flake taking that fixture as its `nixpkgs` input runs the
 * package's passthru nixosConfig as a nixosConfiguration, real nix evaluates and builds its
 * toplevel, and the vfkit simulator boots that closure as the real guest would: its
 * copy-builder-keys unit stages the keys share's *.pub once at boot where its sshd (a real OpenSSH
 * `sshd -i` over vsock) reads them, register-nix-paths reports what regInfo= registers, and the
 * writable store on /dev/vdb is formatted at first boot (autoFormat) or missing (emergency mode).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setErofsLabel } from '../../src/core/erofs-image.ts';
import { sshdReady } from '../helpers/builder-fixture.ts';
import { copyFixture, type FlakeCopy } from '../helpers/fixtures.ts';
import { settles, tail, waitFor } from '../helpers/wait.ts';
import { REPART_MAGIC } from '../vfkit-sim/guest-fs.ts';
import { restCall, simState, spawnSim, VFKIT_SIM, type SimProcess } from '../vfkit-sim/harness.ts';

const HOSTS = ['aarch64-darwin', 'x86_64-darwin', 'x86_64-linux', 'aarch64-linux'] as const;
// sshd -i runs as the user running the tests and can only log that user in.
const USER = os.userInfo().username;
const STAGED_SCRIPT = [
  'install -d -m 0755 -o root -g root /run/builder-keys',
  'for key in /var/keys/*.pub; do',
  '  [ -e "$key" ] || continue',
  '  install -m 0444 -o root -g root "$key" /run/builder-keys/',
  'done',
  '',
].join('\n');

let fixture: FlakeCopy;
let wrapper: string;
let root: string;
/** The stand-in's toplevel, built. */
let toplevel: string;
/** A unique knob, so that this run builds the toplevel itself. */
const RUN = `${process.pid}-${Date.now()}`;
const spawned: SimProcess[] = [];

const nixArgs = ['--extra-experimental-features', 'nix-command flakes'];
const nix = (args: string[]) => execa('nix', [...nixArgs, ...args], { reject: false, timeout: 300_000 });
const said = (r: { exitCode?: number; stdout: string; stderr: string }) =>
  `exit ${r.exitCode}\nstdout: ${tail(r.stdout, 2000)}\nstderr: ${tail(r.stderr, 3000)}`;

/** `nix eval --raw|--json <wrapper>#<attr>`, failing with nix's words. */
async function evalAttr(attr: string, opts: { json?: boolean; apply?: string } = {}): Promise<string> {
  const r = await nix([
    'eval',
    '--no-write-lock-file',
    opts.json ? '--json' : '--raw',
    `${wrapper}#${attr}`,
    ...(opts.apply ? ['--apply', opts.apply] : []),
  ]);
  expect(r.exitCode, `nix eval ${attr}:\n${said(r)}`).toBe(0);
  return r.stdout;
}

let building: Promise<{ drvPath: string; out: string }> | null = null;
/** The stand-in's toplevel, built once (by whichever test asks first). */
function buildToplevel(): Promise<{ drvPath: string; out: string }> {
  building ??= (async () => {
    const built = await nix([
      'build',
      '--no-link',
      '--json',
      '--no-write-lock-file',
      `${wrapper}#nixosConfigurations.linux-builder.config.system.build.toplevel`,
    ]);
    if (built.exitCode !== 0) throw new Error(`nix build of the toplevel failed:\n${said(built)}`);
    const r = (JSON.parse(built.stdout) as Array<{ drvPath: string; outputs: { out: string } }>)[0]!;
    toplevel = r.outputs.out;
    return { drvPath: r.drvPath, out: r.outputs.out };
  })();
  return building;
}

function setKnobs(knobs: string): void {
  fixture.write('nixpkgs/test-knobs.nix', `${knobs}\n`);
}

beforeAll(async () => {
  sshdReady();
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-vz-')));
  fixture = await copyFixture('seed-exact');
  setKnobs(`{ run = "${RUN}"; }`);
  // The flake a user writes: the package set as its nixpkgs, the builder's config as a VM.
  wrapper = path.join(root, 'flake');
  fs.mkdirSync(wrapper);
  fs.writeFileSync(
    path.join(wrapper, 'flake.nix'),
    [
      '{',
      `  inputs.nixpkgs.url = "path:${fixture.dir}";`,
      '  outputs = { self, nixpkgs }: {',
      '    nixosConfigurations = {',
      '      linux-builder = { config = nixpkgs.legacyPackages.aarch64-darwin.darwin.linux-builder-vz.nixosConfig; };',
      ...HOSTS.map(
        (h) => `      "on-${h}" = { config = nixpkgs.legacyPackages.${h}.darwin.linux-builder-vz.nixosConfig; };`,
      ),
      '    };',
      '  };',
      '}',
      '',
    ].join('\n'),
  );
}, 120_000);

afterAll(() => {
  for (const s of spawned) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  if (root) fs.rmSync(root, { recursive: true, force: true });
  fixture?.remove();
});

describe('the darwin.linux-builder-vz stand-in, through a flake that takes it as nixpkgs', () => {
  it('evaluates to the vz guest’s values on every host, and its toplevel builds', async () => {
    const facts = JSON.parse(
      await evalAttr('nixosConfigurations', {
        json: true,
        apply: `cs: builtins.mapAttrs (n: c: let cfg = c.config; v = cfg.virtualisation; s = cfg.systemd.services; in {
          drvPath = cfg.system.build.toplevel.drvPath;
          buildSystem = cfg.system.build.toplevel.system;
          hostPlatform = cfg.nixpkgs.hostPlatform.system;
          kernelParams = cfg.boot.kernelParams;
          vz = v ? vz;
          hasVzOptions = [ (v ? useNixStoreImage) (v ? macAddress) (v ? graphics) ];
          vzValues = builtins.removeAttrs v.vz [ ];
          sizes = { inherit (v) cores memorySize diskSize writableStore writableStoreUseTmpfs useHostCerts; };
          shares = v.sharedDirectories;
          rosetta = v.rosetta;
          erofs = v.host.pkgs ? erofs-utils;
          hostPkgsSystem = v.host.pkgs.stdenv.hostPlatform.system;
          fileSystems = builtins.mapAttrs (mp: f: { inherit (f) device fsType; autoFormat = f.autoFormat or false; }) cfg.fileSystems;
          copyKeys = s ? copy-builder-keys;
          script = s.copy-builder-keys.script;
          registers = s ? register-nix-paths;
          vsockSocket = cfg.systemd.sockets.vzvm-ssh.socketConfig.ListenStream;
          ssh = { inherit (cfg.services.openssh) enable authorizedKeysFiles; };
          autologin = cfg.services.getty.autologinUser;
          builder = cfg.users.users.builder.isNormalUser;
          nix = cfg.nix.settings;
          hostName = cfg.networking.hostName;
          stateVersion = cfg.system.stateVersion;
          hostKey = builtins.readFile cfg.environment.etc."ssh/ssh_host_ed25519_key.pub".source;
        }) cs`,
      }),
    ) as Record<string, Record<string, unknown>>;
    const c = facts['linux-builder']!;
    expect(c).toMatchObject({
      buildSystem: 'x86_64-linux',
      hostPlatform: 'aarch64-linux',
      kernelParams: [],
      vz: true,
      hasVzOptions: [false, false, false],
      sizes: {
        cores: 1,
        memorySize: 3072,
        diskSize: 20480,
        writableStore: true,
        writableStoreUseTmpfs: false,
        useHostCerts: true,
      },
      shares: {
        keys: { source: '"$KEYS"', target: '/var/keys', tag: 'keys' },
        certs: { source: '$TMPDIR/certs', target: '/etc/ssl/certs', tag: 'certs' },
      },
      rosetta: { enable: true, mountTag: 'rosetta', mountPoint: '/run/rosetta' },
      erofs: true,
      hostPkgsSystem: 'aarch64-darwin',
      copyKeys: true,
      script: STAGED_SCRIPT,
      registers: true,
      vsockSocket: 'vsock::22',
      ssh: { enable: true, authorizedKeysFiles: ['/run/builder-keys/%u_ed25519.pub'] },
      autologin: 'builder',
      builder: true,
      nix: {
        'trusted-users': ['builder'],
        'min-free': 1073741824,
        'max-free': 3221225472,
        'system-features': ['nixos-test', 'benchmark', 'big-parallel', 'kvm'],
        'extra-platforms': ['x86_64-linux'],
      },
      hostName: 'nixos',
      stateVersion: '24.05',
      hostKey: fs.readFileSync(fixture.file('keys/ssh_host_ed25519_key.pub'), 'utf8'),
    });
    expect(Object.keys(c.shares as object).sort()).toEqual(['certs', 'keys']);
    expect(c.vzValues).toEqual({
      rosetta: { enable: true },
      nestedVirtualization: false,
      vsockSSH: { enable: true, port: 22 },
      diskImage: './nixos.qcow2',
      console: 'log',
      consoleLog: './console.log',
      forwardPorts: [{ host: { address: '127.0.0.1', port: 31022 }, guest: { port: 22 } }],
      extraConfig: {},
    });
    expect(c.fileSystems).toEqual({
      '/': { device: 'tmpfs', fsType: 'tmpfs', autoFormat: false },
      '/nix/.ro-store': { device: '/dev/disk/by-label/nix-store', fsType: 'erofs', autoFormat: false },
      '/nix/store': { device: 'overlay', fsType: 'overlay', autoFormat: false },
      '/nix/.rw-store': { device: '/dev/vdb', fsType: 'ext4', autoFormat: true },
      '/var/keys': { device: 'keys', fsType: 'virtiofs', autoFormat: false },
      '/etc/ssl/certs': { device: 'certs', fsType: 'virtiofs', autoFormat: false },
      '/run/rosetta': { device: 'rosetta', fsType: 'virtiofs', autoFormat: false },
    });
    // The host only picks the package set the runner uses: the guest is the same system.
    for (const h of HOSTS) {
      expect(facts[`on-${h}`]!.drvPath, h).toBe(c.drvPath);
      expect(facts[`on-${h}`]!.hostPkgsSystem, h).toBe(h);
    }

    // The package itself: the create-builder script, built for the host it is for.
    for (const h of HOSTS) {
      const r = await nix([
        'eval',
        '--json',
        `path:${fixture.dir}#legacyPackages.${h}.darwin.linux-builder-vz`,
        '--apply',
        'p: { inherit (p) name system type nixosOptions; main = p.meta.mainProgram; }',
      ]);
      expect(r.exitCode, said(r)).toBe(0);
      expect(JSON.parse(r.stdout), h).toEqual({
        name: 'create-builder',
        system: h,
        type: 'derivation',
        nixosOptions: {},
        main: 'create-builder',
      });
    }

    const built = await buildToplevel();
    expect(built.drvPath).toBe(c.drvPath);
    expect(path.basename(built.out)).toMatch(/^[0-9a-z]{32}-nixos-system-nixos-25\.05$/);
  }, 300_000);

  it('carries the units a NixOS closure would, under the names the guest reads', async () => {
    await buildToplevel();
    const unit = (f: string) => fs.readFileSync(path.join(toplevel, 'etc', 'systemd', 'system', f), 'utf8');
    const copy = unit('copy-builder-keys.service');
    expect(copy).toContain('Description=Stage builder SSH keys where sshd will accept them\n');
    expect(copy).toContain('Requires=var-keys.mount\n');
    expect(copy).toContain('After=var-keys.mount\n');
    expect(copy).toContain('Type=oneshot\n');
    expect(copy).toContain(`ExecStart=${toplevel}/unit-scripts/copy-builder-keys-start\n`);
    expect(fs.readFileSync(path.join(toplevel, 'unit-scripts', 'copy-builder-keys-start'), 'utf8')).toBe(
      `#!/run/current-system/sw/bin/bash\nset -e\n${STAGED_SCRIPT}`,
    );
    const reg = unit('register-nix-paths.service');
    expect(reg).toContain('DefaultDependencies=false\n');
    expect(reg).toContain('After=local-fs.target\n');
    expect(reg).toContain(`ExecStart=${toplevel}/unit-scripts/register-nix-paths-start\n`);
    expect(fs.readFileSync(path.join(toplevel, 'unit-scripts', 'register-nix-paths-start'), 'utf8')).toContain(
      '--load-db < "${BASH_REMATCH[1]}"',
    );
    expect(unit('vzvm-ssh.socket')).toContain('ListenStream=vsock::22\n');
    expect(unit('vzvm-ssh@.service')).toContain(
      'ExecStart=-/run/current-system/sw/bin/sshd -i -f /etc/ssh/sshd_config\n',
    );
    expect(unit('vzvm-ssh@.service')).toContain('Requires=copy-builder-keys.service\n');
    const fstab = fs.readFileSync(path.join(toplevel, 'etc', 'fstab'), 'utf8');
    expect(fstab).toContain('/dev/vdb /nix/.rw-store ext4 x-systemd.makefs,x-initrd.mount 0 0\n');
    expect(fstab).toContain('keys /var/keys virtiofs defaults 0 0\n');
    expect(fs.readFileSync(path.join(toplevel, 'etc', 'ssh', 'sshd_config'), 'utf8')).toMatch(
      /^AuthorizedKeysFile .*\/run\/builder-keys\/%u_ed25519\.pub$/m,
    );
    expect(fs.readFileSync(path.join(toplevel, 'etc', 'ssh', 'ssh_host_ed25519_key'), 'utf8')).toBe(
      fs.readFileSync(fixture.file('keys/ssh_host_ed25519_key'), 'utf8'),
    );
  });

  it('takes nixvmTest knobs from nixpkgs/test-knobs.nix, and enforces vz’s host assertion when told', async () => {
    try {
      setKnobs(`{ system = "riscv64-linux"; run = "${RUN}"; }`);
      expect(await evalAttr('nixosConfigurations.linux-builder.config.system.build.toplevel.system')).toBe(
        'riscv64-linux',
      );
      expect(await evalAttr('nixosConfigurations.linux-builder.config.nixvmTest.run')).toBe(RUN);
      setKnobs(`{ enforceAssertions = true; run = "${RUN}"; }`);
      expect(await evalAttr('nixosConfigurations.on-aarch64-darwin.config.system.build.toplevel.drvPath')).toMatch(
        /^\/nix\/store\/[0-9a-z]{32}-nixos-system-nixos-25\.05\.drv$/,
      );
      const r = await nix([
        'eval',
        '--no-write-lock-file',
        '--raw',
        `${wrapper}#nixosConfigurations.on-x86_64-darwin.config.system.build.toplevel.drvPath`,
      ]);
      expect(r.exitCode, said(r)).not.toBe(0);
      expect(r.stderr).toContain('Failed assertions:');
      expect(r.stderr).toContain('virtualisation.vz only runs on aarch64-darwin hosts');
    } finally {
      setKnobs(`{ run = "${RUN}"; }`);
    }
  }, 120_000);

  it("leaves the seed's own VMs without units", async () => {
    for (const vm of ['minimal-vm', 'builder-vm']) {
      const r = await nix([
        'eval',
        '--json',
        `path:${fixture.dir}#nixosConfigurations.${vm}.config.system.build.toplevel.drvAttrs`,
        '--apply',
        'a: { attrs = builtins.filter (n: builtins.substring 0 4 n == "unit") (builtins.attrNames a); script = builtins.elemAt a.args 1; }',
      ]);
      expect(r.exitCode, said(r)).toBe(0);
      const { attrs, script } = JSON.parse(r.stdout) as { attrs: string[]; script: string };
      expect(attrs, vm).toEqual([]);
      expect(script, vm).not.toContain('unit-scripts');
    }
  });
});

// ─── the simulator boots the closure ─────────────────────────────────────────────────────────

const MIB = 1024 * 1024;
let seq = 0;

/** A key pair for ssh, in a directory of its own. */
function keyPair(name: string): { priv: string; pub: string } {
  const dir = path.join(root, `key-${name}`);
  fs.mkdirSync(dir, { recursive: true });
  const priv = path.join(dir, 'id_ed25519');
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@test`, '-f', priv]);
  if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
  return { priv, pub: fs.readFileSync(`${priv}.pub`, 'utf8') };
}

/** Store copies are read-only: make a copy's directories writable, so it can be changed and removed. */
function makeWritable(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isDirectory()) fs.chmodSync(path.join(e.parentPath, e.name), 0o755);
  fs.chmodSync(dir, 0o755);
}

/** An erofs image labelled nix-store holding `paths` (store paths) at its root, as a store image does. */
function storeImage(paths: string[]): string {
  const n = ++seq;
  const staging = path.join(root, `staging-${n}`);
  fs.mkdirSync(staging);
  for (const p of paths)
    fs.cpSync(p, path.join(staging, path.basename(p)), { recursive: true, verbatimSymlinks: true });
  makeWritable(staging);
  const img = path.join(root, `store-${n}.img`);
  const r = spawnSync('mkfs.erofs', [img, staging], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mkfs.erofs: ${r.stderr}`);
  setErofsLabel(img, 'nix-store');
  return img;
}

/** A sparse, blank writable store disk. */
function blankDisk(): string {
  const f = path.join(root, `writable-${++seq}.img`);
  fs.writeFileSync(f, '');
  fs.truncateSync(f, 64 * MIB);
  return f;
}

/** `toplevel` copied (same name) without the files named (under etc/systemd/system unless a path): a closure without that service. */
function closureWithout(units: string[]): string {
  const dir = path.join(root, `closure-${++seq}`, path.basename(toplevel));
  fs.cpSync(toplevel, dir, { recursive: true, verbatimSymlinks: true });
  makeWritable(dir);
  for (const u of units) fs.rmSync(u.includes('/') ? path.join(dir, u) : path.join(dir, 'etc', 'systemd', 'system', u));
  return dir;
}

interface Boot {
  p: SimProcess;
  console: () => string;
  rest: string;
  sock: string;
  keys: string;
  /** What failed, for assertion messages. */
  why: () => string;
}

/**
 * The simulator booting `closure` as vfkit would run the builder: the store image and the
 * writable disk (virtio-blk unless said), the keys and certs shares, Rosetta, vsock 22; the
 * console in a log file.
 */
function boot(o: {
  closure?: string;
  disks: Array<{ path: string; readOnly?: boolean; bus?: 'virtio-blk' | 'nvme' }>;
  /** Files in the keys share before it boots: name → content. */
  keys?: Record<string, string>;
  regInfo?: string;
}): Boot {
  const n = ++seq;
  const dir = path.join(root, `vm${n}`);
  fs.mkdirSync(dir);
  const keys = path.join(dir, 'keys');
  fs.mkdirSync(keys);
  for (const [name, content] of Object.entries(o.keys ?? {})) fs.writeFileSync(path.join(keys, name), content);
  const certs = path.join(dir, 'certs');
  fs.mkdirSync(certs);
  const top = o.closure ?? toplevel;
  const log = path.join(dir, 'console.log');
  const rest = path.join(dir, 'rest.sock');
  const sock = path.join(dir, 'ssh.sock');
  const cmdline = ['console=hvc0', `init=${top}/init`, ...(o.regInfo ? [`regInfo=${o.regInfo}`] : [])].join(' ');
  const argv = [
    VFKIT_SIM,
    '--cpus',
    '1',
    '--memory',
    '3072',
    '--bootloader',
    `linux,kernel=${top}/kernel,initrd=${top}/initrd,cmdline="${cmdline}"`,
    '--device',
    'virtio-net,nat,mac=02:04:00:0b:00:01',
    '--device',
    `virtio-serial,logFilePath=${log}`,
    '--device',
    'virtio-rng',
    ...o.disks.flatMap((d) => ['--device', `${d.bus ?? 'virtio-blk'},path=${d.path}${d.readOnly ? ',readonly' : ''}`]),
    '--device',
    `virtio-fs,sharedDir=${keys},mountTag=keys`,
    '--device',
    `virtio-fs,sharedDir=${certs},mountTag=certs`,
    '--device',
    'rosetta,mountTag=rosetta',
    '--device',
    `virtio-vsock,port=22,socketURL=${sock},connect`,
    '--restful-uri',
    `unix://${rest}`,
    '--pidfile',
    path.join(dir, 'vfkit.pid'),
  ];
  const p = spawnSim(argv, { NIXVM_SIM_BOOT_MS: '200' });
  spawned.push(p);
  const consoleText = () => fs.readFileSync(log, { encoding: 'utf8', flag: 'a+' });
  return {
    p,
    console: consoleText,
    rest,
    sock,
    keys,
    why: () => `The console:\n${tail(consoleText())}\nThe simulator:\n${tail(p.output())}`,
  };
}

/** Waits for the console to show `text`, failing with the console if the simulator exits first. */
function shows(b: Boot, text: string): Promise<boolean> {
  return waitFor(() => b.console().includes(text), { what: `"${text}" on the console`, process: b.p, detail: b.why });
}

async function stop(b: Boot): Promise<void> {
  if (b.p.child.exitCode === null) await restCall(b.rest, 'POST', '/vm/state', '{"state":"HardStop"}').catch(() => {});
  await settles(b.p.exited, { what: `${b.p.name} to exit`, detail: b.why });
}

/** A vsock route for ssh: a ProxyCommand joining its stdio to the socket vfkit exposes. */
function proxyScript(): string {
  const f = path.join(root, 'vsock-proxy.mjs');
  if (!fs.existsSync(f)) {
    fs.writeFileSync(
      f,
      [
        "import net from 'node:net';",
        'const s = net.connect(process.argv[2]);',
        'process.stdin.pipe(s);',
        's.pipe(process.stdout);',
        "s.on('error', (e) => { process.stderr.write(`proxy: ${e.message}\\n`); process.exit(1); });",
        "s.on('close', () => process.exit(0));",
        '',
      ].join('\n'),
    );
  }
  return f;
}

/** Real ssh to the guest's sshd over vsock, as USER with `key`, pinning the closure's fixed host key. */
async function ssh(b: Boot, key: string, command: string) {
  const knownHosts = path.join(root, 'known_hosts');
  const [type, body] = fs.readFileSync(fixture.file('keys/ssh_host_ed25519_key.pub'), 'utf8').split(' ');
  fs.writeFileSync(knownHosts, `nixvm-linux-builder ${type} ${body}\n`);
  const env = { ...process.env };
  delete env.SSH_AUTH_SOCK;
  return execa(
    'ssh',
    [
      '-F',
      '/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      `IdentityFile=${key}`,
      '-o',
      'PasswordAuthentication=no',
      '-o',
      'KbdInteractiveAuthentication=no',
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'HostKeyAlias=nixvm-linux-builder',
      '-o',
      `ProxyCommand=${process.execPath} ${proxyScript()} ${b.sock}`,
      '-l',
      USER,
      'nixvm-linux-builder',
      command,
    ],
    { env, reject: false, timeout: 60_000, stdin: 'ignore' },
  );
}

describe('the simulator boots the stand-in’s closure as the vz guest', () => {
  beforeAll(() => buildToplevel(), 300_000);

  it('stages the keys share’s *.pub at boot: ssh works with a staged key, and a key put there after boot is not seen', async () => {
    const a = keyPair('a');
    const b = keyPair('b');
    const vm = boot({
      disks: [{ path: storeImage([toplevel]), readOnly: true }, { path: blankDisk() }],
      keys: { [`${USER}_ed25519.pub`]: a.pub, README: 'not a key\n' },
    });
    try {
      await shows(vm, 'nixos login:');
      expect(vm.console(), vm.why()).toContain(
        `copy-builder-keys: copied ${USER}_ed25519.pub from /var/keys to /run/builder-keys`,
      );
      expect(vm.console()).toContain('[  OK  ] Finished Stage builder SSH keys where sshd will accept them.');
      const ok = await ssh(vm, a.priv, 'echo staged-key-ok');
      expect(ok.exitCode, `ssh with the staged key:\n${said(ok)}\n${vm.why()}`).toBe(0);
      expect(ok.stdout.trim()).toBe('staged-key-ok');

      // The share changes after boot: the unit ran once, so the guest still has the old copy.
      fs.writeFileSync(path.join(vm.keys, `${USER}_ed25519.pub`), b.pub);
      const late = await ssh(vm, b.priv, 'echo should-not-run');
      expect(late.exitCode, `ssh with a key put in the share after boot:\n${said(late)}`).toBe(255);
      expect(late.stderr).toContain('Permission denied (publickey)');
      const still = await ssh(vm, a.priv, 'echo still-ok');
      expect(still.exitCode, `ssh with the key staged at boot, after the share changed:\n${said(still)}`).toBe(0);
    } finally {
      await stop(vm);
    }
  }, 120_000);

  it('refuses a key that is not in the share, or not named for the user there', async () => {
    const a = keyPair('c');
    const elsewhere = path.join(root, 'not-the-share');
    fs.mkdirSync(elsewhere, { recursive: true });
    fs.writeFileSync(path.join(elsewhere, `${USER}_ed25519.pub`), a.pub);
    const vm = boot({
      disks: [{ path: storeImage([toplevel]), readOnly: true }, { path: blankDisk() }],
      keys: { 'someone-else_ed25519.pub': a.pub },
    });
    try {
      await shows(vm, 'nixos login:');
      expect(vm.console(), vm.why()).toContain(
        'copy-builder-keys: copied someone-else_ed25519.pub from /var/keys to /run/builder-keys',
      );
      const r = await ssh(vm, a.priv, 'echo should-not-run');
      expect(r.exitCode, `ssh with a key the guest has only under another user's name:\n${said(r)}`).toBe(255);
      expect(r.stderr).toContain('Permission denied (publickey)');
    } finally {
      await stop(vm);
    }
  }, 120_000);

  it('without copy-builder-keys, /run/builder-keys is empty: the key in the share is refused', async () => {
    const a = keyPair('d');
    const closure = closureWithout(['copy-builder-keys.service']);
    const vm = boot({
      closure,
      disks: [{ path: storeImage([toplevel]), readOnly: true }, { path: blankDisk() }],
      keys: { [`${USER}_ed25519.pub`]: a.pub },
    });
    try {
      await shows(vm, 'nixos login:');
      expect(vm.console(), vm.why()).not.toContain('copy-builder-keys');
      const r = await ssh(vm, a.priv, 'echo should-not-run');
      expect(r.exitCode, `ssh to a guest that stages no keys:\n${said(r)}\n${vm.why()}`).toBe(255);
      expect(r.stderr).toContain('Permission denied (publickey)');
    } finally {
      await stop(vm);
    }
  }, 120_000);

  it('serves sshd on vsock through vz’s vzvm-ssh socket, without systemd-ssh-generator too; with neither, nothing answers', async () => {
    const a = keyPair('e');
    const generator = 'etc/systemd/system-generators/systemd-ssh-generator';
    const socketOnly = boot({
      closure: closureWithout([generator]),
      disks: [{ path: storeImage([toplevel]), readOnly: true }, { path: blankDisk() }],
      keys: { [`${USER}_ed25519.pub`]: a.pub },
    });
    try {
      await shows(socketOnly, 'nixos login:');
      const r = await ssh(socketOnly, a.priv, 'echo via-vzvm-ssh');
      expect(r.exitCode, `ssh over vzvm-ssh.socket alone:\n${said(r)}\n${socketOnly.why()}`).toBe(0);
      expect(r.stdout.trim()).toBe('via-vzvm-ssh');
    } finally {
      await stop(socketOnly);
    }
    const neither = boot({
      closure: closureWithout([generator, 'vzvm-ssh.socket']),
      disks: [{ path: storeImage([toplevel]), readOnly: true }, { path: blankDisk() }],
      keys: { [`${USER}_ed25519.pub`]: a.pub },
    });
    try {
      await shows(neither, 'nixos login:');
      const r = await ssh(neither, a.priv, 'echo should-not-run');
      expect(r.exitCode, `ssh to a guest with no sshd on vsock:\n${said(r)}`).toBe(255);
      expect(r.stderr).not.toContain('Permission denied');
    } finally {
      await stop(neither);
    }
  }, 120_000);

  it('register-nix-paths: counts what regInfo= registers from the store image, or says why nothing is', async () => {
    // The registration as nixpkgs' closureInfo (and nixvm) makes it, in a store path of its own.
    const closure = (await execa('nix-store', ['--query', '--requisites', toplevel])).stdout.trim().split('\n');
    const info = path.join(root, `closure-info-${RUN}`);
    fs.mkdirSync(info);
    // Its last line ends in a newline, which --load-db needs (without it: "missing input").
    const dump = await execa('nix-store', ['--dump-db', ...closure], { stripFinalNewline: false });
    fs.writeFileSync(path.join(info, 'registration'), dump.stdout);
    fs.writeFileSync(path.join(info, 'store-paths'), `${closure.join('\n')}\n`);
    const ci = (await execa('nix-store', ['--add', info])).stdout.trim();
    const reg = `${ci}/registration`;
    const image = storeImage([...closure, ci]);
    const writable = blankDisk();

    const registered = boot({ disks: [{ path: image, readOnly: true }, { path: writable }], regInfo: reg });
    try {
      await shows(registered, 'nixos login:');
      const text = registered.console();
      expect(text, registered.why()).toContain(
        `register-nix-paths: registered ${closure.length} store paths from ${reg}`,
      );
      expect(text).toContain('[  OK  ] Finished register-nix-paths.service.');
      // After local-fs.target, before sysinit.target.
      expect(text.indexOf('register-nix-paths:')).toBeGreaterThan(text.indexOf('Reached target Local File Systems.'));
      expect(text.indexOf('register-nix-paths:')).toBeLessThan(text.indexOf('Reached target System Initialization.'));
    } finally {
      await stop(registered);
    }

    const none = boot({ disks: [{ path: image, readOnly: true }, { path: writable }] });
    try {
      await shows(none, 'nixos login:');
      expect(none.console(), none.why()).toContain(
        "register-nix-paths: no regInfo= on the kernel command line; the store's paths are not registered in the guest's Nix database",
      );
    } finally {
      await stop(none);
    }

    // An image made without the closure-info: the path is on this host, but not in the guest.
    const bare = storeImage([toplevel]);
    const missing = boot({ disks: [{ path: bare, readOnly: true }, { path: writable }], regInfo: reg });
    try {
      await shows(missing, 'nixos login:');
      const text = missing.console();
      expect(text, missing.why()).toContain(
        `register-nix-paths: regInfo=${reg}: no such file in the guest (the store image ${bare} has no /${path.basename(ci)}/registration)`,
      );
      expect(text).toContain('[FAILED] Failed to start register-nix-paths.service.');
    } finally {
      await stop(missing);
    }
  }, 180_000);

  it('formats a blank /dev/vdb at first boot (autoFormat) and keeps it at the next', async () => {
    const image = storeImage([toplevel]);
    const writable = blankDisk();
    const first = boot({ disks: [{ path: image, readOnly: true }, { path: writable }] });
    try {
      await shows(first, 'nixos login:');
      const text = first.console();
      expect(text, first.why()).toContain('systemd-makefs: formatting /dev/vdb as ext4...');
      expect(text).toContain('[  OK  ] Finished Make File System on /dev/vdb.');
      expect(text).toContain('mounting /dev/vdb on /nix/.rw-store...');
      expect(text).toContain('mounting /dev/vda (nix-store, erofs) on /nix/.ro-store...');
      expect(text).not.toContain('emergency mode');
    } finally {
      await stop(first);
    }
    const head = fs.readFileSync(writable).subarray(0, 512).toString('utf8');
    // makefs' header: the file system's type, no label.
    expect(head.slice(0, 60), `the start of the writable disk after its first boot`).toBe(
      `${REPART_MAGIC}label=\nformat=ext4\n`.padEnd(60, '\0'),
    );
    // What the guest would have written there since.
    const marker = Buffer.from(`nixvm marker ${RUN}\n`);
    const fd = fs.openSync(writable, 'r+');
    fs.writeSync(fd, marker, 0, marker.length, 8 * MIB);
    fs.closeSync(fd);

    const again = boot({ disks: [{ path: image, readOnly: true }, { path: writable }] });
    try {
      await shows(again, 'nixos login:');
      const text = again.console();
      expect(text, again.why()).toContain(
        "systemd-makefs: '/dev/vdb' is not empty (contains file system of type ext4), exiting.",
      );
      expect(text).not.toContain('formatting /dev/vdb');
      expect(text).toContain('mounting /dev/vdb on /nix/.rw-store...');
    } finally {
      await stop(again);
    }
    const after = fs.readFileSync(writable);
    expect(after.subarray(0, 512).toString('utf8')).toBe(head);
    expect(after.subarray(8 * MIB, 8 * MIB + marker.length).equals(marker), 'the marker after the second boot').toBe(
      true,
    );
  }, 120_000);

  it('without a second virtio-blk disk there is no /dev/vdb: emergency mode, and the disk that is there is left alone', async () => {
    // The store image on nvme: the writable disk is the first virtio-blk disk, /dev/vda.
    const writable = blankDisk();
    const vm = boot({ disks: [{ path: storeImage([toplevel]), readOnly: true, bus: 'nvme' }, { path: writable }] });
    try {
      await shows(vm, 'You are in emergency mode.');
      const text = vm.console();
      expect(text, vm.why()).toContain('[ TIME ] Timed out waiting for device /dev/vdb.');
      expect(text).toContain('[DEPEND] Dependency failed for Local File Systems.');
      expect(text).not.toContain('systemd-makefs');
      expect(await simState(vm.rest)).toBe('VirtualMachineStateStarting');
      // Well past when a good boot would be at its login prompt: still not up.
      await new Promise((r) => setTimeout(r, 800));
      expect(await simState(vm.rest)).toBe('VirtualMachineStateStarting');
      expect(vm.console()).not.toContain('login:');
    } finally {
      await stop(vm);
    }
    expect(
      fs
        .readFileSync(writable)
        .subarray(0, 4096)
        .every((b) => b === 0),
      'the writable disk is still blank',
    ).toBe(true);
  }, 120_000);

  it('the store image where /dev/vdb should be: makefs leaves it, ext4 does not mount, emergency mode', async () => {
    const image = storeImage([toplevel]);
    const before = fs.readFileSync(image);
    const vm = boot({ disks: [{ path: blankDisk() }, { path: image, readOnly: true }] });
    try {
      await shows(vm, 'You are in emergency mode.');
      const text = vm.console();
      expect(text, vm.why()).toContain('mounting /dev/vdb (nix-store, erofs) on /nix/.ro-store...');
      expect(text).toContain("systemd-makefs: '/dev/vdb' is not empty (contains file system of type erofs), exiting.");
      expect(text).toContain('[FAILED] Failed to mount /nix/.rw-store.');
    } finally {
      await stop(vm);
    }
    expect(fs.readFileSync(image).equals(before), 'the store image is untouched').toBe(true);
  }, 120_000);
});
