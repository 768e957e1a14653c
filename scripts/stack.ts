import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MEDIA_NODE_VARIABLES } from '../media-node/src/config.ts';
import { EDGE_VARIABLES } from '../workers/src/env-schema.ts';
import { buildMediaNode, MEDIA_NODE_ARGS, MEDIA_NODE_ENV } from './build-media-node.ts';

/**
 * Starts the whole local stack: the edge under `wrangler dev` (miniflare, fully offline) and the
 * media node, wired to each other. `npm start`, the end-to-end tests and the benchmarks all use it,
 * so what the tests exercise is exactly what a developer runs.
 */
export interface StackOptions {
  edgeHost: string;
  edgePort: number;
  mediaHost: string;
  mediaPort: number;
  /** Variables for both processes (secrets, ICE, Upstash…); missing secrets are generated. */
  env: Record<string, string | undefined>;
  /** Where child output goes: inherit for `npm start`, a callback (or nothing) for tests. */
  output?: 'inherit' | ((line: string) => void);
  /** Start the media node too (default true). */
  withMediaNode?: boolean;
  /**
   * Start the media node again when it dies (as an orchestrator would): after 1 s, doubling up to
   * 30 s while it keeps dying young. `npm start` sets it.
   */
  superviseMediaNode?: boolean;
}

export interface RunningStack {
  edgeUrl: string;
  mediaUrl: string;
  /** wrangler dev's DevTools port: the Worker's isolate (heap snapshots in the soak). */
  edgeInspectorPort: number;
  secrets: { jwtSecret: string; mediaNodeSecret: string; generated: string[] };
  /** Kills the media node (no drain: as a crash would) and starts a fresh one on the same port. */
  restartMediaNode(): Promise<void>;
  /** The running media node's process id (undefined while none runs). */
  mediaNodePid(): number | undefined;
  stop(): Promise<void>;
}

const root = fileURLToPath(new URL('..', import.meta.url));
/** A supervised media node is started again this long after it died, doubling while it keeps dying young. */
const SUPERVISED_RESTART_MIN_MS = 1_000;
const SUPERVISED_RESTART_MAX_MS = 30_000;
/** A node that ran this long was healthy: its next restart waits the minimum again. */
const SUPERVISED_HEALTHY_MS = 60_000;

export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/** The host to dial for a bind address: 0.0.0.0 and :: accept on loopback too. */
export function dialHost(bindHost: string): string {
  return bindHost === '0.0.0.0' || bindHost === '::' ? '127.0.0.1' : bindHost;
}

