import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { ParticipantDetailsSchema, RoomDetailsSchema } from '../../shared/src/rest.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import { annPublishingToBob, createAdminRoom, joinMember, publishReady, useMediaNode } from './support/rooms.ts';
import { BASE_URL } from './support/signaling-socket.ts';

/** Ann publishes audio and video, and Bob has seen her. */
const annPublishingAudioVideoToBob = () =>
  annPublishingToBob([
    { kind: 'audio', mid: '0' },
    { kind: 'video', mid: '1' },
  ]);

function adminMute(roomId: string, adminToken: string, participantId: string, body: unknown) {
  return SELF.fetch(`${BASE_URL}/api/v1/rooms/${roomId}/participants/${participantId}/mute`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify(body),
  });
}

const mutedOf = async (roomId: string) => {
  const details = RoomDetailsSchema.parse(await (await SELF.fetch(`${BASE_URL}/api/v1/rooms/${roomId}`)).json());
  return details.publishers.flatMap((publisher) => publisher.streams.map((s) => `${s.kind}:${s.muted}`));
};

const codeOf = (reply: unknown) => (reply as { payload: { code?: string } }).payload.code;

describe('mute', () => {
  it('self-mute: the node stops that kind, everyone hears track_muted, joined and GET show it', async () => {
    const { room, fake, ann, bob } = await annPublishingAudioVideoToBob();

    await ann.socket.expectReply('mute', { kind: 'audio', muted: true }, 'ack');
    const expected = { publisher_id: ann.participantId, kind: 'audio', muted: true, by: 'self', locked: false };
    for (const socket of [ann.socket, bob.socket])
      expect((await socket.nextOf('track_muted')).payload).toEqual(expected);
    expect(fake.callsOf('mute')).toEqual([
      { method: 'mute', roomId: room.id, participantId: ann.participantId, detail: { kind: 'audio', muted: true } },
    ]);
    expect(await mutedOf(room.id)).toEqual(['audio:true', 'video:false']);
    const late = await joinMember(room.id, 'Late');
    const joined = late.socket.received.find((frame) => 'type' in frame && frame.type === 'joined');
    expect(joined).toMatchObject({ payload: { publishers: [{ streams: [{ muted: true }, { muted: false }] }] } });

    await ann.socket.expectReply('mute', { kind: 'audio', muted: false }, 'ack');
    expect((await bob.socket.nextOf('track_muted')).payload).toMatchObject({ muted: false, by: 'self' });
    expect(fake.callsOf('mute').at(-1)?.detail).toEqual({ kind: 'audio', muted: false });
    expect(await mutedOf(room.id)).toEqual(['audio:false', 'video:false']);
    for (const member of [ann, bob, late]) member.socket.close();
  });

  it('admin mute is a lock: the participant cannot lift it, and lifting it does not unmute', async () => {
    const { room, fake, ann, bob } = await annPublishingAudioVideoToBob();

    const muted = await adminMute(room.id, room.admin_token, ann.participantId, { kind: 'video', muted: true });
    expect(muted.status).toBe(200);
    expect(ParticipantDetailsSchema.parse(await muted.json()).streams.map((s) => s.muted)).toEqual([false, true]);
    const event = { publisher_id: ann.participantId, kind: 'video', muted: true, by: 'admin', locked: true };
    for (const socket of [ann.socket, bob.socket]) expect((await socket.nextOf('track_muted')).payload).toEqual(event);

    // Under the lock: forbidden, and nothing changes (no call to the node, no event).
    expect(codeOf(await ann.socket.request('mute', { kind: 'video', muted: false }))).toBe('forbidden');
    // Muting it again, or the other kind, stays allowed.
    await ann.socket.expectReply('mute', { kind: 'video', muted: true }, 'ack');
    expect((await bob.socket.nextOf('track_muted')).payload).toMatchObject({
      kind: 'video',
      muted: true,
      by: 'self',
      locked: true,
    });

    // The admin lifts the lock: still muted, until Ann unmutes herself; the event says she may.
    const lifted = await adminMute(room.id, room.admin_token, ann.participantId, { kind: 'video', muted: false });
    expect(lifted.status).toBe(200);
    expect((await bob.socket.nextOf('track_muted')).payload).toEqual({ ...event, muted: true, locked: false });
    expect(await mutedOf(room.id)).toEqual(['audio:false', 'video:true']);
    expect(fake.callsOf('mute').map((call) => call.detail)).toEqual([{ kind: 'video', muted: true }]);
    await ann.socket.expectReply('mute', { kind: 'video', muted: false }, 'ack');
    expect((await bob.socket.nextOf('track_muted')).payload).toMatchObject({ muted: false, by: 'self' });
    expect(fake.callsOf('mute').map((call) => call.detail)).toEqual([
      { kind: 'video', muted: true },
      { kind: 'video', muted: false },
    ]);

    // Only admins: a participant token gets 403, a bad body 400, an unknown participant 404.
    expect((await adminMute(room.id, bob.token, ann.participantId, { kind: 'audio', muted: true })).status).toBe(403);
    expect(
      (await adminMute(room.id, room.admin_token, ann.participantId, { kind: 'screen', muted: true })).status,
    ).toBe(400);
    expect(
      (await adminMute(room.id, room.admin_token, 'AAAAAAAAAAAAAAAAAAAAAA', { kind: 'audio', muted: true })).status,
    ).toBe(404);
    for (const member of [ann, bob]) member.socket.close();
  });

  it('a mute made before publishing holds once the participant publishes', async () => {
    const room = await createAdminRoom();
    const fake = new FakeMediaNode();
    useMediaNode(room.id, fake);
    const ann = await joinMember(room.id, 'Ann');
    await ann.socket.expectReply('mute', { kind: 'audio', muted: true }, 'ack');
    expect(fake.callsOf('mute')).toEqual([]);
    await ann.socket.expectReply('publish_offer', { sdp: fakeSdp('offer') }, 'publish_answer');
    expect(fake.callsOf('mute').map((call) => call.detail)).toEqual([{ kind: 'audio', muted: true }]);
    ann.socket.close();
  });

  it('a media node that cannot mute leaves the state as it was', async () => {
    const room = await createAdminRoom();
    const fake = new FakeMediaNode();
    useMediaNode(room.id, fake);
    const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
    await publishReady(room.id, ann, [{ kind: 'audio', mid: '0' }], [bob.socket]);
    fake.failNext('mute', 'media_unavailable');
    expect(codeOf(await ann.socket.request('mute', { kind: 'audio', muted: true }))).toBe('media_unavailable');
    expect(await mutedOf(room.id)).toEqual(['audio:false']);
    fake.failNext('mute', 'media_unavailable');
    expect((await adminMute(room.id, room.admin_token, ann.participantId, { kind: 'audio', muted: true })).status).toBe(
      503,
    );
    expect(await mutedOf(room.id)).toEqual(['audio:false']);
    expect(bob.socket.untaken('track_muted')).toEqual([]);
    for (const member of [ann, bob]) member.socket.close();
  });
});
