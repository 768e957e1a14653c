import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ConnectionState, expectReply, SignalingConnection } from '../../client/src/signaling-connection.ts';
import { TokenKeeper } from '../../client/src/token-keeper.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { createRoom, restJoin, startLoopbackStack } from '../support/e2e-stack.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { waitFor } from '../support/werift-peers.ts';

/**
 * Tokens live JWT_EXPIRY_SECONDS (3 s here instead of 900): a reconnect after that needs a refreshed
 * token. With the SDK's TokenKeeper the participant resumes; without it the reconnect is refused.
 */
const TOKEN_SECONDS = 3;
let stack: RunningStack;

beforeAll(async () => {
  stack = await startLoopbackStack({ JWT_EXPIRY_SECONDS: String(TOKEN_SECONDS) }, { withMediaNode: false });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

async function connectThroughProxy(withKeeper: boolean) {
  const room = await createRoom(stack);
  const join = await restJoin(stack, room.id, 'Alice');
  const edge = new URL(stack.edgeUrl);
  const proxy = await startTcpProxy({ host: edge.hostname, port: Number(edge.port) });
  const connection = new SignalingConnection({
    url: join.ws_url.replace(`:${edge.port}/`, `:${proxy.port}/`),
    token: join.token,
    reconnect: { giveUpAfterMs: 5_000, initialDelayMs: 100, maxDelayMs: 500 },
  });
  const states: ConnectionState[] = [];
  connection.on('state', (state) => states.push(state));
  let refreshed = 0;
  const keeper = new TokenKeeper({
    baseUrl: stack.edgeUrl,
    roomId: room.id,
    token: join.token,
    expiresAt: new Date(join.expires_at),
    onToken: (token) => {
      refreshed++;
      connection.token = token;
    },
  });
  await connection.open();
  expectReply(await connection.request('join_room', { room_id: room.id, display: 'Alice' }), 'joined');
  if (withKeeper) keeper.start();
  // Past the first token's expiry (and, with the keeper, after at least one refresh).
  const expiry = new Date(join.expires_at).getTime();
  await waitFor(() => Date.now() > expiry + 500 && (!withKeeper || refreshed > 0), {
    timeoutMs: (TOKEN_SECONDS + 5) * 1000,
    message: 'the first token to expire',
  });
  return { room, join, connection, proxy, keeper, states };
}

it('a refreshed token lets a participant reconnect and resume after its first token expired', async () => {
  const { room, join, connection, proxy, keeper, states } = await connectThroughProxy(true);
  try {
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
}, 30_000);

it('without a refresh, the expired token is refused and the connection gives up', async () => {
  const { connection, proxy, states } = await connectThroughProxy(false);
  try {
    const closed = new Promise((resolve) => connection.on('closed', resolve));
    proxy.cutAll();
    await closed;
    expect(states.at(-1)).toBe('closed');
  } finally {
    connection.close();
    await proxy.close();
  }
}, 30_000);
