import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import { type WebhookEvent, WebhookEventSchema } from '../../shared/src/webhooks.ts';
import { createRoom, joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { WebhookEndpoint } from '../support/webhook-endpoint.ts';
import { TestPublisher, waitFor } from '../support/werift-peers.ts';

/**
 * Webhooks through the real stack: `wrangler dev` runs the Cloudflare Queue (miniflare), the rooms
 * produce, the Worker's consumer POSTs to a local receiver, which verifies every request with the
 * off-the-shelf `standardwebhooks` package, as an app server would.
 */

/** How long the receiver answers 500 in the retry test: a minute, as an app server's deploy might. */
const OUTAGE_MS = 60_000;
/** How long the receiver answers with a redirect in the redirect test. */
const REDIRECT_MS = 8_000;
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

/**
 * The app's receiver: verifies signatures; answers 500 until `failingUntil` (an outage), and 307 to
 * another path of its own until `redirectingUntil` (counting any delivery that follows it).
 */
class Receiver extends WebhookEndpoint {
  readonly events: WebhookEvent[] = [];
  readonly ids: string[] = [];
  unverified = 0;
  failingUntil = 0;
  refused = 0;
  redirectingUntil = 0;
  redirected = 0;
  followed = 0;
  /** When each event was accepted, by room. */
  readonly accepted: { roomId: string; at: number }[] = [];
  readonly #verifier = new Webhook(SECRET);

  protected answer(body: string, headers: IncomingHttpHeaders, path: string) {
    if (path !== '/webhooks') {
      this.followed += 1;
      return 204;
    }
    if (Date.now() < this.redirectingUntil) {
      this.redirected += 1;
      return { status: 307, headers: { location: '/webhooks-moved' } };
    }
    if (Date.now() < this.failingUntil) {
      this.refused += 1;
      return 500;
    }
    try {
      const verified = this.#verifier.verify(body, headers as Record<string, string>);
      const event = WebhookEventSchema.parse(verified);
      this.events.push(event);
      this.ids.push(String(headers['webhook-id']));
      this.accepted.push({ roomId: event.data.room_id, at: Date.now() });
      return 204;
    } catch {
      this.unverified += 1;
      return 400;
    }
  }

  /** The room's events, once deduplicated (at least once) and put in order by `seq`. */
  ofRoom(roomId: string): WebhookEvent[] {
    const bySeq = new Map<number, WebhookEvent>();
    for (const event of this.events) if (event.data.room_id === roomId) bySeq.set(event.data.seq, event);
    return [...bySeq.values()].sort((a, b) => a.data.seq - b.data.seq);
  }
}

let stack: RunningStack;
const receiver = new Receiver();

beforeAll(async () => {
  const url = await receiver.listen();
  stack = await startLoopbackStack({ WEBHOOK_URL: url, WEBHOOK_SECRET: SECRET });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await receiver.close();
});

const endRoom = (roomId: string, adminToken: string) =>
  fetch(`${stack.edgeUrl}/api/v1/rooms/${roomId}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${adminToken}` },
  });

