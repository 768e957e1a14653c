import { env, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { signServiceToken } from '../../shared/src/service-token.ts';
import { EDGE_AUDIENCE, MEDIA_NODE_AUDIENCE } from '../../shared/src/token.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import { createRoom, joinMember, useMediaNode } from './support/rooms.ts';
import { BASE_URL } from './support/signaling-socket.ts';

const secret = () => edgeConfig(env).mediaNode!.secret;

function postEvent(body: unknown, token?: string) {
  return SELF.fetch(`${BASE_URL}/internal/media-events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
}

describe('POST /internal/media-events', () => {
  it('refuses events without a valid edge-audience service token, and changes nothing', async () => {
    const room = await createRoom();
    const event = { type: 'publisher_closed', room_id: room.id, participant_id: room.id, reason: 'x' };
    const wrongAudience = await signServiceToken(secret(), { issuer: 'media-node', audience: MEDIA_NODE_AUDIENCE });
    const wrongSecret = await signServiceToken(new TextEncoder().encode('x'.repeat(40)), {
      issuer: 'media-node',
      audience: EDGE_AUDIENCE,
    });
    for (const token of [undefined, 'garbage', wrongAudience, wrongSecret]) {
      const response = await postEvent(event, token);
      expect(response.status).toBe(401);
      expect(await response.json()).toMatchObject({ error: { code: 'unauthorized' } });
    }
  });

  it('rejects an event outside the contract with 400', async () => {
    const token = await signServiceToken(secret(), { issuer: 'media-node', audience: EDGE_AUDIENCE });
    const response = await postEvent({ type: 'reboot', room_id: 'x' }, token);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: 'validation_failed' } });
  });

  it('delivers a signed publisher_ready to the room: the others get publisher_joined', async () => {
    const room = await createRoom();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    useMediaNode(room.id, new FakeMediaNode());
    await ann.socket.expectReply('publish_offer', { sdp: fakeSdp('ann offer') }, 'publish_answer');

    const token = await signServiceToken(secret(), { issuer: 'media-node', audience: EDGE_AUDIENCE });
    const streams = [{ kind: 'video' as const, mid: '0', codec: 'VP8' }];
    const response = await postEvent(
      { type: 'publisher_ready', room_id: room.id, participant_id: ann.participantId, streams },
      token,
    );
    expect(response.status).toBe(200);
    const frame = await bob.socket.nextOf('publisher_joined');
    expect(frame.payload.publisher).toEqual({ id: ann.participantId, display: 'Ann', streams });
  });
});
