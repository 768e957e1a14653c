import { afterAll, beforeAll, expect, it } from 'vitest';
import { expectReply } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { IceServer } from '../../shared/src/ice.ts';
import { type RunningTurnServer, startCoturn } from '../support/coturn.ts';
import { createRoom, joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { describeWithTool, findExecutable, requireTool } from '../support/required-tools.ts';
import { type PeerIceOptions, TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';

const turnserver = findExecutable('turnserver', '/usr/bin/turnserver');

/** werift takes one URL per ICE server entry. */
function relayOnly(servers: IceServer[]): PeerIceOptions {
  const iceServers = servers.flatMap((server) =>
    (Array.isArray(server.urls) ? server.urls : [server.urls]).map((urls) => ({
      urls,
      username: server.username,
      credential: server.credential,
    })),
  );
  return { iceServers, iceTransportPolicy: 'relay' };
}

describeWithTool(turnserver, 'REQUIRE_TURN')('relay-only call through coturn', () => {
  let turn: RunningTurnServer;
  let stack: RunningStack;

  beforeAll(async () => {
    turn = await startCoturn(requireTool(turnserver, 'coturn (turnserver)', 'REQUIRE_TURN'));
    stack = await startLoopbackStack({ TURN_SERVER: turn.url, TURN_SECRET: turn.secret });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await turn?.stop();
  });

  it('peers that may only use TURN relays connect and carry media', async () => {
    const room = await createRoom(stack, 'relay');
    const alice = await joinParticipant(stack, room.id, 'Alice');
    const bob = await joinParticipant(stack, room.id, 'Bob');

    const turnEntry = alice.join.ice_servers.find((server) => String(server.urls).startsWith('turn:'));
    expect(turnEntry?.username).toMatch(/^\d+:/);
    expect(turnEntry?.credential).toBeTruthy();

    const publisher = await TestPublisher.create({ ice: relayOnly(alice.join.ice_servers) });
    const offer = await publisher.createOffer();
    // Relay-only: the offer carries relay candidates and nothing else.
    expect(offer).toContain('typ relay');
    expect(offer).not.toContain('typ host');
    const answer = expectReply(await alice.connection.request('publish_offer', { sdp: offer }), 'publish_answer');
    await publisher.setAnswer(answer.payload.sdp);
    await waitFor(() => bob.frames.some((frame) => frame.type === 'publisher_joined'), {
      timeoutMs: 15_000,
      message: 'publisher_joined',
    });

    const subscriber = new TestSubscriber({ ice: relayOnly(bob.join.ice_servers) });
    const subscribeOffer = expectReply(
      await bob.connection.request('subscribe', { feeds: [alice.join.participant_id] }),
      'subscribe_offer',
    );
    const subscriberAnswer = await subscriber.answer(subscribeOffer.payload.sdp);
    expect(subscriberAnswer).toContain('typ relay');
    expect(subscriberAnswer).not.toContain('typ host');
    expectReply(await bob.connection.request('subscribe_answer', { sdp: subscriberAnswer }), 'ack');

    await waitFor(() => subscriber.packets('video') >= 50 && subscriber.packets('audio') >= 50, {
      timeoutMs: 20_000,
      message: 'media through the relays',
    });

    await Promise.all([publisher.close(), subscriber.close()]);
    alice.connection.close();
    bob.connection.close();
  }, 90_000);
});