export async function startStack(options: StackOptions): Promise<RunningStack> {
  const generated: string[] = [];
  const secret = (name: string) => {
    const value = options.env[name];
    if (value) return value;
    generated.push(name);
    return generateSecret();
  };
  const jwtSecret = secret('JWT_SECRET');
  const mediaNodeSecret = secret('MEDIA_NODE_SECRET');
  const edgeUrl = `http://${dialHost(options.edgeHost)}:${options.edgePort}`;
  const mediaUrl = `http://${dialHost(options.mediaHost)}:${options.mediaPort}`;
  const withMediaNode = options.withMediaNode ?? true;

  // Secrets reach wrangler through a private env file, not the command line (visible in `ps`).
  const secretsDir = mkdtempSync(join(tmpdir(), 'truegather-'));
  const edgeEnvFile = join(secretsDir, 'edge.env');
  const edgeVars: Record<string, string | undefined> = {
    ...pick(options.env, EDGE_VARIABLES),
    JWT_SECRET: jwtSecret,
    MEDIA_NODE_SECRET: mediaNodeSecret,
    // The node signs its events with the URL it advertises; the edge must know it by that same URL.
    MEDIA_NODE_URL: withMediaNode ? (options.env.MEDIA_PUBLIC_URL ?? mediaUrl) : options.env.MEDIA_NODE_URL,
  };
  writeFileSync(edgeEnvFile, toEnvFile(edgeVars), { mode: 0o600 });

  const children = new Set<ChildProcess>();
  const exits = new Map<ChildProcess, string>();
  const track = (name: string, child: ChildProcess) => {
    child.once('exit', (code, signal) => exits.set(child, `${name} exited (${code ?? signal})`));
    children.add(child);
    return child;
  };
  const stop = async () => {
    stopping = true;
    clearTimeout(restartTimer);
    await Promise.all([...children].map((child) => terminate(child)));
    rmSync(secretsDir, { recursive: true, force: true });
  };
  const outputOf = (name: string) => {
    const { output } = options;
    return typeof output === 'function' ? (line: string) => output(`[${name}] ${line}`) : output;
  };
  const startMediaNode = () =>
    track(
      'media-node',
      launchMediaNode(
        {
          ...pick(options.env, MEDIA_NODE_VARIABLES),
          MEDIA_HOST: options.mediaHost,
          MEDIA_PORT: String(options.mediaPort),
          MEDIA_NODE_SECRET: mediaNodeSecret,
          EDGE_URL: edgeUrl,
        },
        outputOf('media-node'),
      ),
    );
  let mediaNode: ChildProcess | undefined;
  let stopping = false;
  let restartDelayMs = SUPERVISED_RESTART_MIN_MS;
  let restartTimer: NodeJS.Timeout | undefined;
  const superviseMediaNode = () => {
    const child = startMediaNode();
    mediaNode = child;
    const startedAt = Date.now();
    if (!options.superviseMediaNode) return;
    child.once('exit', (code, signal) => {
      // Stopped on purpose (stop, restartMediaNode): nothing to do.
      if (stopping || mediaNode !== child) return;
      mediaNode = undefined;
      children.delete(child);
      exits.delete(child);
      if (Date.now() - startedAt > SUPERVISED_HEALTHY_MS) restartDelayMs = SUPERVISED_RESTART_MIN_MS;
      report(`media node exited (${code ?? signal}); starting it again in ${restartDelayMs / 1000} s`);
      restartTimer = setTimeout(() => {
        if (!stopping) superviseMediaNode();
      }, restartDelayMs);
      restartDelayMs = Math.min(restartDelayMs * 2, SUPERVISED_RESTART_MAX_MS);
    });
  };
  const report = (line: string) => {
    const { output } = options;
    if (output === 'inherit') console.error(`[stack] ${line}`);
    else output?.(`[stack] ${line}`);
  };
  if (withMediaNode) superviseMediaNode();

  const edgeInspectorPort = await freePort();
  try {
    track(
      'edge',
      launch(
        process.execPath,
        [
          join(root, 'node_modules/wrangler/bin/wrangler.js'),
          'dev',
          '--ip',
          options.edgeHost,
          '--port',
          String(options.edgePort),
          '--env-file',
          edgeEnvFile,
          // wrangler's own pick (9229, else a probed free port) races with other wrangler processes
          // starting at the same moment, and the loser exits with "Address already in use".
          '--inspector-port',
          String(edgeInspectorPort),
          '--show-interactive-dev-session=false',
          // A caller that captures the output gets the Worker's own console lines too (wrangler's "log" level).
          '--log-level',
          options.output === 'inherit' ? 'info' : options.output ? 'log' : 'warn',
        ],
        { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
        outputOf('edge'),
      ),
    );
    await Promise.all([
      waitForHttp(`${edgeUrl}/health`, exits),
      withMediaNode ? waitForHttp(mediaHealthUrl(options.env, mediaUrl), exits) : undefined,
    ]);
  } catch (error) {
    await stop();
    throw error;
  }

  const restartMediaNode = async () => {
    if (!withMediaNode) throw new Error('this stack runs no media node');
    clearTimeout(restartTimer);
    const old = mediaNode;
    mediaNode = undefined;
    if (old) {
      await terminate(old, 'SIGKILL');
      children.delete(old);
      exits.delete(old);
    }
    superviseMediaNode();
    await waitForHttp(mediaHealthUrl(options.env, mediaUrl), exits);
  };
  return {
    edgeUrl,
    mediaUrl,
    edgeInspectorPort,
    secrets: { jwtSecret, mediaNodeSecret, generated },
    restartMediaNode,
    mediaNodePid: () => mediaNode?.pid,
    stop,
  };
}

function pick(env: Record<string, string | undefined>, names: readonly string[]): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of names) {
    const value = env[name];
    if (value) picked[name] = value;
  }
  return picked;
}

