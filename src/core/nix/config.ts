/**
 * What the nix in use says about itself: its configuration (`nix config show --json` on current
 * Nix, `nix show-config --json` on older ones and Lix) and the store it reaches (`nix store info
 * --json`, else `nix store ping`'s text). Read through the runner the caller passes in.
 */
import type { RunOptions, RunResult } from '../../host/runner.ts';

export type ConfigRunner = (argv: string[], opts?: RunOptions) => Promise<RunResult>;

export const NIX_COMMAND_ARGS = ['--extra-experimental-features', 'nix-command'] as const;

async function output(run: ConfigRunner, argv: string[]): Promise<RunResult | null> {
  try {
    return await run(argv, { allowFailure: true, timeoutMs: 20_000 });
  } catch {
    return null;
  }
}

/**
 * The store nix reaches: `nix store info --json` (2.19+; `trusted` is 1 on 2.26, true on 2.34),
 * else `nix store ping`'s text (2.8 has no --json there: "Store URL: local").
 */
export async function storeInfo(
  run: ConfigRunner,
  nix: string,
): Promise<{ url: string | null; trusted: boolean | null } | { error: string }> {
  const json = await output(run, [nix, ...NIX_COMMAND_ARGS, 'store', 'info', '--json']);
  if (json?.exitCode === 0) {
    try {
      const o = JSON.parse(json.stdout) as { url?: unknown; trusted?: unknown };
      const t = o.trusted;
      return {
        url: typeof o.url === 'string' ? o.url : null,
        trusted: t === true || t === 1 ? true : t === false || t === 0 ? false : null,
      };
    } catch {
      // Fall through to the text form.
    }
  }
  const text = await output(run, [nix, ...NIX_COMMAND_ARGS, 'store', 'ping']);
  if (text?.exitCode === 0) {
    const url = /^Store URL: (.+)$/m.exec(text.stdout + text.stderr)?.[1]?.trim() ?? null;
    const trusted = /^Trusted: (\d)$/m.exec(text.stdout + text.stderr)?.[1];
    return { url, trusted: trusted === undefined ? null : trusted === '1' };
  }
  const why =
    (text?.stderr ?? json?.stderr ?? '')
      .trim()
      .split('\n')
      .filter((l) => !/^warning:/.test(l))
      .at(-1) ?? '';
  return { error: why.replace(/^error:\s*/, '') };
}

/** `nix config show --json` (Nix 2.20+), else `nix show-config --json`: name → value. */
export async function nixConfig(run: ConfigRunner, nix: string): Promise<Record<string, unknown> | null> {
  for (const sub of [['config', 'show'], ['show-config']]) {
    // Only nix-command (these subcommands need it): whether flakes are on is what nix.conf says.
    const r = await output(run, [nix, ...NIX_COMMAND_ARGS, ...sub, '--json']);
    if (r?.exitCode !== 0) continue;
    try {
      const obj = JSON.parse(r.stdout) as Record<string, { value?: unknown }>;
      return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, v?.value]));
    } catch {
      // Not JSON: try the other spelling.
    }
  }
  return null;
}

/** A setting's value as a list of words (nix shows lists as arrays, older ones as strings). */
export function settingWords(v: unknown): string[] {
  return Array.isArray(v)
    ? v.filter((x): x is string => typeof x === 'string')
    : typeof v === 'string'
      ? v.split(/\s+/).filter(Boolean)
      : [];
}
