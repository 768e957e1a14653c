import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_RTC_MAX_PORT, DEFAULT_RTC_MIN_PORT, MEDIA_NODE_VARIABLES } from '../media-node/src/config.ts';
import { EDGE_VARIABLES } from '../workers/src/env-schema.ts';
import { buildMediaNode, MEDIA_NODE_LAUNCHER } from './build-media-node.ts';

/**
 * Starts the whole local stack: the edge under `wrangler dev` (miniflare, fully offline) and the
 * media node(s), wired to each other. `npm start`, the end-to-end tests and the benchmarks all use it,
 * so what the tests exercise is exactly what a developer runs.
 */
export interface StackOptions {
  edgeHost: string;
  edgePort: number;
  mediaHost: string;
  /** The first media node's port; node i listens on mediaPort + i. */
  mediaPort: number;
  /**
   * How many media nodes to run (default 1). The stack is the one owner of the node list: it gives
   * the edge their URLs as MEDIA_NODE_URL, each node its port, its id and its share of the RTC ports.
   */
  mediaNodes?: number;
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
  /** The first media node's control URL (the only one, unless `mediaNodes` > 1). */
  mediaUrl: string;
  /** Every media node's control URL, by index (each also serves /metrics). */
  mediaUrls: string[];
  /** wrangler dev's DevTools port: the Worker's isolate (heap snapshots in the soak). */
  edgeInspectorPort: number;
  secrets: { jwtSecret: string; mediaNodeSecret: string; generated: string[] };
  /** Kills a media node (no drain: as a crash would) and starts a fresh one on the same port. */
  restartMediaNode(index?: number): Promise<void>;
  /** A running media node's process id (undefined while none runs). */
  mediaNodePid(index?: number): number | undefined;
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
  const withMediaNode = options.withMediaNode ?? true;
  const nodeCount = withMediaNode ? (options.mediaNodes ?? 1) : 0;
  if (nodeCount > 1 && options.env.MEDIA_PUBLIC_URL) {
    throw new Error('MEDIA_PUBLIC_URL names one media node: leave it unset to run several');
  }
  const nodeUrl = (index: number) => `http://${dialHost(options.mediaHost)}:${options.mediaPort + index}`;
  const mediaUrls = Array.from({ length: Math.max(nodeCount, 1) }, (_, index) => nodeUrl(index));
  const [mediaUrl = nodeUrl(0)] = mediaUrls;

  // Secrets reach wrangler through a private env file, not the command line (visible in `ps`).
  const secretsDir = mkdtempSync(join(tmpdir(), 'truegather-'));
  const edgeEnvFile = join(secretsDir, 'edge.env');
  const edgeVars: Record<string, string | undefined> = {
    ...pick(options.env, EDGE_VARIABLES),
    JWT_SECRET: jwtSecret,
    MEDIA_NODE_SECRET: mediaNodeSecret,
    // A node signs its events with the URL it advertises; the edge must know it by that same URL.
    MEDIA_NODE_URL: withMediaNode ? (options.env.MEDIA_PUBLIC_URL ?? mediaUrls.join(',')) : options.env.MEDIA_NODE_URL,
  };
  writeFileSync(edgeEnvFile, toEnvFile(edgeVars), { mode: 0o600 });

