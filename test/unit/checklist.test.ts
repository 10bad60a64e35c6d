import { describe, expect, it } from 'vitest';
import { firstRunChecklist, SETUP_COMMANDS } from '../../src/api/checklist.ts';
import type { DoctorCheck, DoctorReport } from '../../src/api/types.ts';
import { validateUiParams } from '../../src/app/validate.ts';
import { agentSnapshot, flakeSnapshot } from '../helpers/fake-port.ts';

const check = (id: string, status: DoctorCheck['status'], fix: string | null = null): DoctorCheck => ({
  id,
  title: id,
  status,
  summary: `${id} is ${status}`,
  fix,
  details: [],
});
const report = (...checks: DoctorCheck[]): DoctorReport => ({ checks, at: 0 });
const withFlake = () => ({ ...agentSnapshot([]), flakes: [flakeSnapshot({ dir: '/f' })] });

describe('the first-run checklist', () => {
  it('is open for each failed check and a missing flake folder, with the actions that fix them', () => {
    const c = firstRunChecklist(
      report(
        check('nix', 'warn', 'upgrade nix'),
        check('vfkit', 'fail', 'brew install vfkit'),
        check('rosetta', 'fail'),
        check('builder', 'skip'),
      ),
      { ...agentSnapshot([]), flakes: [] },
    );
    expect(c.items.map((i) => [i.id, i.state])).toEqual([
      ['nix', 'note'],
      ['vfkit', 'open'],
      ['rosetta', 'open'],
      ['builder', 'na'],
      ['flake', 'open'],
    ]);
    expect(c.open).toBe(3);
    expect(c.items.find((i) => i.id === 'vfkit')!.actions.map((a) => a.label)).toEqual([
      'Copy brew install',
      'Copy nix profile install',
      'Choose Its Path…',
    ]);
    expect(c.items.find((i) => i.id === 'flake')!.actions.map((a) => a.label)).toEqual([
      'Choose Folder…',
      'Use the Example',
    ]);
    // A warning works: it is said, with no action, and does not keep the checklist open.
    expect(c.items[0]).toMatchObject({ fix: 'upgrade nix', actions: [] });
  });

  it('is done when nothing failed and a flake is configured; before the doctor answers nothing is claimed', () => {
    const done = firstRunChecklist(
      report(check('nix', 'ok'), check('vfkit', 'ok'), check('rosetta', 'skip')),
      withFlake(),
    );
    expect(done.open).toBe(0);
    const waiting = firstRunChecklist(null, withFlake());
    expect(waiting.items.filter((i) => i.id !== 'flake').every((i) => i.state === 'na')).toBe(true);
  });

  it('copies only its own commands: the page names one by id, never the text', () => {
    expect(validateUiParams('copySetupCommand', { command: 'rosetta' })).toEqual({ command: 'rosetta' });
    expect(SETUP_COMMANDS.rosetta).toBe('softwareupdate --install-rosetta --agree-to-license');
    for (const bad of [{ command: 'rm -rf ~' }, { command: 'toString' }, { command: '__proto__' }, {}, null])
      expect(() => validateUiParams('copySetupCommand', bad)).toThrow(/must be one of brew-vfkit, nix-vfkit, rosetta/);
  });
});
