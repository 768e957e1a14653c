import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { newId } from '../../shared/src/ids.ts';
import { mediaControlPath } from '../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../shared/src/media-node-trust.ts';
import { EDGE_AUDIENCE, MEDIA_NODE_AUDIENCE, TOKEN_AUDIENCE, TOKEN_ISSUER } from '../../shared/src/token.ts';
import { hostileTokens } from '../support/hostile-tokens.ts';
import { MediaNodeProcess } from './harness.ts';

/**
 * Every hostile service token is refused (401) by every route of the media node's control API,
 * and none of them creates anything on the node.
 */
describe('media node control API: hostile tokens', () => {
  let node: MediaNodeProcess;
  let tokens: [string, string][];
  const roomId = newId();
  const participantId = newId();

  /** Every control route, with a body that would pass validation. */
  const ROUTES: [string, string, unknown][] = [
    ['POST', mediaControlPath('publish', roomId), { participant_id: participantId, sdp: 'v=0\r\n' }],
    ['DELETE', mediaControlPath('unpublish', roomId, participantId), undefined],
    ['POST', mediaControlPath('addIceCandidate', roomId, participantId), { target: 'publisher', candidate: null }],
    ['PUT', mediaControlPath('subscribe', roomId, participantId), { feeds: [newId()] }],
    ['POST', mediaControlPath('setSubscriberAnswer', roomId, participantId), { sdp: 'v=0\r\n' }],
    ['DELETE', mediaControlPath('closeSubscriber', roomId, participantId), undefined],
    ['DELETE', mediaControlPath('closeRoom', roomId), undefined],
  ];

  beforeAll(async () => {
    node = await MediaNodeProcess.start();
    tokens = await hostileTokens({
      secret: node.secret,
      claims: { iss: TOKEN_ISSUER, aud: MEDIA_NODE_AUDIENCE, node: mediaNodeIdentity(node.url) },
      // The node's own direction (events to the edge): a token captured there must not work here.
      wrongAudience: EDGE_AUDIENCE,
      wrongIssuer: node.nodeId,
      lifetimeSeconds: 30,
    });
    // A participant token (another audience and room-bound), signed with the same secret in case an
    // operator reused it: still not a control token.
    const participant = await new SignJWT({
      sub: participantId,
      room: roomId,
      name: 'Mallory',
      grants: { publish: true, subscribe: true, admin: true },
      jti: newId(),
    })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('15m')
      .sign(node.secret);
    tokens.push(['a participant token for the room', participant]);
  });

  afterAll(async () => {
    await node?.stop();
  });

  it('refuses each token on each route with 401 and the error envelope', async () => {
    for (const [method, path, body] of ROUTES) {
      for (const [label, token] of tokens) {
        const response = await node.request(method, path, body, { token });
        expect(response.status, `${method} ${path}: ${label}`).toBe(401);
        expect(ErrorEnvelopeSchema.parse(response.body).error.code).toBe('unauthorized');
      }
    }
  });

  it('created nothing, and a correct token still gets through authentication', async () => {
    const health = await fetch(new URL('/health', node.url));
    expect(((await health.json()) as { rooms: number }).rooms).toBe(0);
    // Past authentication, this body fails on its SDP (400), not on the token.
    const [method, path, body] = ROUTES[0]!;
    const response = await node.request(method, path, body);
    expect(response.status).toBe(400);
  });
});
