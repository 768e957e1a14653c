import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { MEDIA_CONTROL_ROUTES, type MediaControlOperation, mediaControlPath } from '../../shared/src/media-control.ts';
import { TestPublisher } from '../support/werift-peers.ts';
import { MediaNodeProcess } from './harness.ts';

/**
 * Property-based fuzzing of every control-API route of a real media node process, with a valid
 * service token (the hostile-token suite covers the others): random ids from a small pool (so that
 * calls meet the same rooms and peers), near-valid and random bodies, and a real werift offer now
 * and then. No answer is a 500, the node keeps running, and once every room is closed nothing is
 * left on it. Seeded.
 */

const ROOMS = ['AAAAAAAAAAAAAAAAAAAAAA', 'BBBBBBBBBBBBBBBBBBBBBB'];
const PEERS = ['pppppppppppppppppppppp', 'qqqqqqqqqqqqqqqqqqqqqq', 'rrrrrrrrrrrrrrrrrrrrrr'];

describe('fuzzing the media node control API', () => {
  let node: MediaNodeProcess;
  let publisher: TestPublisher;
  let realOffer: string;

  beforeAll(async () => {
    node = await MediaNodeProcess.start();
    publisher = await TestPublisher.create({ video: false });
    realOffer = await publisher.createOffer();
  });

  afterAll(async () => {
    await publisher?.close();
    await node?.stop();
  });

  it('answers every call without a 500, and leaves nothing behind once the rooms are closed', async () => {
    const roomId = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...ROOMS) }, fc.string({ maxLength: 30 }));
    const peerId = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...PEERS) }, fc.string({ maxLength: 30 }));
    const sdp = fc.oneof(
      fc.constant(realOffer),
      fc.string({ maxLength: 300 }).map((tail) => `v=0\r\n${tail}`),
      fc.constant(realOffer.replace(/a=fingerprint:[^\r]*/, 'a=fingerprint:sha-256 00')),
      fc.constant(realOffer.replace(/m=audio [^\r]*/, 'm=audio 9 UDP/TLS/RTP/SAVPF 255')),
    );
    const candidate = fc.oneof(
      fc.constant(null),
      fc.record({ candidate: fc.string({ maxLength: 120 }), sdpMid: fc.option(fc.string({ maxLength: 4 })) }),
      fc.constant({ candidate: 'candidate:1 1 udp 2130706431 127.0.0.1 9 typ host', sdpMid: '0' }),
    );
    /** Mostly the body the operation expects (with random contents), sometimes any JSON. */
    const BODIES: Record<MediaControlOperation, fc.Arbitrary<unknown>> = {
      publish: fc.record({ participant_id: peerId, sdp }, { requiredKeys: ['sdp'] }),
      unpublish: fc.constant(undefined),
      addIceCandidate: fc.record({ target: fc.constantFrom('publisher', 'subscriber', 'x'), candidate }),
      subscribe: fc.record({ feeds: fc.array(peerId, { maxLength: 4 }) }),
      setSubscriberAnswer: fc.record({ sdp }),
      closeSubscriber: fc.constant(undefined),
      closeRoom: fc.constant(undefined),
      describeRoom: fc.constant(undefined),
      mute: fc.record({
        kind: fc.constantFrom('audio', 'video', 'screen'),
        muted: fc.oneof(fc.boolean(), fc.string()),
      }),
      updateSubscription: fc.record(
        {
          feed: fc.oneof(peerId, fc.string({ maxLength: 8 })),
          max_width: fc.oneof(fc.integer({ min: -1, max: 20_000 }), fc.double()),
          max_height: fc.integer({ min: -1, max: 20_000 }),
          paused: fc.oneof(fc.boolean(), fc.string()),
        },
        { requiredKeys: [] },
      ),
      // Nothing answers at these origins: the relay is refused (503), never half set up.
      relay: fc.record({
        origin_url: fc.oneof(fc.constant('http://127.0.0.1:9/'), fc.string({ maxLength: 20 })),
        feeds: fc.array(peerId, { maxLength: 4 }),
      }),
      // The edge's token may not call the node-to-node routes (401) whatever the body.
      pull: fc.record({ feeds: fc.array(peerId, { maxLength: 4 }), connection: peerId }),
      setRelaySenderAnswer: fc.record({ sdp }),
      closeRelaySender: fc.constant(undefined),
    };
    const operation = fc.constantFrom(...(Object.keys(MEDIA_CONTROL_ROUTES) as MediaControlOperation[]));
    const call = fc.oneof(
      {
        weight: 8,
        arbitrary: fc
          .tuple(operation, roomId, peerId)
          .chain(([op, room, peer]) =>
            fc.tuple(
              fc.constant(MEDIA_CONTROL_ROUTES[op].method as string),
              fc.constant(mediaControlPath(op, room, peer)),
              fc.oneof({ weight: 4, arbitrary: BODIES[op] }, fc.jsonValue({ maxDepth: 3 })),
            ),
          ),
      },
      fc.tuple(
        fc.constantFrom('GET', 'PATCH', 'POST'),
        fc.string({ maxLength: 40 }).map((p) => `/v1/${encodeURIComponent(p)}`),
        fc.jsonValue({ maxDepth: 3 }),
      ),
    );

    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(
        call,
        fc.constantFrom('json', 'json', 'json', 'truncated', 'text'),
        fc.string({ maxLength: 100 }),
        async ([method, path, payload], shape, text) => {
          const json = JSON.stringify(payload) ?? '';
          const rawBody = { json, truncated: json.slice(0, -1), text }[shape];
          const response = await node.request(method, path, undefined, {
            rawBody: method === 'DELETE' || method === 'GET' ? undefined : rawBody,
          });
          statuses.add(response.status);
          expect(response.status, `${method} ${path} → ${JSON.stringify(response.body)}`).not.toBe(500);
          expect(response.status).toBeLessThan(504);
          if (response.status >= 400) ErrorEnvelopeSchema.parse(response.body);
        },
      ),
      { numRuns: 200, seed: 12_011 },
    );

    // The runs reached real state, not only refusals: publishers were created, subscriptions answered.
    expect(statuses).toContain(201);
    expect(statuses).toContain(200);
    // Still running, and closing the rooms leaves nothing: no room, no peer connection.
    for (const room of ROOMS)
      expect([200, 404]).toContain((await node.request('DELETE', mediaControlPath('closeRoom', room))).status);
    const health = (await (await fetch(new URL('/health', node.url))).json()) as { rooms: number; load: number };
    expect(health).toMatchObject({ rooms: 0, load: 0 });
  });
});
