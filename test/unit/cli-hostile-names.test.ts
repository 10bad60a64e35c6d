/**
 * VM names (and agent text) a terminal would act on, through everything the CLI prints (issue 16,
 * Low): `ESC]0;…BEL` in a name retitled the terminal from `ls`, `status`, progress lines and
 * notices; a `$(…)` in a name ran when a suggested command (`nixvm logs <name> --build`) was pasted.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AgentError } from '../../src/api/errors.ts';
import { main, type CliIo } from '../../src/cli/app.ts';
import {
  formatEvent,
  formatOutcome,
  formatProgressLine,
  formatStatus,
  formatVmTable,
  progressPayload,
  snapshotChanges,
  visibleName,
} from '../../src/cli/format.ts';
import { createProgressView } from '../../src/cli/progress.ts';
import { FakePort, agentSnapshot, buildInfo, collect, vmSnapshot } from '../helpers/fake-port.ts';

const TITLE = 'evil\u001b]0;you have been pwned\u0007';
const CSI = 'c1\u009b2J';
const BIDI = 'abc\u202egnp.exe';
const SUBST = 'a$(touch pwned)b';
const NOW = 1_700_000_000_000;

/** What a terminal would act on. */
const ACTIVE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

function hostileSnapshot() {
  return agentSnapshot(
    [TITLE, CSI, BIDI, SUBST].map((name) =>
      vmSnapshot({
        name,
        state: 'running',
        ipv4: '192.168.64.7',
        error: `VM "${name}" crashed: the console's last line was "\u001b[2J"`,
        build: buildInfo({
          status: 'building',
          progress: {
            buildsDone: 1,
            buildsExpected: 3,
            buildsRunning: 1,
            downloadsDone: 0,
            downloadsExpected: 0,
            bytesDone: 0,
            bytesExpected: 0,
            currentDrv: '/nix/store/cccccccccccccccccccccccccccccccc-x\u001b]2;t\u0007.drv',
            phase: 'buildPhase',
            lastLine: 'make: \u001b]0;title\u0007',
            percent: 40,
          },
        }),
      }),
    ),
    { agent: { ...agentSnapshot([]).agent, problems: [`a problem naming ${TITLE}`] } },
  );
}

async function run(argv: string[], port: FakePort, extra: Partial<CliIo> = {}) {
  const stdout = collect();
  const stderr = collect();
  const code = await main(argv, {
    stdout,
    stderr,
    env: {},
    cwd: '/',
    now: () => NOW,
    connect: async () => port,
    defaultSocketPath: async () => '/state/control.sock',
    exec: async () => 0,
    signal: new AbortController().signal,
    ...extra,
  });
  return { code, out: stdout.text(), err: stderr.text() };
}

describe('names a terminal would act on', () => {
  it('are shown with visible escapes in every formatter', () => {
    const snap = hostileSnapshot();
    const texts = [
      formatVmTable(snap, 200),
      ...snap.vms.map((v) => formatStatus(v, NOW)),
      ...snap.vms.map((v) => formatProgressLine(v) ?? ''),
      ...snap.vms.map((v) => Object.values(progressPayload(v)).join(' ')),
      ...snap.vms.map((v) => formatOutcome('started', v)),
      ...formatEvent(
        { type: 'notice', notice: { level: 'error', title: `${TITLE} crashed`, body: CSI, vm: TITLE } },
        null,
      ),
      ...formatEvent({ type: 'log', vm: TITLE, kind: 'console', lines: ['\u001b]0;x\u0007'] }, null),
      ...formatEvent({ type: 'snapshot', snapshot: snap }, null),
    ];
    for (const t of texts) expect(t, JSON.stringify(t)).not.toMatch(ACTIVE);
    expect(formatVmTable(snap, 200)).toContain('evil\\x1b]0;you have been pwned\\x07');
    expect(visibleName(BIDI)).toBe('abc\\u202egnp.exe');
    expect(visibleName(CSI)).toBe('c1\\x9b2J');
    // Names a terminal shows as they are stay as they are.
    expect(visibleName('café 🙂 web-1')).toBe('café 🙂 web-1');
  });

  it('reach the terminal escaped from ls, status, start and the errors the agent sends', async () => {
    const port = new FakePort(hostileSnapshot(), {
      start: (p, f) => ({ ...f.vm(p.vm), build: buildInfo({ status: 'idle' }) }),
      stop: (p) => {
        throw new AgentError('failed', `Could not stop VM "${p.vm}": \u001b]0;boom\u0007`);
      },
    });
    for (const argv of [['ls'], ['status', TITLE], ['start', TITLE], ['stop', TITLE], ['status', 'no\u001b[2Jsuch']]) {
      const r = await run(argv, port);
      expect(r.out + r.err, `${argv.join(' ')}: ${JSON.stringify(r.out + r.err)}`).not.toMatch(ACTIVE);
    }
  });
});

