import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { mediaNodeIdentity } from '../../shared/src/media-node-trust.ts';
import { bodyDigest, signServiceToken } from '../../shared/src/service-token.ts';
import { EDGE_AUDIENCE, MEDIA_NODE_AUDIENCE } from '../../shared/src/token.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import { MEDIA_NODES_KEY } from '../../workers/src/media/media-node-placement.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import { createRoom, joinMember, roomStub, useMediaNode } from './support/rooms.ts';
import { BASE_URL } from './support/signaling-socket.ts';

const secret = () => edgeConfig(env).mediaNode!.secret;
const NODE_A = 'http://10.0.0.1:8081';
const NODE_B = 'http://10.0.0.2:8081';

/** The room's calls go to a fake node, and the room is pinned to NODE_A as placement would pin it. */
async function pinnedRoom() {
  const room = await createRoom();
  const ann = await joinMember(room.id, 'Ann');
  const bob = await joinMember(room.id, 'Bob');
  useMediaNode(room.id, new FakeMediaNode());
  await ann.socket.expectReply('publish_offer', { sdp: fakeSdp('ann offer') }, 'publish_answer');
  await runInDurableObject(roomStub(room.id), async (_instance, state) => {
    state.storage.kv.put(MEDIA_NODES_KEY, [[ann.participantId, NODE_A]]);
  });
  const ready = {
    type: 'publisher_ready',
    room_id: room.id,
    participant_id: ann.participantId,
    streams: [{ kind: 'video' as const, mid: '0', codec: 'VP8' }],
  };
  return { room, ann, bob, ready };
}

/** A token as a node signs one: issued by `node`, for `room`, for exactly `body`, used once by `jti`. */
async function eventToken(body: string, options: { node?: string; room: string; jti?: string; digestOf?: string }) {
  return signServiceToken(secret(), {
    issuer: mediaNodeIdentity(options.node ?? NODE_A),
    audience: EDGE_AUDIENCE,
    claims: {
      room: options.room,
      jti: options.jti ?? crypto.randomUUID(),
      body_sha256: await bodyDigest(options.digestOf ?? body),
    },
  });
}

