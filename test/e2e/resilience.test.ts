import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConnectionState,
  expectReply,
  SignalingConnection,
  SignalingError,
} from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { createRoom, restJoin, startLoopbackStack } from '../support/e2e-stack.ts';
import { freePort } from '../support/ports.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { waitFor } from '../support/werift-peers.ts';

/**
 * Failures a user meets: a dropped connection (the SDK reconnects and resumes within the grace
 * period) and a media node that cannot be reached (an `error` frame, the socket stays up).
 */

let stack: RunningStack;
let deadMediaPort: number;

beforeAll(async () => {
  deadMediaPort = await freePort();
  // A media node that is configured but down.
  stack = await startLoopbackStack({ MEDIA_NODE_URL: `http://127.0.0.1:${deadMediaPort}` }, { withMediaNode: false });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

function recorder(connection: SignalingConnection) {
  const frames: ServerFrame[] = [];
  const states: ConnectionState[] = [];
  connection.on('frame', (frame) => frames.push(frame));
  connection.on('state', (state) => states.push(state));
  return { frames, states };
}

describe('resilience', () => {
  it('the SDK reconnects after an abrupt drop and resumes: nobody sees the participant leave', async () => {
    const room = await createRoom(stack);
    const edge = new URL(stack.edgeUrl);
    const proxy = await startTcpProxy({ host: edge.hostname, port: Number(edge.port) });
    try {
      const alice = await restJoin(stack, room.id, 'Alice');
      const bob = await restJoin(stack, room.id, 'Bob');
      const aliceConnection = new SignalingConnection({
        url: alice.ws_url.replace(`:${edge.port}/`, `:${proxy.port}/`),
        token: alice.token,
        reconnect: { giveUpAfterMs: 15_000, initialDelayMs: 100, maxDelayMs: 1_000 },
      });
      const aliceLog = recorder(aliceConnection);
      // What the SDK's client does on `reopened`: send join_room again to resume.
      const resumes: Promise<ServerFrame>[] = [];
      aliceConnection.on('reopened', () => {
        resumes.push(aliceConnection.request('join_room', { room_id: room.id, display: 'Alice' }));
      });
      await aliceConnection.open();
      expectReply(await aliceConnection.request('join_room', { room_id: room.id, display: 'Alice' }), 'joined');

      const bobConnection = new SignalingConnection({ url: bob.ws_url, token: bob.token });
      const bobLog = recorder(bobConnection);
      await bobConnection.open();
      const bobJoined = expectReply(
        await bobConnection.request('join_room', { room_id: room.id, display: 'Bob' }),
        'joined',
      );
      expect(bobJoined.payload.participants).toEqual([{ id: alice.participant_id, display: 'Alice' }]);

      proxy.cutAll();
      const resumed = expectReply(
        await waitFor(() => resumes[0], { timeoutMs: 10_000, message: 'reconnection' }),
        'joined',
      );
      expect(aliceLog.states).toEqual(['open', 'reconnecting', 'open']);
      expect(resumed.payload.participant_id).toBe(alice.participant_id);
      expect(resumed.payload.participants).toEqual([{ id: bob.participant_id, display: 'Bob' }]);

      // Bob saw neither a leave nor a second join (a reply to Bob orders every earlier event before it).
      await bobConnection.request('unpublish', {}).catch(() => undefined);
      expect(bobLog.frames.filter((frame) => frame.type === 'participant_left')).toEqual([]);
      expect(bobLog.frames.filter((frame) => frame.type === 'participant_joined')).toEqual([]);
      aliceConnection.close();
      bobConnection.close();
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('an unreachable media node is an error frame with code media_unavailable; the socket stays up', async () => {
    expect(deadMediaPort).toBeGreaterThan(0);
    const room = await createRoom(stack);
    const alice = await restJoin(stack, room.id, 'Alice');
    const connection = new SignalingConnection({ url: alice.ws_url, token: alice.token });
    await connection.open();
    expectReply(await connection.request('join_room', { room_id: room.id, display: 'Alice' }), 'joined');
    const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';
    const failure = await connection.request('publish_offer', { sdp }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(SignalingError);
    expect((failure as SignalingError).code).toBe('media_unavailable');
    // Still connected and serving requests.
    expect(connection.state).toBe('open');
    expectReply(await connection.request('leave', {}), 'ack');
  }, 30_000);
});