describe('names Object.prototype has', () => {
  it('are keys like any other in what `watch --json` sends as changes', () => {
    const prev = agentSnapshot(['__proto__', 'constructor'].map((name) => vmSnapshot({ name })));
    const next = agentSnapshot(
      ['__proto__', 'constructor'].map((name) => vmSnapshot({ name, state: 'starting' as const })),
    );
    const change = JSON.parse(JSON.stringify(snapshotChanges(prev, next))) as { vms: Record<string, unknown> };
    expect(Object.keys(change.vms).sort()).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(change.vms, '__proto__')?.value).toEqual({ state: 'starting' });
  });
});

describe('commands the CLI suggests', () => {
  it('quote the name, so pasting one runs nothing but nixvm', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-paste-'));
    try {
      const port = new FakePort(agentSnapshot([vmSnapshot({ name: SUBST })]), {
        build: (p, f) => {
          f.setVm({
            ...f.vm(p.vm),
            build: buildInfo({ status: 'failed', error: 'it failed', logPath: '/logs/b.log', finishedAt: NOW + 1 }),
          });
          throw new AgentError('failed', 'it failed');
        },
        ips: () => ({ ipv4: null, ipv6: null }),
      });
      const build = await run(['build', SUBST], port);
      const suggested = [...build.err.matchAll(/`(nixvm [^`]+)`/g)].map((m) => m[1]!);
      const ip = await run(['ip', SUBST], port);
      suggested.push(...[...ip.err.matchAll(/`(nixvm [^`]+)`/g)].map((m) => m[1]!));
      expect(suggested).toEqual([`nixvm logs 'a$(touch pwned)b' --build`, `nixvm start 'a$(touch pwned)b'`]);
      // Pasted into a shell, each is one nixvm command with the name as one argument.
      for (const cmd of suggested) {
        const args = execFileSync('sh', ['-c', `nixvm() { printf '%s\\n' "$@"; }; ${cmd}`], { cwd, encoding: 'utf8' });
        expect(args.split('\n')).toContain(SUBST);
      }
      expect(fs.existsSync(path.join(cwd, 'pwned'))).toBe(false);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
  /** An agent whose `builder use` is done at once and whose builder VM `vm` stands as `status` says. */
  const builderPort = (vm: string, status: 'waiting' | 'failed', note: string) => {
    const builders = {
      localSystems: ['aarch64-darwin'],
      machines: [],
      problems: [],
      vm,
      status,
      note,
      mode: 'agent' as const,
      machinesFile: '/state/machines',
    };
    const snap = agentSnapshot([vmSnapshot({ name: vm })]);
    return new FakePort(
      { ...snap, agent: { ...snap.agent, builders } },
      {
        builderUse: () => ({
          done: true,
          plan: { mode: 'agent', changes: [], system: null, userConfLine: null, snippet: null, inPlace: true },
          builders,
        }),
      },
    );
  };
  it('quote the builder VM in the command a builder that never got ready suggests', async () => {
    const port = builderPort(SUBST, 'waiting', `waiting for ${TITLE} to answer`);
    const r = await run(['builder', 'use', SUBST, '--timeout', '0.05'], port);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toContain("`nixvm logs 'a$(touch pwned)b'`");
    expect(r.out + r.err, JSON.stringify(r.err)).not.toMatch(ACTIVE);
  });
  it('escape a failed builder’s note, and end the sentence that carries it with one stop', async () => {
    const port = builderPort(
      TITLE,
      'failed',
      `"${TITLE}" did not start: Building VM "${TITLE}" failed: no space left on device; free some and build again.`,
    );
    const r = await run(['builder', 'use', TITLE], port);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/The builder VM is not usable: .*free some and build again\.\n$/);
    expect(r.out + r.err, JSON.stringify(r.err)).not.toMatch(ACTIVE);
  });
});

