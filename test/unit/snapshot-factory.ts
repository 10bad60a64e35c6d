/** Builders for contract-shaped snapshots, for the pure UI modules' unit tests. */
import type { AgentSnapshot, BuildInfo, FlakeSnapshot, Settings, VmSnapshot } from '../../src/api/types.ts';
import { defaultSettings } from '../../src/api/settings-schema.ts';

export function settings(over: Partial<Settings> = {}): Settings {
  return { ...defaultSettings(), flakes: ['/Users/me/vms'], autoRebuild: 'build', ...over };
}

/** A flake that evaluated fine, with `over` on top. */
export function flake(over: Partial<FlakeSnapshot> & { dir: string }): FlakeSnapshot {
  return {
    evaluating: false,
    error: null,
    warnings: [],
    lastEvalAt: 1,
    state: over.error ? 'failed' : over.evaluating ? 'evaluating' : 'ok',
    evaluatingSince: null,
    errorKind: null,
    source: 'settings',
    hidden: [],
    ...over,
  };
}

export function idleBuild(over: Partial<BuildInfo> = {}): BuildInfo {
  return {
    status: 'idle',
    progress: null,
    error: null,
    detail: null,
    logPath: null,
    again: false,
    startedAt: null,
    finishedAt: null,
    ...over,
  };
}

export function buildingBuild(
  percent: number,
  currentDrv = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web.drv',
): BuildInfo {
  return idleBuild({
    status: 'building',
    startedAt: 1,
    logPath: '/state/web/build.log',
    progress: {
      buildsDone: 1,
      buildsExpected: 4,
      buildsRunning: 1,
      downloadsDone: 0,
      downloadsExpected: 0,
      bytesDone: 0,
      bytesExpected: 0,
      currentDrv,
      phase: 'buildPhase',
      lastLine: 'compiling…',
      percent,
    },
  });
}

export function vm(over: Partial<VmSnapshot> & { name?: string } = {}): VmSnapshot {
  const name = over.name ?? 'web';
  return {
    name,
    flake: '/Users/me/vms',
    spec: {
      name,
      flake: '/Users/me/vms',
      drvPath: `/nix/store/x-${name}.drv`,
      system: 'aarch64-linux',
      kernelParams: [],
      cpus: 2,
      memoryMiB: 2048,
      macAddress: null,
      rosetta: true,
      shares: [],
      graphics: false,
      resolution: null,
      mountHostNixStore: true,
      ssh: { enabled: true, port: 22, user: 'alice' },
    },
    state: 'stopped',
    stale: false,
    drvPath: `/nix/store/x-${name}.drv`,
    builtDrvPath: null,
    builtOutPath: null,
    bootedDrvPath: null,
    bootedOutPath: null,
    cpus: 2,
    memoryMiB: 2048,
    mac: '5a:94:ef:e4:0c:ee',
    ipv6: null,
    ipv4: null,
    shares: [],
    error: null,
    build: idleBuild(),
    pid: null,
    startedAt: null,
    exit: null,
    sshCommand: null,
    autostart: false,
    consoleLog: null,
    stateDir: `/state/${name}`,
    ...over,
  };
}

export function snapshot(vms: VmSnapshot[], over: Partial<AgentSnapshot> = {}): AgentSnapshot {
  return {
    agent: {
      pid: 1,
      startedAt: 0,
      version: '0.1.0',
      nix: '/usr/bin/nix',
      vfkit: { path: '/opt/homebrew/bin/vfkit', version: 'v0.6.4' },
      problems: [],
      sshConfig: { path: '/state/ssh_config', includeLine: 'Include /state/ssh_config', status: 'not-included' },
    },
    flakes: [flake({ dir: '/Users/me/vms' })],
    vms,
    settings: settings(),
    ...over,
  };
}
