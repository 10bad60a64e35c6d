/**
 * Preparing a VM's Nix store image (useNixStoreImage) for closures of N small store paths
 * (N = 100, 1,000, 5,000), with real nix and the machine's mkfs.erofs behind the flake's
 * virtualisation.host.pkgs.erofs-utils, and the cost of a second start of the same closure (the
 * image is cached per closure: no nix, no mkfs). Also the tar stream alone, per path, which is
 * what an erofs-utils 1.7+ (nixpkgs', on a Mac) reads instead of a staging directory.
 *
 *   node bench/store-image.ts [--sizes 100,1000,5000] [--json]
 *
 * Each closure is one toplevel referring to the N outputs of one derivation (each a directory with
 * a ~200-byte file and a symlink), built once before the timing starts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { mkfsCapabilities, storeTar } from '../src/core/erofs-image.ts';
import { closurePaths } from '../src/core/nix/closure-info.ts';
import { EVAL_ARGS, flakeInstallable, Nix } from '../src/core/nix/nix.ts';
import { StoreImages, erofsUtilsAttr } from '../src/core/store-image.ts';
import { run } from '../src/host/runner.ts';
import { FIXTURES_DIR } from '../test/helpers/fixtures.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100,1000,5000' },
    json: { type: 'boolean', default: false },
  },
});
const SIZES = values.sizes.split(',').map((s) => Number(s.trim()));

function flakeWith(n: number, dir: string): void {
  fs.mkdirSync(path.join(dir, 'pkgs'), { recursive: true });
  fs.copyFileSync(
    path.join(FIXTURES_DIR, 'seed-exact', 'pkgs', 'erofs-utils.nix'),
    path.join(dir, 'pkgs', 'erofs-utils.nix'),
  );
  fs.writeFileSync(
    path.join(dir, 'flake.nix'),
    `{
  outputs = { self }: let
    names = builtins.genList (i: "p\${toString i}") ${n};
    paths = derivation {
      name = "bench-paths-${n}";
      system = "x86_64-linux";
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      outputs = [ "out" ] ++ names;
      outNames = toString names;
      args = [ "-c" ''
        mkdir -p "$out"
        for o in $outNames; do
          eval "d=\\$$o"
          mkdir -p "$d/share"
          printf 'store path %s of a closure of ${n}: some text to give the file a couple of hundred bytes, as a small config or a script would have. ----------------------------------------------------------------\\n' "$o" > "$d/share/file"
          ln -s share/file "$d/link"
        done
      '' ];
    };
    toplevel = derivation {
      name = "nixos-system-bench-${n}";
      system = "x86_64-linux";
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      deps = map (o: paths.\${o}) names;
      # 5,000 store paths are more than one environment string may hold.
      passAsFile = [ "deps" ];
      args = [ "-c" "mkdir -p $out; cat $depsPath > $out/deps" ];
    };
  in {
    nixosConfigurations.bench.config = {
      system.build.toplevel = toplevel;
      virtualisation.host.pkgs.erofs-utils = import ./pkgs/erofs-utils.nix;
    };
  };
}
`,
  );
}

const nix = Nix.locate();
const caps = await mkfsCapabilities('/usr/bin/mkfs.erofs');
const mode = caps.tar ? 'a tar stream' : 'a staging directory (mkfs.erofs < 1.7)';
const results: Array<Record<string, number | string>> = [];

for (const n of SIZES) {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `nixvm-bench-img-${n}-`)));
  try {
    const flake = path.join(root, 'flake');
    flakeWith(n, flake);
    const built = await run(
      nix.argv(
        'build',
        '--no-link',
        '--json',
        ...EVAL_ARGS,
        flakeInstallable(flake, ['nixosConfigurations', 'bench', 'config', 'system', 'build', 'toplevel']),
      ),
    );
    const toplevel = (JSON.parse(built.stdout) as Array<{ outputs: { out: string } }>)[0]!.outputs.out;
    // erofs-utils built too, so the timing is the image, not a first build of the wrapper.
    await run(nix.argv('build', '--no-link', ...EVAL_ARGS, flakeInstallable(flake, erofsUtilsAttr('bench'))));
    const paths = await closurePaths(nix, [toplevel]);

    const phases: Record<string, number> = {};
    const images = new StoreImages({
      stateDir: path.join(root, 'state'),
      inUse: () => new Set([toplevel]),
      log: () => {},
    });
    let last = '';
    images.on('changed', () => {
      const p = images.progress('bench');
      if (p && p.phase !== last) {
        last = p.phase;
        phases[p.phase] = performance.now();
      }
    });
    const t0 = performance.now();
    const img = await images.ensure(nix, { name: 'bench', flake }, toplevel);
    const cold = performance.now() - t0;
    const t1 = performance.now();
    const again = await images.ensure(nix, { name: 'bench', flake }, toplevel);
    const warm = performance.now() - t1;
    if (again !== img) throw new Error('the second start made another image');

    const t2 = performance.now();
    let tarBytes = 0;
    await pipeline(
      await storeTar(paths),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          tarBytes += chunk.length;
          cb();
        },
      }),
    );
    const tar = performance.now() - t2;

    const listing = (phases['building the store image'] ?? t0) - (phases['listing the closure'] ?? t0);
    const making = t0 + cold - (phases['building the store image'] ?? t0);
    results.push({
      paths: paths.length,
      coldMs: Math.round(cold),
      listingMs: Math.round(listing),
      makingMs: Math.round(making),
      imageBytes: fs.statSync(img).size,
      secondStartMs: Number(warm.toFixed(3)),
      tarMs: Math.round(tar),
      tarBytes,
    });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

if (values.json) {
  console.log(JSON.stringify({ mode, results }, null, 2));
} else {
  console.log(`store image, made with /usr/bin/mkfs.erofs from ${mode}:`);
  for (const r of results) {
    const n = r.paths as number;
    const perPath = (ms: number) => `${((ms * 1000) / n).toFixed(0)} µs/path`;
    console.log(
      `  ${String(n).padStart(5)} paths: first start ${r.coldMs} ms (listing + registration ${r.listingMs} ms = ${perPath(r.listingMs as number)}, image ${r.makingMs} ms = ${perPath(r.makingMs as number)}; ${r.imageBytes} bytes)`,
    );
    console.log(
      `               second start (cached) ${r.secondStartMs} ms = ${(((r.secondStartMs as number) / (r.coldMs as number)) * 100).toFixed(3)} % of the first; tar stream alone ${r.tarMs} ms (${perPath(r.tarMs as number)}, ${r.tarBytes} bytes)`,
    );
  }
}
