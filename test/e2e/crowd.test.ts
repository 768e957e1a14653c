import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignalingError } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { Room, RoomDetails } from '../../shared/src/rest.ts';
import { joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { TestPublisher, waitFor } from '../support/werift-peers.ts';

/**
 * 50 clients join one room at once and all try to publish at once, through the real stack (#12
 * faults): every count is exact and the room's max_publishers is never exceeded.
 */

const CLIENTS = 50;
const MAX_PUBLISHERS = 3;
let stack: RunningStack;

beforeAll(async () => {
  stack = await startLoopbackStack();
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('a crowd', () => {
  it(`${CLIENTS} clients join one room at once: counts exact, max_publishers never exceeded`, async () => {
    const created = await fetch(`${stack.edgeUrl}/api/v1/rooms`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'crowd', max_publishers: MAX_PUBLISHERS }),
    });
    const room = (await created.json()) as Room;
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, (_, index) => joinParticipant(stack, room.id, `guest ${index}`)),
    );
    expect(new Set(clients.map((client) => client.id)).size).toBe(CLIENTS);

    // Everyone knows everyone else exactly once: from `joined`, or from participant_joined after it.
    for (const client of clients) {
      await waitFor(
        () => {
          const known = [
            ...(client.joined.payload.participants ?? []).map((participant) => participant.id),
            ...client.frames.flatMap((frame) =>
              frame.type === 'participant_joined' ? [frame.payload.participant.id] : [],
            ),
          ];
          return known.length === CLIENTS - 1 && new Set(known).size === CLIENTS - 1;
        },
        { timeoutMs: 15_000, message: 'every other participant, once' },
      );
    }

    // All offer at once (one real offer's text: the node answers each; none needs to connect).
    const publisher = await TestPublisher.create();
    const offer = await publisher.createOffer();
    const outcomes = await Promise.all(
      clients.map((client) =>
        client.connection.request('publish_offer', { sdp: offer }).then(
          (reply) => reply.type,
          (error: unknown) => (error instanceof SignalingError ? error.code : String(error)),
        ),
      ),
    );
    expect(outcomes.filter((outcome) => outcome === 'publish_answer')).toHaveLength(MAX_PUBLISHERS);
    expect(outcomes.filter((outcome) => outcome === 'room_full')).toHaveLength(CLIENTS - MAX_PUBLISHERS);

    const details = (await (await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}`)).json()) as RoomDetails;
    expect(details.participants).toBe(CLIENTS);
    expect(details.publishers.length).toBeLessThanOrEqual(MAX_PUBLISHERS);

    await publisher.close();
    for (const client of clients) client.connection.close();
  }, 90_000);
});
