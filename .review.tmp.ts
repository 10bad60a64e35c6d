import './test/setup-env.ts';
import { createTestAgent } from './test/helpers/agent.ts';
import { copyFixture } from './test/helpers/fixtures.ts';
import { startHarness } from './test/ui/harness.ts';
const h = await startHarness();
async function shot(t: any, name: string, prep?: (p: any) => Promise<void>, page: any = 'index', query?: any) {
  const app = await h.open(t.agent, page, { deviceScaleFactor: 2, query });
  await app.page.waitForTimeout(800);
  if (prep) await prep(app.page);
  const height = Math.max(180, Math.min(680, app.host.heights.at(-1) ?? 540));
  if (page === 'index') await app.page.setViewportSize({ width: 380, height });
  await app.page.mouse.move(1,1);
  await app.page.waitForTimeout(150);
  await app.page.screenshot({ path: `/tmp/review/${name}.png` });
  await app.close();
}
{ const t = await createTestAgent({ fixture: 'ui', settings: { flakes: [] } }); await shot(t, 'empty'); await t.dispose(); }
{ const t = await createTestAgent({ fixture: 'syntax' }); await shot(t, 'syntax'); await t.dispose(); }
{ const t = await createTestAgent({ fixture: 'broken' }); await shot(t, 'broken'); await t.dispose(); }
{ const f = await copyFixture('build', { salt: true }); const t = await createTestAgent({ flake: f });
  await t.agent.call('build', { vm: 'broken' }).catch(() => {}); await t.agent.call('build', { vm: 'foreign' }).catch(() => {});
  await t.waitFor((s) => s.vms.some((v) => v.name === 'broken' && v.build.status === 'failed'));
  await shot(t, 'buildfail', async (p) => { await p.locator('li.vm[data-vm="broken"] .vm-main').click(); });
  await shot(t, 'buildlog', undefined, 'log', { vm: 'broken', kind: 'build' });
  await t.dispose(); }
{ const t = await createTestAgent({ fixture: 'ui', vmEnv: { NIXVM_SIM_CRASH_AFTER_MS: '600' } });
  await t.agent.call('start', { vm: 'dev' }); await t.waitFor((s) => s.vms.some((v) => v.name === 'dev' && v.state === 'crashed'));
  await shot(t, 'crashed', async (p) => { await p.locator('li.vm[data-vm="scratch"] .vm-main').click(); await p.locator('li.vm[data-vm="scratch"] [data-action="copySshCommand"]').click({ force: true }).catch(()=>{}); await p.locator('li.vm[data-vm="dev"] [data-action="copyIpv4"]').click().catch(()=>{}); });
  await t.dispose(); }
await h.close();
