/**
 * The programs a source file starts, read statically from its text (test/unit/test-deps.test.ts
 * checks them against scripts/test-deps.ts). String literals only; argv built from variables is
 * the runner's own business. What counts as starting a program:
 * - spawn/spawnSync/execFile/execFileSync/execa/execaSync('prog', …);
 * - run(['prog', …]) / runSync([…]) in a file that imports them from src/host/runner.ts, and any
 *   .run(['prog', …]) (the injected runners of src/);
 * - an argv builder's result, `=> ['prog', '-…', …]` or `return ['prog', '--…', …]` (setpriv's, unshare's);
 * - Puppeteer's executablePath: '…';
 * - a fallback to a program in a bin directory, `|| '/usr/sbin/sshd'` or `?? '/usr/bin/x'` (the
 *   default of a setting or variable that names the program to start);
 * - in shell text: the commands of `sh -c '…'`; in a string that runs `exec prog`, each word after
 *   `exec `, `&& ` or `sh -c '`.
 */
const SHELL_BUILTINS = new Set([
  'cd',
  'command',
  'echo',
  'exec',
  'exit',
  'export',
  'kill',
  'printf',
  'read',
  'set',
  'shift',
  'test',
  'trap',
  'wait',
  'then',
  'do',
  'done',
  'else',
  'for',
  'if',
  'while',
  'source',
  'complete', // fish's
  'compadd', // zsh's
  '_nixvm', // the completion scripts' own function
]);
const PROGRAM = /^(?:\/[\w./+-]+|[A-Za-z_][\w.+-]*)$/;

/** Commands of a shell text: the first word of each `;`, `&&`, `||`, `|` or newline segment. */
function shellCommands(text: string): string[] {
  const out: string[] = [];
  for (const seg of text.split(/;|&&|\|\||\||\n/)) {
    const words = seg.trim().split(/\s+/);
    // Assignments (`PATH=/x exec …`) and `exec` itself come before the command.
    while (words.length && (/^\w+=/.test(words[0]!) || words[0] === 'exec')) words.shift();
    const w = words[0];
    if (w && PROGRAM.test(w) && !SHELL_BUILTINS.has(w) && !seg.includes(`${w}()`)) out.push(w);
  }
  return out;
}

const STR = String.raw`(['"\x60])((?:\\.|(?!\1)[^\\])*?)\1`;

/** The code without its comments (whose apostrophes would open strings). */
function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[\s;,{}()])\/\/.*$/gm, '$1');
}

/** The programs a source file starts, as written (a path or a name). */
export function programsIn(source: string): string[] {
  const text = withoutComments(source);
  const found: string[] = [];
  const usesRunner = /import\s*\{[^}]*\brun(?:Sync)?\b[^}]*\}\s*from\s*['"][^'"]*host\/runner(?:\.ts)?['"]/.test(text);
  const patterns: RegExp[] = [
    new RegExp(String.raw`(?<![\w.$#])(?:spawn|spawnSync|execFile|execFileSync|execa|execaSync)\(\s*${STR}`, 'g'),
    new RegExp(String.raw`\.run\(\s*\[\s*${STR}`, 'g'),
    // An argv builder's result: `=> ['prog', '--flag', …]`, `return ['prog', '-x', …]`.
    new RegExp(String.raw`(?:=>|\breturn)\s*\[\s*${STR}\s*,\s*['"\x60]--?[A-Za-z]`, 'g'),
    new RegExp(String.raw`executablePath:\s*${STR}`, 'g'),
    /(?:\|\||\?\?)\s*(['"\x60])((?:\/usr)?(?:\/local)?\/s?bin\/[\w.+-]+)\1/g,
  ];
  if (usesRunner) patterns.push(new RegExp(String.raw`(?<![\w.$#])run(?:Sync)?\(\s*\[\s*${STR}`, 'g'));
  for (const re of patterns) {
    for (const m of text.matchAll(re)) {
      const p = m[2]!;
      if (!p.includes('${') && PROGRAM.test(p)) found.push(p);
    }
  }
  // `sh -c '<text>'`, as an argv literal (['sh', '-c', …] or ('sh', ['-c', …])); formatted code has
  // a space after each comma, a derivation's ATerm in a string none.
  const shC = new RegExp(
    String.raw`['"\x60](?:\/bin\/)?(?:sh|bash)['"\x60],\s+\[?\s*['"\x60]-c['"\x60],\s+${STR}`,
    'g',
  );
  for (const m of text.matchAll(shC)) found.push(...shellCommands(m[2]!.replace(/\$\{[^}]*\}/g, ' ')));
  // Shell text in a string (scripts the helpers write): in one that runs `exec prog`, that, each
  // `&& prog` and `sh -c 'prog …`.
  for (const str of text.matchAll(/'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|`(?:\\.|[^`\\])*`/g)) {
    if (!/\bexec\s+[\w/]/.test(str[0])) continue;
    for (const m of str[0].matchAll(
      /(?:\bexec\s|&&\s|\bsh -c\s+\\?['"])\s*(?:exec\s+)?(?:\w+=\S*\s+)*(\/[\w./+-]+|[a-z][\w.+-]*)(?=[\s'"\x60]|$)/g,
    )) {
      if (!SHELL_BUILTINS.has(m[1]!)) found.push(m[1]!);
    }
  }
  return found;
}
