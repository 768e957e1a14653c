import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { newId } from '../../shared/src/ids.ts';
import { mediaControlPath } from '../../shared/src/media-control.ts';
import { signServiceToken } from '../../shared/src/service-token.ts';
import { EDGE_AUDIENCE, MEDIA_NODE_AUDIENCE, TOKEN_ISSUER } from '../../shared/src/token.ts';
import { TestPublisher, TestSubscriber } from '../support/werift-peers.ts';
import { MediaNodeProcess, publishThrough, subscribeThrough } from './harness.ts';

/** A syntactically valid SDP that no WebRTC stack can use. */
const GARBAGE_SDP =
  'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nthis is not sdp\r\n';

describe('media node control API: authentication, validation, errors', () => {
  let node: MediaNodeProcess;
  const roomId = newId();
  const publishersPath = mediaControlPath('publish', roomId);

  beforeAll(async () => {
    node = await MediaNodeProcess.start();
  });

  afterAll(async () => {
    await node?.stop();
  });

  const expectEnvelope = (body: unknown, code: string) => {
    expect(ErrorEnvelopeSchema.parse(body).error.code).toBe(code);
  };

  it.each([
    ['no token', async () => null],
    ['a malformed token', async () => 'not-a-jwt'],
    ['a token signed with another secret', async () => node.token({ secret: randomBytes(32) })],
    ['a token for the edge audience', async () => node.token({ audience: EDGE_AUDIENCE })],
    // Control tokens are bound to one node: what node A receives cannot be replayed against node B.
    ['a token minted for another node', async () => node.token({ node: 'http://127.0.0.1:1/' })],
    [
      'a token naming no node',
      async () => signServiceToken(node.secret, { issuer: TOKEN_ISSUER, audience: MEDIA_NODE_AUDIENCE }),
    ],
    [
      'an expired token',
      async () =>
        new SignJWT({})
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer('truegather-edge')
          .setAudience(MEDIA_NODE_AUDIENCE)
          .setIssuedAt(Math.floor(Date.now() / 1000) - 120)
          .setExpirationTime(Math.floor(Date.now() / 1000) - 90)
          .sign(node.secret),
    ],
    [
      'a token living longer than 60 s',
      async () =>
        new SignJWT({})
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer('truegather-edge')
          .setAudience(MEDIA_NODE_AUDIENCE)
          .setIssuedAt()
          .setExpirationTime('1h')
          .sign(node.secret),
    ],
  ])('answers 401 with the error envelope for %s', async (_, token) => {
    const response = await node.request(
      'POST',
      publishersPath,
      { participant_id: newId(), sdp: 'v=0' },
      {
        token: await token(),
      },
    );
    expect(response.status).toBe(401);
    expectEnvelope(response.body, 'unauthorized');
  });

  it('answers 400 bad_sdp for an SDP that cannot be used', async () => {
    const response = await node.request('POST', publishersPath, { participant_id: newId(), sdp: GARBAGE_SDP });
    expect(response.status).toBe(400);
    expectEnvelope(response.body, 'bad_sdp');
  });

  it('answers 400 bad_sdp for an offer without any usable audio or video', async () => {
    const sdp = [
      'v=0',
      'o=- 1 1 IN IP4 0.0.0.0',
      's=-',
      't=0 0',
      'a=group:BUNDLE 0',
      'm=video 9 UDP/TLS/RTP/SAVPF 100',
      'c=IN IP4 0.0.0.0',
      'a=ice-ufrag:abcd',
      'a=ice-pwd:abcdefghijklmnopqrstuvwx',
      'a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF',
      'a=setup:actpass',
      'a=mid:0',
      'a=sendonly',
      'a=rtcp-mux',
      'a=rtpmap:100 AV2/90000',
      '',
    ].join('\r\n');
    const response = await node.request('POST', publishersPath, { participant_id: newId(), sdp });
    expect(response.status).toBe(400);
    expectEnvelope(response.body, 'bad_sdp');
  });

  it('answers 400 for a body that is not JSON or does not match the schema, and for bad ids', async () => {
    const notJson = await node.request('POST', publishersPath, undefined, { rawBody: '{"participant_id":' });
    expect(notJson.status).toBe(400);
    expectEnvelope(notJson.body, 'bad_request');

    const extraField = await node.request('POST', publishersPath, { participant_id: newId(), sdp: 'v=0', admin: true });
    expect(extraField.status).toBe(400);
    expectEnvelope(extraField.body, 'validation_failed');

    const badRoom = await node.request('DELETE', mediaControlPath('closeRoom', 'not-an-id'));
    expect(badRoom.status).toBe(400);
    expectEnvelope(badRoom.body, 'validation_failed');
  });

  it('answers 413 for an oversize body without reading it', async () => {
    const response = await node.request('POST', publishersPath, {
      participant_id: newId(),
      sdp: `v=0\r\n${'a=x\r\n'.repeat(40_000)}`,
    });
    expect(response.status).toBe(413);
    expectEnvelope(response.body, 'payload_too_large');
  });

  it('answers 404 for unknown routes and rooms, 409 for an answer nobody asked for', async () => {
    const route = await node.request('GET', '/v1/nothing-here');
    expect(route.status).toBe(404);
    expectEnvelope(route.body, 'not_found');

    const answer = await node.request('POST', mediaControlPath('setSubscriberAnswer', newId(), newId()), {
      sdp: GARBAGE_SDP,
    });
    expect(answer.status).toBe(404);
    expectEnvelope(answer.body, 'not_found');

    // A subscriber whose offer was answered already: a second answer is out of turn; a candidate
    // that does not parse is refused.
    const room = newId();
    const publisherId = newId();
    const subscriberId = newId();
    const publisher = await TestPublisher.create({ video: false });
    const subscriber = new TestSubscriber();
    try {
      await publishThrough(node, room, publisherId, publisher);
      await subscribeThrough(node, room, subscriberId, subscriber, [publisherId]);
      const again = await node.request('POST', mediaControlPath('setSubscriberAnswer', room, subscriberId), {
        sdp: subscriber.pc.localDescription!.sdp,
      });
      expect(again.status).toBe(409);
      expectEnvelope(again.body, 'conflict');
      const candidate = await node.request('POST', mediaControlPath('addIceCandidate', room, publisherId), {
        target: 'publisher',
        candidate: { candidate: 'candidate:garbage', sdpMid: '0', sdpMLineIndex: 0 },
      });
      expect(candidate.status).toBe(400);
      expectEnvelope(candidate.body, 'bad_request');
    } finally {
      await Promise.all([publisher.close(), subscriber.close()]);
      await node.request('DELETE', mediaControlPath('closeRoom', room));
    }
  });

  it('treats removals as idempotent and keeps serving after every refusal', async () => {
    const unknownRoom = newId();
    for (const path of [
      mediaControlPath('unpublish', unknownRoom, newId()),
      mediaControlPath('closeSubscriber', unknownRoom, newId()),
      mediaControlPath('closeRoom', unknownRoom),
    ]) {
      const response = await node.request('DELETE', path);
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ ok: true });
    }

    const health = await fetch(new URL('/health', node.url));
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', draining: false, rooms: 0 });
    // And real work still succeeds.
    const publisher = await TestPublisher.create({ video: false });
    try {
      const answer = await publishThrough(node, newId(), newId(), publisher);
      expect(answer.streams).toEqual([expect.objectContaining({ kind: 'audio', codec: 'audio/opus' })]);
    } finally {
      await publisher.close();
    }
  });

  it('answers 400 bad_sdp for an offer with more than 8 audio/video m-lines, and keeps serving', async () => {
    const section = (mid: number) => [
      'm=video 9 UDP/TLS/RTP/SAVPF 96',
      'c=IN IP4 0.0.0.0',
      `a=mid:${mid}`,
      'a=sendonly',
      'a=rtcp-mux',
      'a=rtpmap:96 VP8/90000',
    ];
    const sdp = [
      'v=0',
      'o=- 1 1 IN IP4 0.0.0.0',
      's=-',
      't=0 0',
      'a=group:BUNDLE 0 1 2 3 4 5 6 7 8',
      'a=ice-ufrag:abcd',
      'a=ice-pwd:abcdefghijklmnopqrstuvwx',
      'a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF',
      'a=setup:actpass',
      ...Array.from({ length: 9 }, (_, mid) => section(mid)).flat(),
      '',
    ].join('\r\n');
    const room = newId();
    const response = await node.request('POST', mediaControlPath('publish', room), {
      participant_id: newId(),
      sdp,
    });
    expect(response.status).toBe(400);
    expectEnvelope(response.body, 'bad_sdp');

    const publisher = await TestPublisher.create({ video: false });
    try {
      const published = await publishThrough(node, room, newId(), publisher);
      expect(published.streams.map((stream) => stream.kind)).toEqual(['audio']);
    } finally {
      await publisher.close();
      await node.request('DELETE', mediaControlPath('closeRoom', room));
    }
  });
});
