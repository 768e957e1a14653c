import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RTCPeerConnection } from 'werift';
import { newId } from '../../shared/src/ids.ts';
import { mediaControlPath, type RelayResponse } from '../../shared/src/media-control.ts';
import {
  PeerSet,
  TestPublisher,
  type TestPublisherOptions,
  TestSubscriber,
  type TestSubscriberOptions,
  waitFor,
} from '../support/werift-peers.ts';
import { answerOffer, isEvent, MediaNodeProcess, metricValue, publishThrough, subscribeThrough } from './harness.ts';

/**
 * MEDIA_ROOM_AFFINITY of the nodes here: a room spreads to the second worker once the first holds this
 * many participants more (few viewers make a spread room).
 */
const ROOM_AFFINITY = 2;

/** NACKs a werift subscriber sent about its video. */
async function nacksSent(pc: RTCPeerConnection): Promise<number> {
  let count = 0;
  (await pc.getStats()).forEach((stats: { type: string; kind?: string; nackCount?: number }) => {
    if (stats.type === 'inbound-rtp' && stats.kind === 'video') count += stats.nackCount ?? 0;
  });
  return count;
}

/** Peer connections per worker thread, from the node's /metrics. */
async function peersPerWorker(node: MediaNodeProcess): Promise<Record<string, number>> {
  const text = await (await fetch(new URL('/metrics', node.url))).text();
  const perWorker: Record<string, number> = {};
  for (const match of text.matchAll(/^truegather_worker_peer_connections\{worker="(\d+)"\} (\S+)$/gm)) {
    perWorker[match[1]!] = Number(match[2]);
  }
  return perWorker;
}

describe('a room across the worker threads of one node (MEDIA_WORKERS=2)', () => {
  let node: MediaNodeProcess;
  const peers = new PeerSet();
  let roomId = '';

  beforeAll(async () => {
    node = await MediaNodeProcess.start({ MEDIA_WORKERS: '2', MEDIA_ROOM_AFFINITY: String(ROOM_AFFINITY) });
  });

  afterEach(async () => {
    // Each test starts from an empty node, so placement starts from the first worker again.
    await peers.closeAll();
    await node.request('DELETE', mediaControlPath('closeRoom', roomId));
    await waitFor(async () => (await metricValue(node, 'truegather_rooms')) === 0, { message: 'the room to close' });
  });

  afterAll(async () => {
    await node?.stop();
  });

  /**
   * A publisher and as many viewers as keep to its worker, then `far` viewers, which placement puts
   * on the other worker (it has {@link ROOM_AFFINITY} participants fewer).
   */
  async function spreadRoom(publisherOptions: TestPublisherOptions, far: TestSubscriberOptions[]) {
    roomId = newId();
    const publisherId = newId();
    const publisher = peers.track(await TestPublisher.create(publisherOptions));
    await publishThrough(node, roomId, publisherId, publisher);
    await node.events.waitForEvent(isEvent('publisher_ready', publisherId));
    const near: TestSubscriber[] = [];
    for (let index = 0; index < ROOM_AFFINITY; index++) {
      const viewer = peers.track(new TestSubscriber());
      await subscribeThrough(node, roomId, newId(), viewer, [publisherId]);
      near.push(viewer);
    }
    const farViewers: { id: string; viewer: TestSubscriber; subscribedAt: number }[] = [];
    for (const options of far) {
      const id = newId();
      const viewer = peers.track(new TestSubscriber(options));
      const subscribedAt = performance.now();
      await subscribeThrough(node, roomId, id, viewer, [publisherId]);
      farViewers.push({ id, viewer, subscribedAt });
    }
    expect(await peersPerWorker(node)).toEqual({ 0: 1 + ROOM_AFFINITY, 1: far.length });
    return { publisherId, publisher, near, far: farViewers };
  }

  it('relays the publisher to viewers on the other worker: every packet in order, NACKs answered there', async () => {
    const { publisherId, near, far } = await spreadRoom({}, [{}, { lossPercent: 5 }]);
    const [clean, lossy] = far;
    const videoOf = (viewer: TestSubscriber, span: number) =>
      waitFor(() => viewer.activeTracks().find((track) => track.kind === 'video' && track.sequence.span >= span), {
        timeoutMs: 15_000,
        message: `${span} video packets at a viewer on the second worker`,
      });
    const cleanVideo = await videoOf(clean!.viewer, 150);
    // The relayed feed is one stream: sequence numbers run on with no gap, audio flows too.
    expect(cleanVideo.sequence.missing()).toBe(0);
    expect(cleanVideo.keyframes).toBeGreaterThan(0);
    expect(clean!.viewer.packets('audio')).toBeGreaterThan(0);
    expect(clean!.viewer.feeds()).toEqual([publisherId]);
    // ~5 % lost on the way to this viewer: its NACKs went to its worker, whose relayed history answered.
    const lossyVideo = await videoOf(lossy!.viewer, 150);
    expect(await nacksSent(lossy!.viewer.pc)).toBeGreaterThan(0);
    expect(lossyVideo.sequence.missing()).toBeLessThanOrEqual(1);
    // The publisher's worker forwards to its own viewers all the same.
    for (const viewer of near) expect(viewer.packets('video')).toBeGreaterThan(0);
  });

  it('brings a viewer on the other worker a keyframe at once: its PLI goes back to the publisher', async () => {
    // Keyframes only at the start and on request: without a relayed PLI the far viewer would get none.
    const { publisherId, publisher } = await spreadRoom({ keyframeIntervalFrames: 1_000_000 }, []);
    const plisBefore = publisher.pliTimes.length;
    const viewerId = newId();
    const viewer = peers.track(new TestSubscriber());
    const subscribedAt = performance.now();
    await subscribeThrough(node, roomId, viewerId, viewer, [publisherId]);
    expect(await peersPerWorker(node)).toEqual({ 0: 1 + ROOM_AFFINITY, 1: 1 });
    const video = await waitFor(() => viewer.activeTracks().find((t) => t.kind === 'video' && t.firstKeyframeAt), {
      timeoutMs: 5_000,
      message: 'a keyframe at the viewer on the second worker',
    });
    expect(video.firstKeyframeAt! - subscribedAt).toBeLessThan(2_500);
    expect(publisher.pliTimes.length).toBeGreaterThan(plisBefore);
  });

  it('ends the relayed feed with its publisher: the far viewer is renegotiated without it', async () => {
    const { publisherId, far } = await spreadRoom({}, [{}]);
    const [{ id, viewer }] = far as [(typeof far)[number]];
    await waitFor(() => viewer.packets('video') > 0, { message: 'video at the far viewer' });
    expect((await node.request('DELETE', mediaControlPath('unpublish', roomId, publisherId))).status).toBe(200);
    const offer = await node.events.waitForEvent(isEvent('subscriber_offer', id));
    expect(offer.feeds).toEqual([]);
    await answerOffer(node, roomId, id, viewer, offer.sdp);
    expect(viewer.feeds()).toEqual([]);
  });
});

