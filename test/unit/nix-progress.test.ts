import { describe, expect, it } from 'vitest';
import { parseNixLogLine, ProgressTracker } from '../../src/core/nix/progress.ts';

const DEP = '/nix/store/h7l8pp49ymccs707k3c0a12q8s6j7pf4-dep1.drv';
const TOP = '/nix/store/r8xrvmbvp7jw7p2xhwi65nvbrgjd9gzs-top.drv';

/** What Nix 2.8 wrote for a two-derivation build (ids as it printed them). */
const NIX28_BUILD = [
  '@nix {"action":"start","id":41300405518336,"level":4,"text":"copying \'/tmp/nx/b\'","type":0}',
  '@nix {"action":"stop","id":41300405518336}',
  '@nix {"action":"start","id":41300405518337,"level":0,"text":"","type":102}',
  '@nix {"action":"start","id":41300405518338,"level":0,"text":"","type":104}',
  '@nix {"action":"start","id":41300405518339,"level":0,"text":"","type":103}',
  '@nix {"action":"result","fields":[0,1,0,0],"id":41300405518338,"type":105}',
  '@nix {"action":"result","fields":[0,0,0,0],"id":41300405518339,"type":105}',
  '@nix {"action":"result","fields":[101,0],"id":41300405518337,"type":106}',
  '@nix {"action":"result","fields":[100,0],"id":41300405518337,"type":106}',
  '@nix {"action":"start","id":41300405518340,"level":6,"text":"querying info about missing paths","type":0}',
  '@nix {"action":"stop","id":41300405518340}',
  '@nix {"action":"result","fields":[0,2,0,0],"id":41300405518338,"type":105}',
  `@nix {"action":"start","fields":["${DEP}","",1,1],"id":41300405518341,"level":3,"text":"building '${DEP}'","type":105}`,
  '@nix {"action":"result","fields":[0,2,1,0],"id":41300405518338,"type":105}',
  '@nix {"action":"result","fields":["building dep1"],"id":41300405518341,"type":101}',
  '@nix {"action":"result","fields":["more"],"id":41300405518341,"type":101}',
  '@nix {"action":"result","fields":[1,2,0,0],"id":41300405518338,"type":105}',
  '@nix {"action":"stop","id":41300405518341}',
  `@nix {"action":"start","fields":["${TOP}","",1,1],"id":41300405518343,"level":3,"text":"building '${TOP}'","type":105}`,
  '@nix {"action":"result","fields":[1,2,1,0],"id":41300405518338,"type":105}',
];
const NIX28_END = [
  '@nix {"action":"result","fields":[2,2,0,0],"id":41300405518338,"type":105}',
  '@nix {"action":"stop","id":41300405518343}',
  '@nix {"action":"stop","id":41300405518339}',
  '@nix {"action":"stop","id":41300405518338}',
  '@nix {"action":"stop","id":41300405518337}',
];

describe('parseNixLogLine', () => {
  it('keeps activity ids exact beyond 2^53, where JSON.parse would merge them', () => {
    const a = parseNixLogLine(
      '@nix {"action":"start","id":9007199254740993,"level":3,"text":"a","type":105,"fields":[]}',
    );
    const b = parseNixLogLine(
      '@nix {"action":"start","id":9007199254740992,"level":3,"text":"b","type":105,"fields":[]}',
    );
    expect(a).toMatchObject({ action: 'start', id: '9007199254740993' });
    expect(b).toMatchObject({ action: 'start', id: '9007199254740992' });
    expect(
      parseNixLogLine('@nix {"action":"start","id":1,"parent":18446744073709551615,"type":0,"text":""}'),
    ).toMatchObject({
      parent: '18446744073709551615',
    });
  });

  it('does not mistake "id": inside a message for a key', () => {
    const ev = parseNixLogLine('@nix {"action":"msg","level":1,"msg":"say \\"id\\":123 twice"}');
    expect(ev).toEqual({ action: 'msg', level: 1, msg: 'say "id":123 twice' });
  });

  it('strips colours from messages, passes plain lines through and ignores junk', () => {
    expect(parseNixLogLine('@nix {"action":"msg","level":0,"msg":"\\u001b[31;1merror:\\u001b[0m boom"}')).toEqual({
      action: 'msg',
      level: 0,
      msg: 'error: boom',
    });
    expect(parseNixLogLine('warning: something plain')).toEqual({ action: 'text', text: 'warning: something plain' });
    expect(parseNixLogLine('@nix {"action":"start","id":1')).toBeNull();
    expect(parseNixLogLine('@nix {"action":"teleport","id":1}')).toBeNull();
    expect(parseNixLogLine('')).toBeNull();
  });
});