  const children = new Set<ChildProcess>();
  const exits = new Map<ChildProcess, string>();
  const track = (name: string, child: ChildProcess) => {
    child.once('exit', (code, signal) => {
      const stderr = stderrTails.get(child)?.trim();
      exits.set(child, `${name} exited (${code ?? signal})${stderr ? `: …${stderr}` : ''}`);
    });
    children.add(child);
    return child;
  };
  const stop = async () => {
    stopping = true;
    for (const node of nodes) clearTimeout(node.restartTimer);
    await Promise.all([...children].map((child) => terminate(child)));
    rmSync(secretsDir, { recursive: true, force: true });
  };
  const outputOf = (name: string) => {
    const { output } = options;
    return typeof output === 'function' ? (line: string) => output(`[${name}] ${line}`) : output;
  };
  const startMediaNode = (index: number) =>
    track(
      nodeName(index),
      launchMediaNode(
        {
          ...pick(options.env, MEDIA_NODE_VARIABLES),
          ...(nodeCount > 1 ? nodeShare(options.env, index, nodeCount) : {}),
          MEDIA_HOST: options.mediaHost,
          MEDIA_PORT: String(options.mediaPort + index),
          MEDIA_NODE_SECRET: mediaNodeSecret,
          EDGE_URL: edgeUrl,
        },
        outputOf(nodeName(index)),
      ),
    );
  const nodeName = (index: number) => (nodeCount > 1 ? `media-node-${index + 1}` : 'media-node');
  /** Each node's running process and its supervision (restart delay, pending restart). */
  const nodes = Array.from({ length: nodeCount }, () => ({
    child: undefined as ChildProcess | undefined,
    restartDelayMs: SUPERVISED_RESTART_MIN_MS,
    restartTimer: undefined as NodeJS.Timeout | undefined,
  }));
  let stopping = false;
  const superviseMediaNode = (index: number) => {
    const node = nodes[index]!;
    const child = startMediaNode(index);
    node.child = child;
    const startedAt = Date.now();
    if (!options.superviseMediaNode) return;
    child.once('exit', (code, signal) => {
      // Stopped on purpose (stop, restartMediaNode): nothing to do.
      if (stopping || node.child !== child) return;
      node.child = undefined;
      children.delete(child);
      exits.delete(child);
      if (Date.now() - startedAt > SUPERVISED_HEALTHY_MS) node.restartDelayMs = SUPERVISED_RESTART_MIN_MS;
      report(`${nodeName(index)} exited (${code ?? signal}); starting it again in ${node.restartDelayMs / 1000} s`);
      node.restartTimer = setTimeout(() => {
        if (!stopping) superviseMediaNode(index);
      }, node.restartDelayMs);
      node.restartDelayMs = Math.min(node.restartDelayMs * 2, SUPERVISED_RESTART_MAX_MS);
    });
  };
  const report = (line: string) => {
    const { output } = options;
    if (output === 'inherit') console.error(`[stack] ${line}`);
    else output?.(`[stack] ${line}`);
  };
  for (const index of nodes.keys()) superviseMediaNode(index);

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
      ...nodes.map((_, index) => waitForHttp(mediaHealthUrl(options.env, index, mediaUrls[index]!), exits)),
    ]);
  } catch (error) {
    await stop();
    throw error;
  }

  const restartMediaNode = async (index = 0) => {
    const node = nodes[index];
    if (!node) throw new Error(`this stack runs no media node ${index}`);
    clearTimeout(node.restartTimer);
    const old = node.child;
    node.child = undefined;
    if (old) {
      await terminate(old, 'SIGKILL');
      children.delete(old);
      exits.delete(old);
    }
    superviseMediaNode(index);
    await waitForHttp(mediaHealthUrl(options.env, index, mediaUrls[index]!), exits);
  };
  return {
    edgeUrl,
    mediaUrl,
    mediaUrls,
    edgeInspectorPort,
    secrets: { jwtSecret, mediaNodeSecret, generated },
    restartMediaNode,
    mediaNodePid: (index = 0) => nodes[index]?.child?.pid,
    stop,
  };
}

/**
 * What sets node `index` of `count` apart on one host: its id (the registry's key), its share of the
 * RTC port range (so that two nodes never race for a port), and its own operator port when one is set.
 */
function nodeShare(env: StackOptions['env'], index: number, count: number): Record<string, string> {
  const min = Number(env.MEDIA_RTC_MIN_PORT ?? DEFAULT_RTC_MIN_PORT);
  const max = Number(env.MEDIA_RTC_MAX_PORT ?? DEFAULT_RTC_MAX_PORT);
  const size = Math.floor((max - min + 1) / count);
  const share: Record<string, string> = {
    MEDIA_NODE_ID: `${env.MEDIA_NODE_ID ?? hostname()}-${index + 1}`,
    MEDIA_RTC_MIN_PORT: String(min + index * size),
    MEDIA_RTC_MAX_PORT: String(min + (index + 1) * size - 1),
  };
  const operatorPort = Number(env.MEDIA_OPERATOR_PORT ?? 0);
  if (operatorPort !== 0) share.MEDIA_OPERATOR_PORT = String(operatorPort + index);
  return share;
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
 * current sources, once per process) through its launcher, on the Node that runs this script,
 * configured by `env` alone.
 */
export function launchMediaNode(
  env: Record<string, string>,
  output: 'inherit' | ((line: string) => void) | undefined,
): ChildProcess {
  if (!mediaNodeBuilt) buildMediaNode();
  mediaNodeBuilt = true;
  return launch(join(root, MEDIA_NODE_LAUNCHER), [], { NODE_BINARY: process.execPath, ...env }, output);
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
    // Kept so that a child that exits while starting says why (see `track`), e.g. a port taken meanwhile.
    let tail = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-STDERR_TAIL_CHARS);
      stderrTails.set(child, tail);
    });
  }
  return child;
}

const STDERR_TAIL_CHARS = 600;
/** The end of what a child launched without an output sink wrote to stderr. */
const stderrTails = new WeakMap<ChildProcess, string>();

/**
 * Where media node `index` answers /health: its own operator listener when MEDIA_OPERATOR_PORT gives
 * it one (a fixed port, one more per node: with 0 the stack could not know where to look), else the
 * control API's.
 */
function mediaHealthUrl(env: StackOptions['env'], index: number, mediaUrl: string): string {
  const port = Number(env.MEDIA_OPERATOR_PORT ?? 0);
  if (!port) return `${mediaUrl}/health`;
  return `http://${dialHost(env.MEDIA_OPERATOR_HOST ?? '127.0.0.1')}:${port + index}/health`;
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
