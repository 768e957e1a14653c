import { describe, expect, it } from 'vitest';
import { annPublishingToBob, roomStub } from './support/rooms.ts';

const codeOf = (reply: unknown) => (reply as { payload: { code?: string } }).payload.code;

describe('update_subscription', () => {
  it('reaches the media node for a subscribed feed, and is refused for any other', async () => {
    const { room, fake, ann, bob } = await annPublishingToBob([
      { kind: 'audio', mid: '0' },
      { kind: 'video', mid: '1', layers: [{ rid: 'q', width: 320, height: 180 }, { rid: 'h' }, { rid: 'f' }] },
    ]);

    // Not subscribed yet: unknown_feed, and the node hears nothing.
    const early = await bob.socket.request('update_subscription', { feed: ann.participantId, max_width: 320 });
    expect(codeOf(early)).toBe('unknown_feed');
    expect(fake.callsOf('updateSubscription')).toEqual([]);

    await bob.socket.expectReply('subscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
    const capped = { feed: ann.participantId, max_width: 320, max_height: 180 };
    await bob.socket.expectReply('update_subscription', capped, 'ack');
    await bob.socket.expectReply('update_subscription', { feed: ann.participantId, paused: true }, 'ack');
    expect(fake.callsOf('updateSubscription')).toEqual([
      { method: 'updateSubscription', roomId: room.id, participantId: bob.participantId, detail: capped },
      {
        method: 'updateSubscription',
        roomId: room.id,
        participantId: bob.participantId,
        detail: { feed: ann.participantId, paused: true },
      },
    ]);

    // Bad payloads change nothing.
    const hostile: unknown[] = [
      { feed: ann.participantId, max_width: -1 },
      { feed: ann.participantId, max_height: 1.5 },
      { feed: ann.participantId, paused: 'yes' },
      { feed: ann.participantId, extra: true },
      { max_width: 320 },
    ];
    for (const payload of hostile) {
      const reply = await bob.socket.request('update_subscription', payload as { feed: string });
      expect(codeOf(reply)).toBe('invalid_payload');
    }
    expect(codeOf(await ann.socket.request('update_subscription', { feed: bob.participantId }))).toBe('unknown_feed');
    expect(fake.callsOf('updateSubscription')).toHaveLength(2);
    for (const member of [ann, bob]) member.socket.close();
  });

  it('relays the node’s subscriber_layer to that viewer alone, as layer_changed', async () => {
    const { room, ann, bob } = await annPublishingToBob([
      { kind: 'video', mid: '0', layers: [{ rid: 'q' }, { rid: 'f' }] },
    ]);
    await bob.socket.expectReply('subscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
    const base = { room_id: room.id, participant_id: bob.participantId, feed: ann.participantId };
    await roomStub(room.id).handleMediaEvent({ type: 'subscriber_layer', ...base, rid: 'q', width: 320, height: 180 });
    expect((await bob.socket.nextOf('layer_changed')).payload).toEqual({
      feed: ann.participantId,
      rid: 'q',
      width: 320,
      height: 180,
    });
    await roomStub(room.id).handleMediaEvent({ type: 'subscriber_layer', ...base, rid: null });
    expect((await bob.socket.nextOf('layer_changed')).payload).toEqual({ feed: ann.participantId, rid: null });
    // Ann, in the same room, hears nothing of Bob's layers: a request of hers gets its reply first.
    await ann.socket.expectReply('mute', { kind: 'video', muted: false }, 'ack');
    expect(ann.socket.received.some((frame) => 'type' in frame && frame.type === 'layer_changed')).toBe(false);
    for (const member of [ann, bob]) member.socket.close();
  });

  it('relays the node’s publisher_layers to that publisher alone (dynacast)', async () => {
    const { room, ann, bob } = await annPublishingToBob([
      { kind: 'video', mid: '0', layers: [{ rid: 'q' }, { rid: 'f' }] },
    ]);
    const base = { room_id: room.id, participant_id: ann.participantId, mid: '0' };
    await roomStub(room.id).handleMediaEvent({ type: 'publisher_layers', ...base, rids: ['q'] });
    expect((await ann.socket.nextOf('publisher_layers')).payload).toEqual({ mid: '0', rids: ['q'] });
    // About a participant who does not publish: nobody hears of it.
    await roomStub(room.id).handleMediaEvent({
      type: 'publisher_layers',
      ...base,
      participant_id: bob.participantId,
      rids: ['q'],
    });
    await bob.socket.expectReply('mute', { kind: 'audio', muted: false }, 'ack');
    expect(bob.socket.received.some((frame) => 'type' in frame && frame.type === 'publisher_layers')).toBe(false);
    for (const member of [ann, bob]) member.socket.close();
  });
});