describe('ProgressTracker', () => {
  it('is evaluating until nix starts realising (what Nix 2.8 writes while it evaluates, then builds)', () => {
    const t = new ProgressTracker();
    for (const l of [
      `@nix {"action":"start","id":1,"level":4,"text":"copying '/tmp/f'","type":0}`,
      '@nix {"action":"stop","id":1}',
      `@nix {"action":"msg","level":4,"msg":"evaluating file '/nix/store/x-source/flake.nix'"}`,
    ])
      t.feed(l);
    expect(t.progress().stage).toBe('evaluating');
    t.feed('@nix {"action":"start","id":2,"level":0,"text":"","type":102}');
    expect(t.progress().stage).toBe('building');
  });

  it('follows a Nix 2.8 build: builds done/expected/running, current derivation, last line', () => {
    const t = new ProgressTracker();
    const lines: string[] = [];
    for (const l of NIX28_BUILD) {
      const out = t.feed(l);
      if (out.line !== undefined) lines.push(out.line);
    }
    const mid = t.progress();
    expect(mid).toMatchObject({
      buildsDone: 1,
      buildsExpected: 2,
      buildsRunning: 1,
      currentDrv: TOP,
      lastLine: 'more',
    });
    expect(mid.percent).toBe(50);
    // The "copying" (level 4) and "querying" (level 6) activities are not what nix shows by default.
    expect(lines).toEqual([`building '${DEP}'`, 'dep1> building dep1', 'dep1> more', `building '${TOP}'`]);
    expect(t.logTail(DEP)).toEqual(['building dep1', 'more']);

    for (const l of NIX28_END) t.feed(l);
    const end = t.progress();
    expect(end).toMatchObject({ buildsDone: 2, buildsExpected: 2, buildsRunning: 0, currentDrv: null });
    expect(end.percent).toBe(99);
    t.finish(true);
    expect(t.progress().percent).toBe(100);
  });

  it('accepts an expected count that shrinks, keeping percent from going backwards', () => {
    const t = new ProgressTracker();
    t.feed('@nix {"action":"start","id":7,"level":0,"text":"","type":104}');
    t.feed('@nix {"action":"result","fields":[1,4,1,0],"id":7,"type":105}');
    expect(t.progress()).toMatchObject({ buildsDone: 1, buildsExpected: 4, percent: 25 });
    // Nix found two paths already valid: expected drops.
    t.feed('@nix {"action":"result","fields":[1,2,0,0],"id":7,"type":105}');
    expect(t.progress()).toMatchObject({ buildsDone: 1, buildsExpected: 2, percent: 50 });
    t.feed('@nix {"action":"result","fields":[0,8,0,0],"id":7,"type":105}');
    const p = t.progress();
    expect(p.buildsExpected).toBe(8);
    expect(p.percent).toBe(50);
  });

  it('counts downloads and bytes from CopyPaths, FileTransfer and SetExpected (current Nix)', () => {
    const t = new ProgressTracker();
    const feed = (s: string) => t.feed(`@nix ${s}`);
    feed('{"action":"start","id":1,"level":0,"text":"","type":102}');
    feed('{"action":"start","id":2,"level":0,"text":"","type":104,"parent":1}');
    feed('{"action":"start","id":3,"level":0,"text":"","type":103,"parent":1}');
    feed('{"action":"result","fields":[0,1,0,0],"id":2,"type":105}');
    feed('{"action":"result","fields":[0,3,0,0],"id":3,"type":105}');
    feed('{"action":"result","fields":[101,3000000],"id":1,"type":106}');
    feed(
      '{"action":"start","id":4,"level":4,"text":"copying path \'/nix/store/aaa-glibc\' from \'https://cache.nixos.org\'","type":100,"parent":3,"fields":["/nix/store/aaa-glibc","https://cache.nixos.org","local"]}',
    );
    const dl = feed(
      '{"action":"start","id":5,"level":4,"text":"downloading \'https://cache.nixos.org/nar/x.nar.xz\'","type":101,"parent":4,"fields":["https://cache.nixos.org/nar/x.nar.xz"]}',
    );
    expect(dl.line).toBeUndefined(); // level 4: not shown by default
    feed('{"action":"result","fields":[1000000,2000000,0,0],"id":5,"type":105}');
    feed('{"action":"result","fields":[1,3,1,0],"id":3,"type":105}');
    let p = t.progress();
    expect(p).toMatchObject({ downloadsDone: 1, downloadsExpected: 3, bytesDone: 1000000, bytesExpected: 3000000 });
    feed('{"action":"result","fields":[2000000,2000000,0,0],"id":5,"type":105}');
    feed('{"action":"stop","id":5}');
    feed('{"action":"stop","id":4}');
    p = t.progress();
    expect(p.bytesDone).toBe(2000000);
    expect(p.bytesExpected).toBe(3000000);
    expect(p.percent).toBe(25); // 1 of 4 units (1 build + 3 downloads)
  });

  it('reports the builder phase and post-build log lines, ignores unknown types and ids', () => {
    const t = new ProgressTracker();
    const drv = '/nix/store/0c8ia9qm1pvmd9vrb8ldxp4cr3b9xv7p-hello-2.12.drv';
    t.feed(
      `@nix {"action":"start","id":10,"level":3,"text":"building '${drv}'","type":105,"fields":["${drv}","",1,1]}`,
    );
    t.feed('@nix {"action":"result","fields":["unpackPhase"],"id":10,"type":104}');
    expect(t.progress()).toMatchObject({ currentDrv: drv, phase: 'unpackPhase' });
    t.feed('@nix {"action":"result","fields":["buildPhase"],"id":10,"type":104}');
    expect(t.feed('@nix {"action":"result","fields":["post-build hook ran"],"id":10,"type":107}').line).toBe(
      'hello-2.12> post-build hook ran',
    );
    // A future result type, a future activity type, a result for an unknown id.
    expect(t.feed('@nix {"action":"result","fields":["x"],"id":10,"type":199}').changed).toBe(false);
    t.feed('@nix {"action":"start","id":11,"level":3,"text":"doing something new","type":150}');
    expect(t.feed('@nix {"action":"result","fields":[5,5,0,0],"id":999,"type":105}').changed).toBe(false);
    expect(t.progress()).toMatchObject({ phase: 'buildPhase', lastLine: 'post-build hook ran', buildsDone: 0 });
  });

  it('collects error messages and keeps only the last lines of each derivation', () => {
    const t = new ProgressTracker({ tailLines: 3 });
    t.feed(`@nix {"action":"start","id":1,"level":3,"text":"building '${DEP}'","type":105,"fields":["${DEP}","",1,1]}`);
    for (let i = 1; i <= 5; i++) t.feed(`@nix {"action":"result","fields":["line ${i}"],"id":1,"type":101}`);
    const err = t.feed(
      `@nix {"action":"msg","level":0,"msg":"\\u001b[31;1merror:\\u001b[0m builder for '${DEP}' failed with exit code 2"}`,
    );
    expect(err.line).toBe(`error: builder for '${DEP}' failed with exit code 2`);
    expect(t.errors).toEqual([`error: builder for '${DEP}' failed with exit code 2`]);
    expect(t.logTail(DEP)).toEqual(['line 3', 'line 4', 'line 5']);
    expect(t.feed('@nix {"action":"msg","level":5,"msg":"chatty"}').line).toBeUndefined();
  });
});
