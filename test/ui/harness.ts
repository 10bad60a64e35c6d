/**
 * Runs the real renderer bundle in Debian's Chromium with `window.nixvm` wired to an AgentPort
 * in the test process: the page gets the preload's own bridge code (src/app/bridge-core.ts,
 * bundled for the page), its invokes reach the main process's own dispatcher (validation, UI
 * verbs) through an exposed binding, and agent events are pushed back into the page. Only the
 * Electron-specific host (clipboard, Finder, Terminal) is replaced, by a recorder.
 */
import { build as esbuild } from 'esbuild';
import { build as viteBuild } from 'vite';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createServer, type Server } from 'node:http';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentEvent, AgentPort, LogKind, WireConsoleEvent } from '../../src/api/types.ts';
import { createUiHandlers, terminalOpenArgv, consoleAppArgv, type UiHost } from '../../src/app/actions.ts';
import { IpcDispatcher } from '../../src/app/dispatch.ts';
import { createAppHandlers, type AppHost } from '../../src/app/app-verbs.ts';
import type { CliToolFacts, PathEntry } from '../../src/app/cli-tool.ts';
import { run } from '../../src/host/runner.ts';
import { writeCommandFile } from '../../src/app/terminal.ts';
import { rendererConfig } from '../../scripts/vite.config.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');

export const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking'];

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** Everything the UI asked of the (Electron) host, for assertions. */
export class RecordingHost implements UiHost {
  clipboard: string[] = [];
  terminals: { file: string; body: string; argv: string[] }[] = [];
  foldersOpened: string[] = [];
  revealed: string[] = [];
  logWindows: { vm: string; kind: LogKind }[] = [];
  flakeErrorWindows: string[] = [];
  consoleApp: string[][] = [];
  settingsOpened = 0;
  quits = 0;
  launchAtLogin = false;
  /** Heights the dropdown asked for, latest last. */
  heights: number[] = [];
  /** What the folder chooser "picks" next (null = the user cancels). */
  nextFolder: string | null = null;
  /** Where "Use the Example" copies the checkout's example flake (null: the app carries none). */
  exampleDest: string | null = null;
  /** The consent dialogs shown, and what the user answers next (true: go ahead). */
  confirms: { message: string; detail: string; button: string }[] = [];
  nextConfirm = false;

  writeClipboard(text: string): void {
    this.clipboard.push(text);
  }
  async confirm(consent: { message: string; detail: string; button: string }): Promise<boolean> {
    this.confirms.push(consent);
    return this.nextConfirm;
  }
  async openTerminal(file: string, body: string, terminalApp: string): Promise<void> {
    // The file is real (as in the app); only `open -a` is not run (there is no Terminal here).
    await writeCommandFile(file, body);
    this.terminals.push({ file, body, argv: terminalOpenArgv(terminalApp, file) });
  }
  /** The checkout's CLI, as the app runs it in development. */
  nixvmCommand(): string[] {
    return [process.execPath, fileURLToPath(new URL('../../bin/nixvm.js', import.meta.url))];
  }
  async openFolder(dir: string): Promise<void> {
    this.foldersOpened.push(dir);
  }
  revealPath(p: string): void {
    this.revealed.push(p);
  }
  openLogWindow(vm: string, kind: LogKind): void {
    this.logWindows.push({ vm, kind });
  }
  openFlakeErrorWindow(dir: string): void {
    this.flakeErrorWindows.push(dir);
  }
  async openConsoleApp(file: string): Promise<void> {
    this.consoleApp.push(consoleAppArgv(file));
  }
  async chooseFolder(): Promise<string | null> {
    return this.nextFolder;
  }
  exampleFlake(): { source: string; dest: string } | null {
    return this.exampleDest ? { source: path.join(REPO, 'examples', 'flake'), dest: this.exampleDest } : null;
  }
  openSettings(): void {
    this.settingsOpened++;
  }
  async getLaunchAtLogin(): Promise<boolean> {
    return this.launchAtLogin;
  }
  async setLaunchAtLogin(enabled: boolean): Promise<boolean> {
    this.launchAtLogin = enabled;
    return enabled;
  }
  quit(): void {
    this.quits++;
  }
  fitDropdown(height: number): void {
    this.heights.push(height);
  }
}

/**
 * The app verbs' host: facts the test gives (temp folders in place of /usr/local/bin, a PATH),
 * the consent dialog answered by `answer` and recorded; mkdir and ln really run (in the test's
 * folders), osascript never does: its argv is recorded and `adminAnswer` stands for the prompt.
 */
export class RecordingAppHost implements AppHost {
  packaged = true;
  signed = false;
  platform = 'darwin';
  facts: Partial<CliToolFacts>;
  consents: { message: string; detail: string; button: string }[] = [];
  ran: string[][] = [];
  answer = true;
  adminAnswer = { exitCode: 1, stderr: '0:93: execution error: User canceled. (-128)' };
  constructor(facts: Partial<CliToolFacts> = {}) {
    this.facts = facts;
  }
  async cliToolFacts(): Promise<CliToolFacts> {
    const entry = (p: string): PathEntry => {
      try {
        return lstatSync(p).isSymbolicLink() ? { kind: 'link', target: readlinkSync(p) } : { kind: 'other' };
      } catch {
        return { kind: 'none' };
      }
    };
    return {
      launcher: null,
      home: os.homedir(),
      pathDirs: [],
      exists: existsSync,
      writable: () => false,
      entry,
      ...this.facts,
    };
  }
  async confirm(c: { message: string; detail: string; button: string }): Promise<boolean> {
    this.consents.push(c);
    return this.answer;
  }
  async run(argv: string[]): Promise<{ exitCode: number; stderr: string }> {
    this.ran.push(argv);
    if (argv[0] === '/usr/bin/osascript') return this.adminAnswer;
    const r = await run(argv, { allowFailure: true });
    return { exitCode: r.exitCode ?? 1, stderr: r.stderr };
  }
}

