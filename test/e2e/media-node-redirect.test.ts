import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply, SignalingConnection, SignalingError } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import { createRoom, restJoin, startLoopbackStack } from '../support/e2e-stack.ts';

/**
 * The edge calls a media node's control API with a bearer token; a node (or whatever answers at its
 * address) that redirects does not get the edge to carry that token elsewhere: the call fails as
 * media_unavailable and the redirect's target hears nothing.
 */

interface Heard {
  path: string;
  headers: IncomingHttpHeaders;
}

async function listen(handler: (path: string, headers: IncomingHttpHeaders) => [number, Record<string, string>]) {
  const heard: Heard[] = [];
  const server: Server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      const path = request.url ?? '/';
      heard.push({ path, headers: request.headers });
      const [status, headers] = handler(path, request.headers);
      response.writeHead(status, headers).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, heard, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

let stack: RunningStack;
let target: Awaited<ReturnType<typeof listen>>;
let redirecting: Awaited<ReturnType<typeof listen>>;

beforeAll(async () => {
  target = await listen(() => [200, { 'content-type': 'application/json' }]);
  redirecting = await listen((path) => [307, { location: `${target.url}${path}` }]);
  stack = await startLoopbackStack({ MEDIA_NODE_URL: redirecting.url }, { withMediaNode: false });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await redirecting?.close();
  await target?.close();
});

describe('a media node that redirects', () => {
  it('is not followed: the call fails as media_unavailable and the bearer token goes nowhere else', async () => {
    const room = await createRoom(stack);
    const alice = await restJoin(stack, room.id, 'Alice');
    const connection = new SignalingConnection({ url: alice.ws_url, token: alice.token });
    await connection.open();
    try {
      expectReply(await connection.request('join_room', { room_id: room.id, display: 'Alice' }), 'joined');
      const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';
      const failure = await connection.request('publish_offer', { sdp }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(SignalingError);
      expect((failure as SignalingError).code).toBe('media_unavailable');
      // The edge did call the node, with its token, and went no further.
      const calls = redirecting.heard.filter((call) => call.path.includes(room.id));
      expect(calls.length).toBeGreaterThan(0);
      expect(calls.every((call) => call.headers.authorization?.startsWith('Bearer '))).toBe(true);
      expect(target.heard).toEqual([]);
      expect(connection.state).toBe('open');
    } finally {
      connection.close();
    }
  }, 30_000);
});
