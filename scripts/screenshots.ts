/**
 * Screenshots of the renderer for docs/ and the README: the dropdown (light and dark), the log
 * window (a console across a restart, a build log) and settings, rendered in Chromium over a real Agent (the UI fixture flake, real nix,
 * the vfkit simulator), the same way the UI tests run it.
 *
 *   node scripts/screenshots.ts [outDir]      (default: docs/)
 */
import '../test/setup-env.ts';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createTestAgent } from '../test/helpers/agent.ts';
import { copyFixture } from '../test/helpers/fixtures.ts';
import { RecordingAppHost, startHarness } from '../test/ui/harness.ts';

const out = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '..', 'docs'));
mkdirSync(out, { recursive: true });

const flake = await copyFixture('ui', { salt: true });
flake.write('step-seconds', '0');
const t = await createTestAgent({
  flake,
  vmEnv: { NIXVM_SIM_CHATTER_MS: '700' },
  settings: { sshUser: { dev: 'alice' }, autostart: { dev: true } },
});
const h = await startHarness();
try {
  // A realistic moment: dev running, web running an older config, builder mid-build, scratch off.
  await Promise.all([t.agent.call('start', { vm: 'dev' }), t.agent.call('start', { vm: 'web' })]);
  await t.waitFor((s) => s.vms.filter((v) => v.state === 'running' && v.ipv4).length === 2);
  flake.write('motd', 'changed');
  await t.waitFor((s) => s.vms.some((v) => v.name === 'web' && v.stale));
  flake.write('step-seconds', '4');
  await t.waitFor(
    (s) =>
      !s.flakes.some((f) => f.evaluating) && s.vms.some((v) => v.name === 'builder' && v.drvPath?.includes('builder')),
    20_000,
  );
  void t.agent.call('build', { vm: 'builder' }).catch(() => {});
  await t.waitFor(
    (s) =>
      s.vms.some((v) => v.name === 'builder' && (v.build.progress?.percent ?? 0) > 0 && v.build.progress?.lastLine),
    30_000,
  );

  for (const scheme of ['light', 'dark'] as const) {
    const app = await h.open(t.agent, 'index', { colorScheme: scheme, deviceScaleFactor: 2 });
    await app.page.locator('li.vm').nth(3).waitFor();
    await app.page.locator('li.vm[data-vm="dev"] .vm-main').click();
    await app.page.waitForTimeout(300);
    // Size the page as the app sizes the dropdown window (main.ts clamps to 180–680).
    const height = Math.max(180, Math.min(680, app.host.heights.at(-1) ?? 540));
    await app.page.setViewportSize({ width: 380, height });
    await app.page.mouse.move(1, 1);
    await app.page.waitForTimeout(100);
    await app.page.screenshot({ path: path.join(out, `dropdown-${scheme}.png`) });
    console.log(`wrote docs/dropdown-${scheme}.png`);
    await app.close();
  }

  // dev's "…" menu open: the actions that are not one click away.
  {
    const app = await h.open(t.agent, 'index', { deviceScaleFactor: 2 });
    await app.page.locator('li.vm').nth(3).waitFor();
    await app.page.locator('li.vm[data-vm="dev"] .vm-main').click();
    await app.page.locator('li.vm[data-vm="dev"] [data-action="more"]').click();
    await app.page.waitForTimeout(300);
    const height = Math.max(180, Math.min(680, app.host.heights.at(-1) ?? 540));
    await app.page.setViewportSize({ width: 380, height });
    await app.page.locator('li.vm[data-vm="dev"] [data-action="revealStateDir"]').hover();
    await app.page.waitForTimeout(100);
    await app.page.screenshot({ path: path.join(out, 'dropdown-menu.png') });
    console.log('wrote docs/dropdown-menu.png');
    await app.close();
  }

  // The console across a restart: the end of the first run, the separator, the second boot.
  const before = t.vm('dev').startedAt;
  await t.agent.call('restart', { vm: 'dev' });
  await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'running' && v.startedAt !== before));
  const log = await h.open(t.agent, 'log', { query: { vm: 'dev', kind: 'console' }, deviceScaleFactor: 2 });
  const sep = `.line.run[data-run="${new Date(t.vm('dev').startedAt!).toISOString()}"]`;
  await log.page.locator('.line', { hasText: 'login:' }).last().waitFor();
  await log.page.locator('#follow').uncheck();
  // The list is virtual: scroll up until the separator is drawn, then put it in the middle.
  while (!(await log.page.locator(sep).count())) {
    await log.page.evaluate(() => (document.getElementById('log')!.scrollTop -= 300));
    await log.page.waitForTimeout(50);
  }
  await log.page.locator(sep).evaluate((el) => el.scrollIntoView({ block: 'center' }));
  await log.page.waitForFunction((s) => {
    const top = document.querySelector(s)?.getBoundingClientRect().top ?? -1;
    return top > 150 && top < 400;
  }, sep);
  await log.page.waitForTimeout(300);
  await log.page.screenshot({ path: path.join(out, 'log-window.png') });
  console.log('wrote docs/log-window.png');
  await log.close();

  // The build log of the build started above (in flight or just done): each line with the time the agent got it.
  const build = await h.open(t.agent, 'log', { query: { vm: 'builder', kind: 'build' }, deviceScaleFactor: 2 });
  await build.page.locator('.line.stamped .ts:not(:empty)').nth(3).waitFor();
  await build.page.waitForTimeout(300);
  await build.page.screenshot({ path: path.join(out, 'build-log.png') });
  console.log('wrote docs/build-log.png');
  await build.close();

  // As the packaged, unsigned app shows it on a Mac where /usr/local/bin needs an administrator.
  const appHost = new RecordingAppHost({
    launcher: '/Applications/NixVM.app/Contents/Resources/cli/nixvm',
    pathDirs: ['/usr/local/bin', '/usr/bin', '/bin'],
    candidates: ['/nonexistent/usr/local/bin'],
  });
  const settings = await h.open(t.agent, 'settings', {
    deviceScaleFactor: 2,
    appHost,
    viewport: { width: 560, height: 1000 },
  });
  await settings.page.locator('#vms tr').nth(3).waitFor();
  await settings.page.waitForTimeout(200);
  await settings.page.screenshot({ path: path.join(out, 'settings.png') });
  console.log('wrote docs/settings.png');
  await settings.close();

  // A flake that does not parse, its error at the end of a long line, beside one that runs.
  const broken = await copyFixture('syntax');
  broken.write(
    'flake.nix',
    `{\n  outputs = { self }: {\n    nixosConfigurations = {\n      vm = { config = { networking.hostName = "a-rather-long-host-name-for-a-vm"; } }\n    };\n  };\n}\n`,
  );
  await t.agent.call('setSettings', { flakes: [flake.dir, broken.dir] });
  await t.waitFor((s) => s.flakes.some((f) => f.dir === broken.dir && f.error !== null), 30_000);
  {
    const app = await h.open(t.agent, 'index', { colorScheme: 'dark', deviceScaleFactor: 2 });
    await app.page.locator('.flake-errors .card.error').waitFor();
    await app.page.locator('li.vm').nth(3).waitFor();
    // All of nix's message, wrapped inside the card.
    await app.page.locator('[data-action="showFullError"]').click();
    await app.page.waitForTimeout(300);
    const height = Math.max(180, Math.min(680, app.host.heights.at(-1) ?? 540));
    await app.page.setViewportSize({ width: 380, height });
    await app.page.mouse.move(1, 1);
    await app.page.screenshot({ path: path.join(out, 'dropdown-error.png') });
    console.log('wrote docs/dropdown-error.png');
    await app.close();
  }
  await t.agent.call('setSettings', { flakes: [flake.dir] });
  broken.remove();

  // Many VMs (the 25 of the `many` fixture and the four above): compact rows, a filter, running first.
  const many = await copyFixture('many');
  await t.agent.call('setSettings', { flakes: [flake.dir, many.dir] });
  await t.waitFor((s) => s.vms.length === 29, 30_000);
  await Promise.all(['vm03', 'vm11'].map((vm) => t.agent.call('start', { vm })));
  await t.waitFor((s) => s.vms.filter((v) => v.state === 'running').length >= 4, 30_000);
  {
    const app = await h.open(t.agent, 'index', { deviceScaleFactor: 2 });
    await app.page.locator('li.vm[data-vm="vm25"]').waitFor();
    await app.page.waitForTimeout(300);
    await app.page.setViewportSize({ width: 380, height: 680 });
    await app.page.mouse.move(1, 1);
    await app.page.screenshot({ path: path.join(out, 'dropdown-many.png') });
    console.log('wrote docs/dropdown-many.png');
    await app.close();
  }
  await Promise.all(['vm03', 'vm11'].map((vm) => t.agent.call('stop', { vm }).catch(() => {})));
  await t.agent.call('setSettings', { flakes: [flake.dir] });
  many.remove();
} finally {
  await t.agent.call('cancelBuild', { vm: 'builder' }).catch(() => {});
  await h.close();
  await t.dispose();
}
