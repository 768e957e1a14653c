import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from './ports.ts';

/** A disposable redis-server on a free loopback port: no persistence, gone when stopped. */
export interface RedisServer {
  url: string;
  port: number;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port (its data is gone: nothing is persisted). */
  restart(): Promise<void>;
  /** Freezes it (SIGSTOP), as a stalled host would: connections stay open and nothing answers. */
  pause(): void;
  /** Lets a paused server run on (SIGCONT). */
  resume(): void;
}

const READY_TIMEOUT_MS = 10_000;

/** True when a `redis-server` binary is on PATH. */
export function redisServerInstalled(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * Whether tests that need Redis run: yes when it is installed; when it is missing they are skipped,
 * unless REQUIRE_REDIS=1 (CI), which turns the missing tool into a failure.
 */
export function redisAvailableOrSkip(): boolean {
  if (redisServerInstalled()) return true;
  if (process.env.REQUIRE_REDIS === '1') {
    throw new Error('REQUIRE_REDIS=1 but redis-server is not installed (apt-get install redis-server)');
  }
  return false;
}

async function launch(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Never leave a redis-server behind when the test process dies without stopping it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`redis-server not ready after ${READY_TIMEOUT_MS} ms`)),
      READY_TIMEOUT_MS,
    );
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${error.message}\n${output}`));
    };
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('error', fail);
    child.once('exit', (code) => fail(new Error(`redis-server exited with code ${code}`)));
  });
  // Ready: stop collecting start-up output and watching for an early exit, but keep draining the pipes.
  child.removeAllListeners('exit');
  child.stdout?.removeAllListeners('data').resume();
  child.stderr?.removeAllListeners('data').resume();
  return child;
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  // A paused server would not act on SIGTERM.
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  await exited;
}

/** Starts redis-server on a free port (retrying if another process takes the port first). */
export async function startRedisServer(): Promise<RedisServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      let child = await launch(port);
      return {
        url: `redis://127.0.0.1:${port}`,
        port,
        stop: () => terminate(child),
        async restart() {
          await terminate(child);
          child = await launch(port);
        },
        pause: () => child.kill('SIGSTOP'),
        resume: () => child.kill('SIGCONT'),
      };
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}
