import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { mediaControlPath } from '../../shared/src/media-control.ts';
import { nackCount, PeerSet, TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';
import { isEvent, MediaNodeProcess, metricValue, publishThrough, subscribeThrough } from './harness.ts';

/** Measurement windows are real time: the rate is what the test is about. */
const measure = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('media node forwarding (werift peers on loopback)', () => {
  let node: MediaNodeProcess;
  const peers = new PeerSet();

  beforeAll(async () => {
    node = await MediaNodeProcess.start();
  });

  afterAll(async () => {
    await peers.closeAll();
    await node?.stop();
  });

  it('forwards ≥ 25 video and ≥ 25 audio packets per second for 5 s, and /metrics counts them', async () => {
    // Through the native SRTP addon that npm install builds, as the node says at startup.
    expect(
      node.logs.find((line) => line.includes('"message":"media node listening"')),
      'the SRTP addon: `npm run build:native`',
    ).toContain('"srtp":"native addon');
    const roomId = newId();
    const publisherId = newId();
    const publisher = peers.track(await TestPublisher.create());
    const answer = await publishThrough(node, roomId, publisherId, publisher);
    expect(answer.streams.map((stream) => `${stream.kind}:${stream.codec}`).sort()).toEqual([
      'audio:audio/opus',
      'video:video/VP8',
    ]);
    const ready = await node.events.waitForEvent(isEvent('publisher_ready', publisherId));
    expect(ready.room_id).toBe(roomId);
    expect(ready.streams).toHaveLength(2);

    const subscriber = peers.track(new TestSubscriber());
    const offer = await subscribeThrough(node, roomId, newId(), subscriber, [publisherId]);
    expect(offer.feeds).toEqual([publisherId]);
    // Egress offers exactly the publisher's codecs (VP8 + its RTX, Opus).
    const rtpmaps = offer.sdp.split('\r\n').filter((line) => line.startsWith('a=rtpmap:'));
    expect(rtpmaps.map((line) => line.split(' ')[1]!.toLowerCase()).sort()).toEqual([
      'opus/48000/2',
      'rtx/90000',
      'vp8/90000',
    ]);

    await waitFor(() => subscriber.packets('video') > 0 && subscriber.packets('audio') > 0, {
      message: 'the first forwarded packets',
    });
    const start = { video: subscriber.packets('video'), audio: subscriber.packets('audio') };
    await measure(5_000);
    const video = subscriber.packets('video') - start.video;
    const audio = subscriber.packets('audio') - start.audio;
    expect(video).toBeGreaterThanOrEqual(5 * 25);
    expect(audio).toBeGreaterThanOrEqual(5 * 25);
    expect(subscriber.feeds()).toEqual([publisherId]);

    const received = subscriber.totalPackets();
    const forwarded = await metricValue(node, 'truegather_rtp_forwarded_packets_total');
    expect(Math.abs(forwarded - received) / received).toBeLessThanOrEqual(0.1);
    expect(await metricValue(node, 'truegather_publishers')).toBe(1);
    expect(await metricValue(node, 'truegather_subscribers')).toBe(1);
    expect(await metricValue(node, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  });

  it('gets a late subscriber a keyframe at once by relaying PLI to the publisher, at most one per second', async () => {
    const roomId = newId();
    const publisherId = newId();
    // Keyframes only at the start and on request: without relayed PLI a late subscriber gets none.
    const publisher = peers.track(await TestPublisher.create({ keyframeIntervalFrames: 1_000_000 }));
    await publishThrough(node, roomId, publisherId, publisher);
    const early = peers.track(new TestSubscriber());
    await subscribeThrough(node, roomId, newId(), early, [publisherId]);
    await waitFor(() => early.packets('video') > 0, { message: 'the early subscriber to receive video' });
    const joinLateAt = performance.now() + 4_000;
    await measure(4_000);

    const late = peers.track(new TestSubscriber());
    const plisBefore = publisher.pliTimes.length;
    await subscribeThrough(node, roomId, newId(), late, [publisherId]);
    const video = await waitFor(() => late.activeTracks().find((t) => t.kind === 'video' && t.firstKeyframeAt), {
      timeoutMs: 5_000,
      message: 'a keyframe at the late subscriber',
    });
    expect(publisher.pliTimes.length).toBeGreaterThan(plisBefore);
    expect(video.firstKeyframeAt! - joinLateAt).toBeLessThan(2_500);

    // A burst of PLIs from the subscriber reaches the publisher at most once per second.
    const burstStart = publisher.pliTimes.length;
    for (let index = 0; index < 10; index++) await late.requestKeyframes();
    await waitFor(() => publisher.pliTimes.length > burstStart, { message: 'a relayed PLI' });
    await measure(1_500);
    const relayed = publisher.pliTimes.slice(burstStart - 1);
    for (let index = 1; index < relayed.length; index++) {
      expect(relayed[index]! - relayed[index - 1]!).toBeGreaterThanOrEqual(950);
    }
    expect(late.activeTracks().find((t) => t.kind === 'video')!.keyframes).toBeGreaterThanOrEqual(2);
  });

  it('pauses one feed’s video for one viewer (audio flows), and resumes at a keyframe with no sequence gap', async () => {
    const roomId = newId();
    const publisherId = newId();
    const viewerId = newId();
    const publisher = peers.track(await TestPublisher.create());
    await publishThrough(node, roomId, publisherId, publisher);
    const subscriber = peers.track(new TestSubscriber());
    await subscribeThrough(node, roomId, viewerId, subscriber, [publisherId]);
    await waitFor(() => subscriber.packets('video') > 30 && subscriber.packets('audio') > 0, {
      message: 'media before pausing',
    });
    const update = (body: object) =>
      node.request('PUT', mediaControlPath('updateSubscription', roomId, viewerId), { feed: publisherId, ...body });

    expect((await update({ paused: true })).status).toBe(200);
    // Once packets in flight are in, video stops: audio goes on meanwhile (40 packets, ~0.8 s).
    const audioAtPause = subscriber.packets('audio');
    await waitFor(() => subscriber.packets('audio') > audioAtPause + 10, { message: 'audio after pausing' });
    const videoPaused = subscriber.packets('video');
    await waitFor(() => subscriber.packets('audio') > audioAtPause + 50, { message: 'audio while paused' });
    expect(subscriber.packets('video')).toBe(videoPaused);

    const video = subscriber.activeTracks().find((track) => track.kind === 'video')!;
    const keyframesBefore = video.keyframes;
    expect((await update({ paused: false })).status).toBe(200);
    await waitFor(() => subscriber.packets('video') > videoPaused + 30, { message: 'video after resuming' });
    // It came back with a keyframe (requested by the node: the dummy sends one per second at most)
    // and the viewer's sequence numbers run on from where they stopped.
    expect(video.keyframes).toBeGreaterThan(keyframesBefore);
    expect(video.sequence.missing()).toBe(0);
    // And its timestamps moved on by the pause, not by the time since the leg last went through JS.
    expect(video.rtpAheadMs).toBeLessThan(300);
  });

  it('forwards H.264 (Safari) and offers the subscriber only that codec and profile', async () => {
    const roomId = newId();
    const publisherId = newId();
    const publisher = peers.track(await TestPublisher.create({ audio: false, videoCodec: 'h264' }));
    const answer = await publishThrough(node, roomId, publisherId, publisher);
    expect(answer.streams).toEqual([expect.objectContaining({ kind: 'video', codec: 'video/H264' })]);

    const subscriber = peers.track(new TestSubscriber());
    const offer = await subscribeThrough(node, roomId, newId(), subscriber, [publisherId]);
    const lines = offer.sdp.split('\r\n');
    expect(lines.filter((line) => line.startsWith('a=rtpmap:')).map((line) => line.split(' ')[1])).toEqual([
      'H264/90000',
      'rtx/90000',
    ]);
    expect(lines.some((line) => line.startsWith('a=fmtp:') && line.includes('profile-level-id=42e01f'))).toBe(true);
    await waitFor(() => subscriber.packets('video') >= 30, { message: 'H.264 packets at the subscriber' });
  });

  it('recovers lost video packets with NACK on each leg, publisher → node and node → subscriber', async () => {
    const roomId = newId();
    const publisherId = newId();
    const publisher = peers.track(await TestPublisher.create({ audio: false, lossPercent: 5 }));
    await publishThrough(node, roomId, publisherId, publisher);
    const subscriber = peers.track(new TestSubscriber({ lossPercent: 5 }));
    await subscribeThrough(node, roomId, newId(), subscriber, [publisherId]);
    const video = await waitFor(
      () => subscriber.activeTracks().find((received) => received.kind === 'video' && received.sequence.span >= 150),
      { timeoutMs: 15_000, message: '150 video packets at the subscriber' },
    );
    // About 10 % of the packets were dropped on the way (each leg NACKed), retransmissions filled the gaps.
    expect(await nackCount(publisher.pc, 'outbound-rtp')).toBeGreaterThan(0);
    expect(await nackCount(subscriber.pc, 'inbound-rtp')).toBeGreaterThan(0);
    expect(video.sequence.missing()).toBeLessThanOrEqual(1);
  });
});
