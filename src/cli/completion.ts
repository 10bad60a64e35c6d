/**
 * Shell completion. The scripts for bash, zsh and fish are a few lines each: they hand the words
 * typed so far to `nixvm __complete`, which answers from the commander program itself (commands,
 * their options, choices), the agent (VM names, when one runs), the settings schema (keys and
 * their choices) and the file system (flake folders). So every shell completes the same things.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Argument, Command, Option } from 'commander';
import { SETTINGS_KEYS, SETTINGS_SCHEMA } from '../api/settings-schema.ts';
import { shellWord } from '../host/shell.ts';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

/** Commands whose arguments are VM names. */
const VM_ARGS = new Set([
  'status',
  'start',
  'stop',
  'restart',
  'build',
  'apply',
  'cancel',
  'ip',
  'ssh',
  'ssh-command',
  'logs',
  'inspect',
]);

export interface CompletionSources {
  vmNames(): Promise<string[]>;
  cwd: string;
}

function visible(cmd: Command): Command[] {
  return cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
}

function optionWords(cmd: Command): string[] {
  const opts = (cmd.options as readonly Option[]).filter((o) => !o.hidden);
  return [...opts.flatMap((o) => [o.long, o.short].filter((x): x is string => Boolean(x))), '--help'];
}

/** Directories under what was typed so far (flake folders), each with a trailing slash. */
function directories(partial: string, cwd: string): string[] {
  const base = partial.endsWith('/')
    ? partial
    : path.dirname(partial) === '.' && !partial.startsWith('.')
      ? ''
      : `${path.dirname(partial)}/`;
  const dir = path.resolve(cwd, base || '.');
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && (!d.name.startsWith('.') || path.basename(partial).startsWith('.')))
      .map((d) => `${base}${d.name}/`);
  } catch {
    return [];
  }
}

/**
 * The candidates for the last of `words` (the words after `nixvm`; the last one is the one being
 * typed, possibly empty), filtered by what it starts with.
 */
export async function completions(program: Command, words: string[], src: CompletionSources): Promise<string[]> {
  const current = words.at(-1) ?? '';
  const before = words.slice(0, -1).filter((w, i, all) => !(w === '--socket' || all[i - 1] === '--socket'));
  const match = (xs: Iterable<string>): string[] => [...new Set(xs)].filter((x) => x.startsWith(current)).sort();

  // Walk down the command tree as far as the words go.
  let cmd = program;
  const args: string[] = [];
  for (const w of before) {
    if (w.startsWith('-')) continue;
    const sub = args.length === 0 ? visible(cmd).find((c) => c.name() === w || c.aliases().includes(w)) : undefined;
    if (sub) cmd = sub;
    else args.push(w);
  }
  if (current.startsWith('-')) return match(cmd === program ? ['--socket', '--version', '--help'] : optionWords(cmd));
  if (cmd.commands.length > 0 && args.length === 0) return match(visible(cmd).map((c) => c.name()));

  const name = cmd.name();
  const parent = cmd.parent?.name();
  if (VM_ARGS.has(name) && parent === 'nixvm') {
    // ssh: only the first argument is a VM; logs, status, ip, inspect take one.
    const many = ['start', 'stop', 'restart', 'build', 'apply', 'cancel'].includes(name);
    if (!many && args.length > 0) return [];
    return match((await src.vmNames()).filter((n) => !args.includes(n)));
  }
  const choices = (cmd.registeredArguments as readonly Argument[])[args.length]?.argChoices;
  if (choices) return match(choices);
  if (parent === 'flake') {
    if (name === 'add' || (args.length === 0 && ['remove', 'include', 'exclude', 'default'].includes(name))) {
      return match(directories(current, src.cwd));
    }
    if (['include', 'exclude', 'default'].includes(name)) return match(await src.vmNames());
  }
  if (parent === 'config' && args.length === 0) return match(SETTINGS_KEYS);
  if (parent === 'config' && name === 'set' && args.length === 1) {
    const schema = SETTINGS_SCHEMA[args[0] as keyof typeof SETTINGS_SCHEMA] as
      | { enum?: readonly string[]; type?: unknown }
      | undefined;
    if (schema?.enum) return match(schema.enum);
    if (schema?.type === 'boolean') return match(['true', 'false']);
  }
  return [];
}

/** The completion script for `shell`; it runs `argv` (this nixvm) to ask for candidates. */
export function completionScript(shell: Shell, argv: readonly string[]): string {
  const self = argv.map(shellWord).join(' ');
  switch (shell) {
    case 'bash':
      return `# nixvm completion for bash: add to ~/.bashrc:  eval "$(nixvm completion bash)"
_nixvm() {
  local IFS=$'\\n'
  COMPREPLY=($(${self} __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
  # A folder goes on being typed: no space after it.
  if [[ \${#COMPREPLY[@]} -eq 1 && \${COMPREPLY[0]} == */ ]]; then compopt -o nospace 2>/dev/null; fi
}
complete -F _nixvm nixvm`;
    case 'zsh':
      return `#compdef nixvm
# nixvm completion for zsh: add to ~/.zshrc (after compinit):  eval "$(nixvm completion zsh)"
_nixvm() {
  local -a candidates
  candidates=("\${(@f)$(${self} __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  candidates=("\${(@)candidates:#}")
  local -a dirs plain
  dirs=("\${(@M)candidates:#*/}")
  plain=("\${(@)candidates:#*/}")
  (( \${#plain} )) && compadd -Q -- "\${plain[@]}"
  (( \${#dirs} )) && compadd -Q -S '' -- "\${dirs[@]}"
  return 0
}
if (( \${+functions[compdef]} )); then compdef _nixvm nixvm; fi`;
    case 'fish':
      return `# nixvm completion for fish: nixvm completion fish > ~/.config/fish/completions/nixvm.fish
function __nixvm_complete
    set -l words (commandline -opc)
    set -e words[1]
    ${self} __complete $words (commandline -ct) 2>/dev/null
end
complete -c nixvm -f -a '(__nixvm_complete)'`;
  }
}