describe('webhooks through a Cloudflare Queue to a local receiver', () => {
  it('delivers every event type, signed, numbered in the room’s order', async () => {
    const room = await createRoom(stack, 'webhooks');
    const alice = await joinParticipant(stack, room.id, 'Alice');
    const publisher = await TestPublisher.create();
    const answer = expectReply(
      await alice.connection.request('publish_offer', { sdp: await publisher.createOffer() }),
      'publish_answer',
    );
    await publisher.setAnswer(answer.payload.sdp);
    await waitFor(() => receiver.ofRoom(room.id).some((event) => event.type === 'track.published'), {
      timeoutMs: 20_000,
      message: 'track.published',
    });
    expectReply(await alice.connection.request('mute', { kind: 'audio', muted: true }), 'ack');
    expectReply(await alice.connection.request('unpublish', {}), 'ack');
    expectReply(await alice.connection.request('leave', {}), 'ack');
    expect((await endRoom(room.id, room.admin_token)).status).toBe(200);

    const expected = [
      'room.started',
      'participant.joined',
      'track.published',
      'track.muted',
      'track.unpublished',
      'participant.left',
      'room.finished',
    ];
    const events = await waitFor(
      () => (receiver.ofRoom(room.id).length >= expected.length ? receiver.ofRoom(room.id) : undefined),
      {
        timeoutMs: 30_000,
        message: 'every event type',
      },
    );
    expect(events.map((event) => event.type)).toEqual(expected);
    expect(events.map((event) => event.data.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(events[1]?.data.participant).toEqual({ id: alice.id, display: 'Alice' });
    expect(events[2]?.data.streams?.map((stream) => stream.kind).sort()).toEqual(['audio', 'video']);
    expect(events[3]?.data).toMatchObject({ kind: 'audio', muted: true, by: 'self' });
    expect(events[6]?.data.reason).toBe('room_deleted');
    expect(receiver.unverified).toBe(0);
    await publisher.close();
  }, 90_000);

  it('follows no redirect: a 3xx is a failed delivery, retried at the same URL', async () => {
    const redirectEnds = Date.now() + REDIRECT_MS;
    receiver.redirectingUntil = redirectEnds;
    const room = await createRoom(stack, 'webhooks redirected');
    const ann = await joinParticipant(stack, room.id, 'Ann');
    expectReply(await ann.connection.request('leave', {}), 'ack');
    expect((await endRoom(room.id, room.admin_token)).status).toBe(200);
    const events = await waitFor(() => (receiver.ofRoom(room.id).length >= 4 ? receiver.ofRoom(room.id) : undefined), {
      timeoutMs: REDIRECT_MS + 60_000,
      message: 'every event after the redirects',
    });
    expect(events.map((event) => event.type)).toEqual([
      'room.started',
      'participant.joined',
      'participant.left',
      'room.finished',
    ]);
    expect(receiver.redirected).toBeGreaterThan(0);
    expect(receiver.followed).toBe(0);
    const acceptedAt = receiver.accepted.filter((entry) => entry.roomId === room.id).map((entry) => entry.at);
    expect(Math.min(...acceptedAt)).toBeGreaterThanOrEqual(redirectEnds);
  }, 90_000);

  it(
    'a receiver that answers 500 for a minute still gets every event afterwards, in the room’s sequence',
    async () => {
      const room = await createRoom(stack, 'webhooks retried');
      const outageEnds = Date.now() + OUTAGE_MS;
      receiver.failingUntil = outageEnds;
      const refusedBefore = receiver.refused;
      const people = [];
      for (const display of ['Ann', 'Bob', 'Cid']) people.push(await joinParticipant(stack, room.id, display));
      for (const person of people) expectReply(await person.connection.request('leave', {}), 'ack');
      expect((await endRoom(room.id, room.admin_token)).status).toBe(200);

      const total = 1 + 3 + 3 + 1;
      const events = await waitFor(
        () => (receiver.ofRoom(room.id).length >= total ? receiver.ofRoom(room.id) : undefined),
        {
          // The queue retries each event at 2, 4, 8, 16, 32 s…: all are in about a minute after the outage.
          timeoutMs: OUTAGE_MS + 90_000,
          message: 'every event after the outage',
        },
      );
      // The outage was felt (the room's first deliveries refused), and none of its events got through during it.
      expect(receiver.refused - refusedBefore).toBeGreaterThan(0);
      const acceptedAt = receiver.accepted.filter((entry) => entry.roomId === room.id).map((entry) => entry.at);
      expect(Math.min(...acceptedAt)).toBeGreaterThanOrEqual(outageEnds);
      expect(events.map((event) => event.data.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(events.map((event) => event.type)).toEqual([
        'room.started',
        'participant.joined',
        'participant.joined',
        'participant.joined',
        'participant.left',
        'participant.left',
        'participant.left',
        'room.finished',
      ]);
      expect(events.slice(1, 4).map((event) => event.data.participant?.display)).toEqual(['Ann', 'Bob', 'Cid']);
      expect(receiver.unverified).toBe(0);
    },
    OUTAGE_MS + 120_000,
  );
});