describe('a feed relayed from another node, over the worker threads of the pulling node', () => {
  let origin: MediaNodeProcess;
  let pulling: MediaNodeProcess;
  const peers = new PeerSet();

  beforeAll(async () => {
    const secret = randomBytes(32).toString('base64url');
    [origin, pulling] = await Promise.all([
      MediaNodeProcess.start({ MEDIA_NODE_SECRET: secret }),
      MediaNodeProcess.start({
        MEDIA_NODE_SECRET: secret,
        MEDIA_WORKERS: '2',
        MEDIA_ROOM_AFFINITY: String(ROOM_AFFINITY),
      }),
    ]);
  });

  afterAll(async () => {
    await peers.closeAll();
    await Promise.all([origin?.stop(), pulling?.stop()]);
  });

  it('reaches viewers on the worker without the node relay through its worker relay, every packet in order', async () => {
    const roomId = newId();
    const publisherId = newId();
    await publishThrough(origin, roomId, publisherId, peers.track(await TestPublisher.create()));
    await origin.events.waitForEvent(isEvent('publisher_ready', publisherId));
    const relayed = await pulling.request<RelayResponse>('PUT', mediaControlPath('relay', roomId), {
      origin_url: origin.url,
      feeds: [publisherId],
    });
    expect(relayed).toMatchObject({ status: 200, body: { feeds: [publisherId] } });
    // The node relay has its place on the first worker (placed as a participant is), so do the first
    // viewers; the last goes to the other.
    const viewers: TestSubscriber[] = [];
    for (let index = 0; index <= ROOM_AFFINITY; index++) {
      const viewer = peers.track(new TestSubscriber());
      await subscribeThrough(pulling, roomId, newId(), viewer, [publisherId]);
      viewers.push(viewer);
    }
    expect(await peersPerWorker(pulling)).toEqual({ 0: ROOM_AFFINITY, 1: 1 });
    for (const viewer of viewers) {
      const video = await waitFor(
        () => viewer.activeTracks().find((track) => track.kind === 'video' && track.sequence.span >= 100),
        { timeoutMs: 15_000, message: '100 relayed video packets at every viewer' },
      );
      expect(video.sequence.missing()).toBe(0);
    }
  });
});
