import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { freePort } from './ports.ts';

export interface RunningTurnServer {
  /** `turn:127.0.0.1:<port>?transport=udp`, as TURN_SERVER takes it. */
  url: string;
  /** The shared secret of the TURN REST API (coturn `static-auth-secret`), as TURN_SECRET takes it. */
  secret: string;
  stop(): Promise<void>;
}

/**
 * A real coturn on loopback with TURN REST API credentials (../shared/notes/reference-peers.md):
 * relays only on 127.0.0.1, no TLS, loopback peers allowed (the media node listens there in tests).
 */
export async function startCoturn(binary: string): Promise<RunningTurnServer> {
  const port = await freePort();
  const secret = randomBytes(32).toString('base64url');
  const relayBase = 20_000 + Math.floor(Math.random() * 20) * 500;
  const child = spawn(
    binary,
    [
      '-n',
      '--listening-ip=127.0.0.1',
      '--relay-ip=127.0.0.1',
      `--listening-port=${port}`,
      `--min-port=${relayBase}`,
      `--max-port=${relayBase + 499}`,
      '--use-auth-secret',
      `--static-auth-secret=${secret}`,
      '--realm=truegather.test',
      '--no-tls',
      '--no-dtls',
      '--no-cli',
      '--allow-loopback-peers',
      '--no-stdout-log',
      '--log-file=/dev/null',
    ],
    { stdio: 'ignore' },
  );
  await waitForTcp(port, child);
  return {
    url: `turn:127.0.0.1:${port}?transport=udp`,
    secret,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Resolves once coturn accepts TCP on its listening port (it opens UDP and TCP together). */
async function waitForTcp(port: number, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`turnserver exited (${child.exitCode})`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`turnserver did not listen on ${port} within ${timeoutMs} ms`);
}