describe('store image progress lines', () => {
  const preparing = (phase: 'listing the closure' | 'building the store image') =>
    vmSnapshot({
      name: TITLE,
      disks: {
        images: [],
        preparing: { phase, bytesWritten: 3 << 20, bytesExpected: 10 << 20, startedAt: NOW },
        error: null,
        notice: null,
        canGrow: false,
      },
    });

  it('name the VM with visible escapes, on a pipe and above the bars on a terminal', () => {
    const pipe = collect();
    const lines = createProgressView(pipe, () => NOW);
    lines.update(preparing('listing the closure'));
    lines.update(preparing('building the store image'));
    lines.stop();
    expect(pipe.text().split('\n')).toEqual([
      'evil\\x1b]0;you have been pwned\\x07: listing the closure',
      'evil\\x1b]0;you have been pwned\\x07: building the store image: 3 MiB of 10 MiB written',
      '',
    ]);

    let drawn = '';
    const stream = new Writable({
      write(chunk, _enc, cb) {
        drawn += String(chunk);
        cb();
      },
    }) as unknown as NodeJS.WriteStream;
    Object.assign(stream, { isTTY: true, columns: 100, rows: 30 });
    const bars = createProgressView({ write: (c) => stream.write(c), isTTY: true, stream }, () => NOW);
    bars.update(preparing('listing the closure'));
    bars.update(preparing('building the store image'));
    bars.stop();
    expect(drawn).toContain(`${visibleName(TITLE)}: listing the closure`);
    expect(drawn).toContain(`${visibleName(TITLE)}: building the store image`);
    expect(drawn).not.toContain(TITLE);
  });
});

describe('the other lines that name a VM', () => {
  /** A newline in a name must not start a line of its own (a faked line of output). */
  const FAKE_LINE = 'web\nnixvm: all VMs deleted';

  it('cancel, disk grow, disk ls, flake ls and the MAC warnings print names visibly, each on its own line', async () => {
    const names = [TITLE, FAKE_LINE];
    const snap = agentSnapshot(
      names.map((name) =>
        vmSnapshot({ name, macShared: names.filter((n) => n !== name), build: buildInfo({ status: 'building' }) }),
      ),
      {
        flakes: [
          {
            dir: '/flakes/demo',
            evaluating: false,
            error: null,
            warnings: [],
            lastEvalAt: NOW,
            state: 'ok',
            evaluatingSince: null,
            errorKind: null,
            source: 'settings',
            hidden: [FAKE_LINE],
          },
        ],
      },
    );
    const port = new FakePort(snap, {
      cancelBuild: (p, f) => f.vm(p.vm),
      diskGrow: (p, f) => f.vm(p.vm),
      disks: () =>
        names.map((n) => ({
          role: 'writable-store' as const,
          path: '/state/vms/x/store-writable.img',
          apparentBytes: 1 << 20,
          allocatedBytes: 4096,
          readOnly: false,
          vms: [n],
          closure: null,
          orphan: false,
        })),
    });
    const printed = [
      await run(['cancel', ...names], port),
      await run(['disk', 'grow', FAKE_LINE], port),
      await run(['disk', 'ls'], port),
      await run(['flake', 'ls'], port),
      await run(['ls'], port),
    ]
      .map((r) => r.out + r.err)
      .join('');
    expect(printed).not.toMatch(ACTIVE);
    expect(printed.split('\n').filter((l) => l.startsWith('nixvm: all VMs deleted'))).toEqual([]);
    expect(printed).toContain('web\\nnixvm: all VMs deleted: build cancelled');
    expect(printed).toContain('web\\nnixvm: all VMs deleted: writable store image grown');
    expect(printed).toContain('hidden: web\\nnixvm: all VMs deleted');
    expect(printed).toContain(`warning: ${visibleName(TITLE)}, web\\nnixvm: all VMs deleted have the same MAC`);
  });
});