/**
 * A dotenv file for wrangler. Single-quoted values keep `"` and `\` as they are; `$` is escaped
 * against wrangler's variable expansion; the two characters single quotes cannot carry are refused.
 */
function toEnvFile(vars: Record<string, string | undefined>): string {
  return Object.entries(vars)
    .filter(([, value]) => value !== undefined && value !== '')
    .map(([key, value]) => {
      if (/['\n\r]/.test(value ?? '')) throw new Error(`${key} must not contain a single quote or a line break`);
      // wrangler expands `$NAME` in .env values (dotenv-expand) even inside quotes: `\$` keeps a `$`.
      return `${key}='${value?.replaceAll('$', '\\$')}'`;
    })
    .join('\n');
}

let mediaNodeBuilt = false;

/**
 * The media node as production starts it: the bundle of scripts/build-media-node.ts (built from the
 * current sources, once per process), configured by `env` alone.
 */
export function launchMediaNode(
  env: Record<string, string>,
  output: 'inherit' | ((line: string) => void) | undefined,
): ChildProcess {
  if (!mediaNodeBuilt) buildMediaNode();
  mediaNodeBuilt = true;
  return launch(process.execPath, MEDIA_NODE_ARGS, { ...MEDIA_NODE_ENV, ...env }, output);
}

/**
 * Starts a child process of the stack (or of a test harness: there is one launcher). It gets PATH and
 * friends but none of the parent's secrets except those in `extraEnv`, runs in a process group of
 * its own (so {@link terminate} reaches what it spawns), and its output goes to the terminal, to
 * `output` line by line, or nowhere.
 */
export function launch(
  command: string,
  args: string[],
  extraEnv: Record<string, string>,
  output: 'inherit' | ((line: string) => void) | undefined,
): ChildProcess {
  const baseEnv = pick(process.env, ['PATH', 'HOME', 'TMPDIR', 'XDG_CONFIG_HOME', 'LANG', 'NODE_OPTIONS']);
  const child = spawn(command, args, {
    cwd: root,
    env: { ...baseEnv, ...extraEnv },
    stdio: output === 'inherit' ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  if (typeof output === 'function') {
    for (const stream of [child.stdout, child.stderr]) {
      let buffered = '';
      stream?.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) output(line);
      });
    }
  } else if (output === undefined) {
    child.stdout?.resume();
    child.stderr?.resume();
  }
  return child;
}

/**
 * Where the media node answers /health: its own operator listener when MEDIA_OPERATOR_PORT gives it
 * one (a fixed port: with 0 the stack could not know where to look), else the control API's.
 */
function mediaHealthUrl(env: StackOptions['env'], mediaUrl: string): string {
  const port = env.MEDIA_OPERATOR_PORT;
  if (!port) return `${mediaUrl}/health`;
  return `http://${dialHost(env.MEDIA_OPERATOR_HOST ?? '127.0.0.1')}:${port}/health`;
}

/** Polls a health URL until it answers 200, failing fast when a child has exited. */
async function waitForHttp(url: string, exits: Map<ChildProcess, string>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [exit] = exits.values();
    if (exit) throw new Error(exit);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${url} did not become healthy within ${timeoutMs} ms`);
}

/**
 * Stops the child's process group (wrangler spawns workerd) at once, SIGKILL after 5 s. SIGTERM alone
 * makes the media node drain until its calls end; the SIGINT that follows stops it at once, which is
 * what stopping a local stack means. wrangler stops on either.
 */
export async function terminate(child: ChildProcess, signal: 'graceful' | 'SIGKILL' = 'graceful'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const signalGroup = (name: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, name);
    } catch {
      // already gone
    }
  };
  if (signal === 'SIGKILL') {
    signalGroup('SIGKILL');
  } else {
    signalGroup('SIGTERM');
    signalGroup('SIGINT');
  }
  const timer = setTimeout(() => signalGroup('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}
