/**
 * `npm run package`: build dist/ (the app's code and the CLI it carries) and make NixVM.app as an
 * arm64 dmg and zip in release/. electron-builder makes dmgs on macOS only. Unsigned unless the
 * environment names a certificate (see scripts/electron-builder.config.ts and the README).
 */
import builder from 'electron-builder';
import { buildApp } from './build.ts';
import { buildAppCli } from './app-cli.ts';
import { builderConfig } from './electron-builder.config.ts';

if (process.platform !== 'darwin') {
  console.error(
    `Packaging NixVM.app needs macOS (electron-builder makes dmg images only there); this is ${process.platform}. \`node scripts/build.ts\` still builds dist/.`,
  );
  process.exit(1);
}
await buildApp();
// The nixvm the app carries (Contents/Resources/cli), from the same sources.
await buildAppCli();
const out = await builder.build({
  targets: builder.Platform.MAC.createTarget(['dmg', 'zip'], builder.Arch.arm64),
  config: builderConfig(),
  publish: 'never',
});
for (const f of out) console.log(`made ${f}`);
