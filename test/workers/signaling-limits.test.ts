import { describe, expect, it } from 'vitest';
import { MAX_QUEUED_FRAMES, SIGNALING_RATE_LIMIT, UPGRADE_RATE_LIMIT } from '../../workers/src/room/rate-limit.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import { createRoom, joinMember, restJoin, useMediaNode } from './support/rooms.ts';
import { SignalingSocket, upgrade } from './support/signaling-socket.ts';

/**
 * One token, many sockets (#12 item 2): upgrades are limited per participant, every open socket
 * counts, the frame allowance follows the participant across sockets, and its queue is bounded.
 */
describe('per-participant limits', () => {
  it('one token cannot reconnect without limit: 429 after the burst, others unaffected', async () => {
    const room = await createRoom();
    const ann = await restJoin(room.id, 'Ann');
    for (let i = 0; i < UPGRADE_RATE_LIMIT.burst; i += 1) {
      const socket = await SignalingSocket.open(room.id, ann.token);
      socket.close();
      await socket.closed;
    }
    const refused = await upgrade(room.id, ann.token);
    expect(refused.status).toBe(429);
    expect(await refused.json()).toMatchObject({ error: { code: 'rate_limited' } });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // Another participant of the same room connects as usual.
    const bob = await joinMember(room.id, 'Bob');
    bob.socket.close();
  });

  it('the frame allowance follows the participant: a new socket does not refill it', async () => {
    const room = await createRoom();
    const ann = await joinMember(room.id, 'Ann');
    const requestsOf = (socket: SignalingSocket, count: number) =>
      Promise.all(
        Array.from({ length: count }, () => socket.request('unsubscribe', { feeds: ['AAAAAAAAAAAAAAAAAAAAAA'] })),
      );
    const refusedIn = (replies: Awaited<ReturnType<typeof requestsOf>>) =>
      replies.filter((reply) => reply.type === 'error' && reply.payload.code === 'rate_limited').length;

    // Spend the allowance on the first socket: the last frames are refused.
    expect(refusedIn(await requestsOf(ann.socket, SIGNALING_RATE_LIMIT.burst + 5))).toBeGreaterThan(0);
    // The same participant on a new socket (the old one is replaced) starts from what is left, not full.
    const again = await SignalingSocket.open(room.id, ann.token);
    expect(refusedIn(await requestsOf(again, 10))).toBeGreaterThan(0);
    again.close();
  });

  it('frames waiting behind a slow one are bounded: beyond the queue, rate_limited at once', async () => {
    const room = await createRoom();
    const fake = new FakeMediaNode();
    const ann = await joinMember(room.id, 'Ann');
    useMediaNode(room.id, fake);
    const release = fake.holdNext('publish');
    const publishing = ann.socket.request('publish_offer', { sdp: fakeSdp('slow') });
    const extra = 4;
    const waiting = Array.from({ length: MAX_QUEUED_FRAMES + extra }, () =>
      ann.socket.request('trickle_ice', { target: 'subscriber', candidate: null }),
    );
    // The refusals arrive while the publish is still held: they were not queued.
    const refused = await Promise.all(waiting.slice(MAX_QUEUED_FRAMES));
    for (const reply of refused) expect(reply).toMatchObject({ type: 'error', payload: { code: 'rate_limited' } });
    release();
    expect((await publishing).type).toBe('publish_answer');
    for (const reply of await Promise.all(waiting.slice(0, MAX_QUEUED_FRAMES))) {
      expect(reply).toMatchObject({ type: 'error', payload: { code: 'bad_request' } });
    }
    ann.socket.close();
  });

  it('every open socket counts: a participant whose replaced sockets linger cannot open more', async () => {
    const room = await createRoom();
    const ann = await restJoin(room.id, 'Ann');
    const statuses: number[] = [];
    // Opened and never closed by the client: the replaced ones wait for a close reply that never comes.
    const held: WebSocket[] = [];
    for (let i = 0; i < 4; i += 1) {
      const response = await upgrade(room.id, ann.token);
      statuses.push(response.status);
      if (response.webSocket) held.push(response.webSocket);
    }
    expect(statuses).toEqual([101, 101, 101, 429]);
    for (const ws of held) ws.accept();
    for (const ws of held) ws.close();
  });
});