function postEvent(body: string, token?: string) {
  return SELF.fetch(`${BASE_URL}/internal/media-events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body,
  });
}

describe('POST /internal/media-events', () => {
  it('refuses events without a valid edge-audience service token, and changes nothing', async () => {
    const room = await createRoom();
    const body = JSON.stringify({ type: 'publisher_closed', room_id: room.id, participant_id: room.id, reason: 'x' });
    const bound = { room: room.id, jti: crypto.randomUUID(), body_sha256: await bodyDigest(body) };
    const wrongAudience = await signServiceToken(secret(), {
      issuer: NODE_A,
      audience: MEDIA_NODE_AUDIENCE,
      claims: bound,
    });
    const wrongSecret = await signServiceToken(new TextEncoder().encode('x'.repeat(40)), {
      issuer: NODE_A,
      audience: EDGE_AUDIENCE,
      claims: bound,
    });
    // A plain service token, as nodes signed them before: bound to no room, no body, no jti.
    const unbound = await signServiceToken(secret(), { issuer: NODE_A, audience: EDGE_AUDIENCE });
    for (const token of [undefined, 'garbage', wrongAudience, wrongSecret, unbound]) {
      const response = await postEvent(body, token);
      expect(response.status).toBe(401);
      expect(await response.json()).toMatchObject({ error: { code: 'unauthorized' } });
    }
  });

  it('rejects an event outside the contract with 400', async () => {
    const roomId = newId();
    const body = JSON.stringify({ type: 'reboot', room_id: roomId });
    const response = await postEvent(body, await eventToken(body, { room: roomId }));
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: 'validation_failed' } });
  });

  it('delivers a signed publisher_ready from the room’s node: the others get publisher_joined', async () => {
    const { room, ann, bob, ready } = await pinnedRoom();
    const body = JSON.stringify(ready);
    const response = await postEvent(body, await eventToken(body, { room: room.id }));
    expect(response.status).toBe(200);
    const frame = await bob.socket.nextOf('publisher_joined');
    expect(frame.payload.publisher).toEqual({
      id: ann.participantId,
      display: 'Ann',
      streams: ready.streams.map((stream) => ({ ...stream, muted: false })),
    });
  });

  /**
   * Each refusal leaves the room as it was: the proof is that a valid event sent right after is the
   * first (and only) one anybody hears of.
   */
  async function expectRefusedThenClean(
    setup: Awaited<ReturnType<typeof pinnedRoom>>,
    refused: Response,
    status: number,
    code: string,
  ) {
    expect(refused.status).toBe(status);
    expect(await refused.json()).toMatchObject({ error: { code } });
    const body = JSON.stringify(setup.ready);
    expect((await postEvent(body, await eventToken(body, { room: setup.room.id }))).status).toBe(200);
    await setup.bob.socket.nextOf('publisher_joined');
    expect(setup.bob.socket.untaken('publisher_joined')).toEqual([]);
  }

  it('refuses an event from a node the room is not pinned to (403)', async () => {
    const setup = await pinnedRoom();
    const body = JSON.stringify(setup.ready);
    const refused = await postEvent(body, await eventToken(body, { room: setup.room.id, node: NODE_B }));
    await expectRefusedThenClean(setup, refused, 403, 'forbidden');
  });

  it('takes an event about a participant only from that participant’s node, one about the room from any of its nodes', async () => {
    const setup = await pinnedRoom();
    const { room, ann, bob } = setup;
    await runInDurableObject(roomStub(room.id), async (_instance, state) => {
      state.storage.kv.put(MEDIA_NODES_KEY, [
        [ann.participantId, NODE_A],
        [bob.participantId, NODE_B],
      ]);
    });
    const aboutBob = JSON.stringify({
      type: 'ice_candidate',
      room_id: room.id,
      participant_id: bob.participantId,
      target: 'subscriber',
      candidate: null,
    });
    const fromA = await postEvent(aboutBob, await eventToken(aboutBob, { room: room.id, node: NODE_A }));
    expect(fromA.status).toBe(403);
    const fromB = await postEvent(aboutBob, await eventToken(aboutBob, { room: room.id, node: NODE_B }));
    expect(fromB.status).toBe(200);
    expect((await bob.socket.nextOf('trickle_ice')).payload).toEqual({ target: 'subscriber', candidate: null });
    const speakers = JSON.stringify({ type: 'active_speakers', room_id: room.id, speakers: [] });
    for (const node of [NODE_A, NODE_B]) {
      expect((await postEvent(speakers, await eventToken(speakers, { room: room.id, node }))).status).toBe(200);
    }
    const third = JSON.stringify({ type: 'active_speakers', room_id: room.id, speakers: [] });
    const elsewhere = await postEvent(third, await eventToken(third, { room: room.id, node: 'http://10.0.0.3:8081' }));
    expect(elsewhere.status).toBe(403);
  });

  it('refuses an event for a room that is pinned to no node (403)', async () => {
    const room = await createRoom();
    await joinMember(room.id, 'Ann');
    const body = JSON.stringify({ type: 'publisher_closed', room_id: room.id, participant_id: room.id, reason: 'x' });
    const response = await postEvent(body, await eventToken(body, { room: room.id }));
    expect(response.status).toBe(403);
  });

  it('refuses a replayed token (409): one jti, one event', async () => {
    const setup = await pinnedRoom();
    const body = JSON.stringify(setup.ready);
    const token = await eventToken(body, { room: setup.room.id });
    expect((await postEvent(body, token)).status).toBe(200);
    await setup.bob.socket.nextOf('publisher_joined');
    // The same request again, twice: refused each time.
    for (let replay = 0; replay < 2; replay++) {
      const response = await postEvent(body, token);
      expect(response.status).toBe(409);
      expect(await response.json()).toMatchObject({ error: { code: 'conflict' } });
    }
    // The room goes on: the next event, with its own token, is the next thing anyone hears.
    const closed = JSON.stringify({
      type: 'publisher_closed',
      room_id: setup.room.id,
      participant_id: setup.ann.participantId,
      reason: 'gone',
    });
    expect((await postEvent(closed, await eventToken(closed, { room: setup.room.id }))).status).toBe(200);
    await setup.bob.socket.nextOf('publisher_left');
    expect(setup.bob.socket.untaken()).toEqual([]);
  });

  it('refuses a token bound to another room (403), even with the room’s node as issuer', async () => {
    const setup = await pinnedRoom();
    const other = await createRoom();
    const body = JSON.stringify(setup.ready);
    const refused = await postEvent(body, await eventToken(body, { room: other.id }));
    await expectRefusedThenClean(setup, refused, 403, 'forbidden');
  });

  it('refuses a token whose body digest is another body’s (401)', async () => {
    const setup = await pinnedRoom();
    const body = JSON.stringify(setup.ready);
    const harmless = JSON.stringify({ ...setup.ready, streams: [] });
    const refused = await postEvent(body, await eventToken(body, { room: setup.room.id, digestOf: harmless }));
    await expectRefusedThenClean(setup, refused, 401, 'unauthorized');
  });
});
