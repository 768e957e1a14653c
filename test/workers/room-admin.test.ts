import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import {
  type CreatedRoom,
  type JoinRoomRequest,
  type JoinRoomResponse,
  JoinRoomResponseSchema,
  ParticipantDetailsSchema,
  ParticipantListSchema,
} from '../../shared/src/rest.ts';
import { fetchWithEnv } from './rest-support.ts';
import { roundTrip } from './support/barrier.ts';
import { FakeMediaNode } from './support/fake-media-node.ts';
import { createAdminRoom, joinMember, publishReady, restJoin, tokenWithGrants, useMediaNode } from './support/rooms.ts';
import { BASE_URL, SignalingSocket, upgrade } from './support/signaling-socket.ts';

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function call(method: string, path: string, headers: Record<string, string> = {}, body?: unknown) {
  return SELF.fetch(`${BASE_URL}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function errorCode(response: Response): Promise<string> {
  return ((await response.json()) as { error: { code: string } }).error.code;
}

/** REST join asking for grants with `credential`. */
async function joinWithGrants(
  roomId: string,
  display: string,
  grants: NonNullable<JoinRoomRequest['grants']>,
  credential: string,
) {
  const response = await call('POST', `/api/v1/rooms/${roomId}/join`, bearer(credential), { display, grants });
  expect(response.status).toBe(200);
  return JoinRoomResponseSchema.parse(await response.json());
}

async function listParticipants(room: CreatedRoom) {
  const response = await call('GET', `/api/v1/rooms/${room.id}/participants`, bearer(room.admin_token));
  expect(response.status).toBe(200);
  return ParticipantListSchema.parse(await response.json()).participants;
}

async function connect(roomId: string, join: JoinRoomResponse, display: string): Promise<SignalingSocket> {
  const socket = await SignalingSocket.open(roomId, join.token);
  await socket.expectReply('join_room', { room_id: roomId, display }, 'joined');
  return socket;
}

describe('room admin credentials', () => {
  it("accept the room's admin_token and an admin-granted participant, and refuse everything else", async () => {
    const room = await createAdminRoom();
    const other = await createAdminRoom();
    const plain = await restJoin(room.id, 'Plain');
    const path = `/api/v1/rooms/${room.id}/participants`;

    expect((await call('GET', path)).status).toBe(401);
    expect((await call('GET', path, bearer('not-a-token'))).status).toBe(401);
    const asPlain = await call('GET', path, bearer(plain.token));
    expect(asPlain.status).toBe(403);
    expect(await errorCode(asPlain)).toBe('forbidden');
    expect((await call('GET', path, bearer(other.admin_token))).status).toBe(403);
    // An admin token is not a participant token either: it cannot open a socket.
    expect((await upgrade(room.id, room.admin_token)).status).toBe(401);

    expect((await call('GET', path, bearer(room.admin_token))).status).toBe(200);
    const host = await joinWithGrants(room.id, 'Host', { admin: true }, room.admin_token);
    expect((await call('GET', path, bearer(host.token))).status).toBe(200);
    // …but not for another room.
    expect((await call('GET', `/api/v1/rooms/${other.id}/participants`, bearer(host.token))).status).toBe(403);

    // The server's API_KEY administers every room; a wrong key is no credential at all.
    const apiKey = 'k'.repeat(32);
    const withKey = (key: string) => fetchWithEnv({ API_KEY: apiKey }, path, { headers: bearer(key) });
    expect((await withKey(apiKey)).status).toBe(200);
    expect((await withKey('x'.repeat(32))).status).toBe(401);
  });

  it('refuses grants in a join without admin authorization, with 403', async () => {
    const room = await createAdminRoom();
    const plain = await restJoin(room.id, 'Plain');
    for (const headers of [{}, bearer(plain.token), bearer('garbage')]) {
      const response = await call('POST', `/api/v1/rooms/${room.id}/join`, headers, {
        display: 'Sneaky',
        grants: { admin: true },
      });
      expect(response.status).toBe(403);
      expect(await errorCode(response)).toBe('forbidden');
    }
  });
});

describe('moderation', () => {
  it('lists participants with grants and streams; a hidden one is announced to nobody', async () => {
    const room = await createAdminRoom();
    useMediaNode(room.id, new FakeMediaNode());
    const ann = await joinMember(room.id, 'Ann');
    const recorder = await joinWithGrants(room.id, 'Recorder', { hidden: true, publish: false }, room.admin_token);
    const recorderSocket = await connect(room.id, recorder, 'Recorder');
    const bob = await joinMember(room.id, 'Bob');
    await publishReady(room.id, ann, [{ kind: 'audio', mid: '0' }], [bob.socket, recorderSocket]);

    // Bob's joined lists Ann only; Ann heard of Bob, never of the recorder.
    await roundTrip(ann.socket);
    const announced = ann.socket.untaken('participant_joined');
    expect(announced.map((frame) => frame.type === 'participant_joined' && frame.payload.participant.id)).toEqual([
      bob.participantId,
    ]);

    const participants = await listParticipants(room);
    expect(participants.map((p) => p.display)).toEqual(['Ann', 'Recorder', 'Bob']);
    const [annDetails, recorderDetails] = participants;
    expect(annDetails.streams).toEqual([{ kind: 'audio', mid: '0', muted: false }]);
    expect(annDetails.grants).toEqual({
      publish: true,
      subscribe: true,
      publish_data: true,
      admin: false,
      hidden: false,
    });
    expect(recorderDetails.grants).toMatchObject({ hidden: true, publish: false });
    expect(Date.parse(recorderDetails.joined_at)).toBeLessThanOrEqual(Date.now());
    const details = (await (await call('GET', `/api/v1/rooms/${room.id}`)).json()) as { participants: number };
    expect(details.participants).toBe(2);

    recorderSocket.close();
    for (const member of [ann, bob]) member.socket.close();
  });

  it('removes a participant: 4001, participant_left to the others, its token refused everywhere', async () => {
    const room = await createAdminRoom();
    const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
    const remove = (pid: string) =>
      call('POST', `/api/v1/rooms/${room.id}/participants/${pid}/remove`, bearer(room.admin_token));

    const response = await remove(bob.participantId);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ removed: true });
    expect(await bob.socket.closed).toEqual({ code: 4001, reason: 'removed' });
    expect((await ann.socket.nextOf('participant_left')).payload.participant.id).toBe(bob.participantId);

    expect((await upgrade(room.id, bob.token)).status).toBe(401);
    const refresh = await call('POST', `/api/v1/rooms/${room.id}/token`, bearer(bob.token));
    expect(refresh.status).toBe(401);
    expect((await listParticipants(room)).map((p) => p.id)).toEqual([ann.participantId]);
    expect((await remove(bob.participantId)).status).toBe(404);
    ann.socket.close();
  });

  it('changes grants at once: no more data, and revoking publish unpublishes; a reconnect keeps the change', async () => {
    const room = await createAdminRoom();
    const fake = new FakeMediaNode();
    useMediaNode(room.id, fake);
    const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
    await publishReady(room.id, bob, [{ kind: 'video', mid: '0' }], [ann.socket]);
    const patch = (body: unknown) =>
      call('PATCH', `/api/v1/rooms/${room.id}/participants/${bob.participantId}`, bearer(room.admin_token), body);

    const response = await patch({ grants: { publish: false, publish_data: false } });
    expect(response.status).toBe(200);
    expect(ParticipantDetailsSchema.parse(await response.json())).toMatchObject({
      id: bob.participantId,
      grants: { publish: false, publish_data: false, subscribe: true },
      streams: [],
    });
    expect((await ann.socket.nextOf('publisher_left')).payload.publisher_id).toBe(bob.participantId);
    // Bob himself is told his grants, not that his publishing was lost (which his SDK would redo).
    expect((await bob.socket.nextOf('grants_updated')).payload.grants).toMatchObject({
      publish: false,
      publish_data: false,
      subscribe: true,
    });
    expect(bob.socket.untaken('publisher_left')).toEqual([]);
    expect(fake.callsOf('unpublish').map((c) => c.participantId)).toContain(bob.participantId);
    const refusedData = await bob.socket.request('send_data', { data: 'x' });
    expect(refusedData).toMatchObject({ type: 'error', payload: { code: 'forbidden' } });

    // The same token, on a new socket: the room's grants hold, not the token's.
    const again = await connect(room.id, { token: bob.token } as JoinRoomResponse, 'Bob');
    const refusedOffer = await again.request('publish_offer', { sdp: 'v=0\r\n' });
    expect(refusedOffer).toMatchObject({ type: 'error', payload: { code: 'forbidden' } });

    expect((await patch({ grants: {} })).status).toBe(400);
    expect((await patch({ grants: { admin: true } })).status).toBe(400);
    const unknown = await call(
      'PATCH',
      `/api/v1/rooms/${room.id}/participants/AAAAAAAAAAAAAAAAAAAAAA`,
      bearer(room.admin_token),
      {
        grants: { publish: true },
      },
    );
    expect(unknown.status).toBe(404);
    for (const socket of [ann.socket, again]) socket.close();
  });

  it('revoking subscribe while the media node fails still applies, answers 200 and tells the participant', async () => {
    const room = await createAdminRoom();
    const fake = new FakeMediaNode();
    useMediaNode(room.id, fake);
    const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
    await publishReady(room.id, ann, [{ kind: 'video', mid: '0' }], [bob.socket]);
    await bob.socket.expectReply('subscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
    fake.failNext('closeSubscriber', 'media_unavailable');

    const response = await call(
      'PATCH',
      `/api/v1/rooms/${room.id}/participants/${bob.participantId}`,
      bearer(room.admin_token),
      { grants: { subscribe: false } },
    );
    expect(response.status).toBe(200);
    expect(ParticipantDetailsSchema.parse(await response.json()).grants).toMatchObject({ subscribe: false });
    expect((await bob.socket.nextOf('grants_updated')).payload.grants).toMatchObject({ subscribe: false });
    expect(fake.callsOf('closeSubscriber').map((c) => c.participantId)).toEqual([bob.participantId]);
    const refused = await bob.socket.request('subscribe', { feeds: [ann.participantId] });
    expect(refused).toMatchObject({ type: 'error', payload: { code: 'forbidden' } });
    for (const member of [ann, bob]) member.socket.close();
  });

  it('ends the room: every socket closes with 1000 "room closed", media torn down, GET answers 404', async () => {
    const room = await createAdminRoom();
    const fake = new FakeMediaNode();
    useMediaNode(room.id, fake);
    const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
    await publishReady(room.id, ann, [{ kind: 'audio', mid: '0' }], [bob.socket]);
    const plain = await call('DELETE', `/api/v1/rooms/${room.id}`, bearer(ann.token));
    expect(plain.status).toBe(403);

    const response = await call('DELETE', `/api/v1/rooms/${room.id}`, bearer(room.admin_token));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ deleted: true });
    for (const member of [ann, bob]) expect(await member.socket.closed).toEqual({ code: 1000, reason: 'room closed' });
    expect(fake.callsOf('closeRoom')).toHaveLength(1);
    expect((await call('GET', `/api/v1/rooms/${room.id}`)).status).toBe(404);
    expect((await call('POST', `/api/v1/rooms/${room.id}/join`, {}, { display: 'Late' })).status).toBe(404);
    expect((await call('GET', `/api/v1/rooms/${room.id}/participants`, bearer(room.admin_token))).status).toBe(404);
    // A token issued before the end finds no room to join.
    const late = await tokenWithGrants(room.id, { publish: true, subscribe: true, admin: false });
    const socket = await SignalingSocket.open(room.id, late.token);
    const refused = await socket.request('join_room', { room_id: room.id, display: 'Late' });
    expect(refused).toMatchObject({ type: 'error', payload: { code: 'not_found' } });
    socket.close();
  });
});