export interface Harness {
  browser: Browser;
  baseUrl: string;
  open(agent: AgentPort, page: 'index' | 'log' | 'settings', opts?: OpenOptions): Promise<AppPage>;
  close(): Promise<void>;
}

export interface OpenOptions {
  query?: Record<string, string>;
  colorScheme?: 'light' | 'dark';
  viewport?: { width: number; height: number };
  host?: RecordingHost;
  appHost?: RecordingAppHost;
  deviceScaleFactor?: number;
}

export interface AppPage {
  page: Page;
  context: BrowserContext;
  host: RecordingHost;
  appHost: RecordingAppHost;
  /** Console errors and CSP violations the page reported. */
  problems: string[];
  close(): Promise<void>;
}

function serve(dir: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (rel === '/favicon.ico') {
      // Chromium asks for it; Electron windows do not.
      res.writeHead(204).end();
      return;
    }
    const file = path.resolve(dir, `.${rel === '/' ? '/index.html' : rel}`);
    if (!file.startsWith(dir + path.sep)) {
      res.writeHead(403).end();
      return;
    }
    try {
      if (!statSync(file).isFile()) throw new Error('not a file');
      res.writeHead(200, {
        'content-type': MIME[path.extname(file)] ?? 'application/octet-stream',
        'cache-control': 'no-store',
      });
      res.end(readFileSync(file));
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      resolve({ server, url: `http://127.0.0.1:${port}/` });
    });
  });
}

/** The preload's bridge, bundled for the page, talking to the bindings below. */
async function pageBridgeScript(): Promise<string> {
  const out = await esbuild({
    stdin: {
      contents: `
        import { createBridge } from './src/app/bridge-core.ts';
        let deliver = () => {};
        let deliverConsole = () => {};
        window.__nixvmDeliver = (ev) => deliver(ev);
        window.__nixvmDeliverConsole = (ev) => deliverConsole(ev);
        window.nixvm = createBridge({
          invoke: (channel, arg) => window.__nixvmInvoke(channel, arg),
          listen: (fn) => { deliver = fn; },
          listenConsole: (fn) => { deliverConsole = fn; },
        });`,
      resolveDir: REPO,
      loader: 'ts',
    },
    bundle: true,
    write: false,
    format: 'iife',
    target: 'chrome120',
    logLevel: 'silent',
  });
  return out.outputFiles[0]!.text;
}

export async function startHarness(): Promise<Harness> {
  const outDir = mkdtempSync(path.join(os.tmpdir(), 'nixvm-renderer-'));
  await viteBuild(rendererConfig(outDir));
  const bridgeJs = await pageBridgeScript();
  const { server, url } = await serve(outDir);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });

  async function open(agent: AgentPort, which: 'index' | 'log' | 'settings', opts: OpenOptions = {}): Promise<AppPage> {
    const host = opts.host ?? new RecordingHost();
    const appHost = opts.appHost ?? new RecordingAppHost();
    const dispatcher = new IpcDispatcher(agent, createUiHandlers(agent, host), createAppHandlers(appHost));
    const context = await browser.newContext({
      colorScheme: opts.colorScheme ?? 'light',
      viewport:
        opts.viewport ??
        (which === 'index'
          ? { width: 380, height: 540 }
          : which === 'log'
            ? { width: 900, height: 560 }
            : { width: 560, height: 700 }),
      deviceScaleFactor: opts.deviceScaleFactor ?? 1,
    });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(String(e)));
    let closed = false;
    const client = {
      id: 'page',
      send(ev: AgentEvent) {
        if (closed) return;
        page
          .evaluate((e) => (window as unknown as { __nixvmDeliver(e: unknown): void }).__nixvmDeliver(e), ev)
          .catch(() => {});
      },
      sendConsole(ev: WireConsoleEvent) {
        if (closed) return;
        page
          .evaluate(
            (e) => (window as unknown as { __nixvmDeliverConsole(e: unknown): void }).__nixvmDeliverConsole(e),
            ev,
          )
          .catch(() => {});
      },
    };
    await page.exposeBinding('__nixvmInvoke', (_src, channel: string, arg: unknown) =>
      dispatcher.handle(channel, arg, client),
    );
    await page.addInitScript(bridgeJs);
    const q = new URLSearchParams(opts.query ?? {}).toString();
    await page.goto(`${url}${which}.html${q ? `?${q}` : ''}`);
    return {
      page,
      context,
      host,
      appHost,
      problems,
      async close() {
        closed = true;
        dispatcher.dropAll();
        await context.close();
      },
    };
  }

  return {
    browser,
    baseUrl: url,
    open,
    async close() {
      await browser.close();
      server.close();
      rmSync(outDir, { recursive: true, force: true });
    },
  };
}
