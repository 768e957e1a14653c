import { EventEmitter, once } from 'node:events';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  type ConnectionState,
  expectReply,
  type ReconnectPolicy,
  SignalingConnection,
} from '../../client/src/signaling-connection.ts';
import { TokenKeeper } from '../../client/src/token-keeper.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { createRoom, restJoin, startLoopbackStack } from '../support/e2e-stack.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { waitFor } from '../support/werift-peers.ts';

/**
 * Tokens live JWT_EXPIRY_SECONDS (6 s here instead of 900): a reconnect after that needs a refreshed
 * token. With the SDK's TokenKeeper the participant resumes; without it the reconnect is refused.
 * Nothing here races the clock: the tests wait until the edge itself refuses the first token, and
 * the keeper (which refreshes at two thirds of a token's life) gets 2 s for each refresh, enough on a
 * loaded machine; a reconnect that fails keeps retrying with the newest refreshed token.
 */
const TOKEN_SECONDS = 6;
let stack: RunningStack;

beforeAll(async () => {
  stack = await startLoopbackStack({ JWT_EXPIRY_SECONDS: String(TOKEN_SECONDS) }, { withMediaNode: false });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

async function connectThroughProxy(withKeeper: boolean, giveUpAfterMs: number) {
  const room = await createRoom(stack);
  const join = await restJoin(stack, room.id, 'Alice');
  const edge = new URL(stack.edgeUrl);
  const proxy = await startTcpProxy({ host: edge.hostname, port: Number(edge.port) });
  const reconnect: ReconnectPolicy = { giveUpAfterMs, initialDelayMs: 100, maxDelayMs: 500 };
  const connection = new SignalingConnection({
    url: join.ws_url.replace(`:${edge.port}/`, `:${proxy.port}/`),
    token: join.token,
    reconnect,
  });
  const states: ConnectionState[] = [];
  connection.on('state', (state) => states.push(state));
  const refreshes = new EventEmitter();
  const keeper = new TokenKeeper({
    baseUrl: stack.edgeUrl,
    roomId: room.id,
    token: join.token,
    expiresAt: new Date(join.expires_at),
    onToken: (token) => {
      connection.token = token;
      refreshes.emit('token', token);
    },
  });
  await connection.open();
  expectReply(await connection.request('join_room', { room_id: room.id, display: 'Alice' }), 'joined');
  if (withKeeper) keeper.start();
  // Past the first token's expiry, as the edge sees it: a refresh with it is refused.
  await edgeRefuses(room.id, join.token, new Date(join.expires_at));
  return { room, join, connection, proxy, keeper, refreshes, states };
}

/** Resolves once the edge answers 401 to a refresh with `token`; asks only after its expiry passed here. */
async function edgeRefuses(roomId: string, token: string, expiresAt: Date): Promise<void> {
  await waitFor(
    async () => {
      if (Date.now() < expiresAt.getTime()) return false;
      const response = await fetch(`${stack.edgeUrl}/api/v1/rooms/${roomId}/token`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
      });
      await response.body?.cancel();
      return response.status === 401;
    },
    { timeoutMs: (TOKEN_SECONDS + 15) * 1000, intervalMs: 200, message: 'the edge to refuse the first token' },
  );
}

it('a refreshed token lets a participant reconnect and resume after its first token expired', async () => {
  const { room, join, connection, proxy, keeper, refreshes, states } = await connectThroughProxy(true, 30_000);
  try {
    // Cut as a token issued after the first one died arrives: every reconnect presents a refreshed one.
    await once(refreshes, 'token');
    const resumed = new Promise<ServerFrame>((resolve) =>
      connection.on('reopened', () => {
        resolve(connection.request('join_room', { room_id: room.id, display: 'Alice' }));
      }),
    );
    proxy.cutAll();
    const joined = expectReply(await resumed, 'joined');
    expect(joined.payload.participant_id).toBe(join.participant_id);
    expect(states).toEqual(['open', 'reconnecting', 'open']);
  } finally {
    keeper.stop();
    connection.close();
    await proxy.close();
  }
}, 90_000);

it('without a refresh, the expired token is refused and the connection gives up', async () => {
  const { connection, proxy, states } = await connectThroughProxy(false, 5_000);
  try {
    const closed = new Promise((resolve) => connection.on('closed', resolve));
    proxy.cutAll();
    await closed;
    expect(states).toEqual(['open', 'reconnecting', 'closed']);
  } finally {
    connection.close();
    await proxy.close();
  }
}, 90_000);
