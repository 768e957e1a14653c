import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { mediaControlPath } from '../../shared/src/media-control.ts';
import { PeerSet, TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';
import { answerOffer, isEvent, MediaNodeProcess, metricValue, publishThrough, subscribeThrough } from './harness.ts';

describe('media node rooms: feeds, departures, workers', () => {
  let node: MediaNodeProcess;
  const peers = new PeerSet();

  beforeAll(async () => {
    node = await MediaNodeProcess.start({ MEDIA_WORKERS: '2', MEDIA_CONNECT_TIMEOUT_SECONDS: '3' });
  });

  afterAll(async () => {
    await peers.closeAll();
    await node?.stop();
  });

  // First, while the node is empty: the second room must go to the other (least-loaded) worker.
  it('places a new room on the least-loaded worker, with one DTLS certificate for the node', async () => {
    const rooms = [newId(), newId()];
    const fingerprints: string[] = [];
    for (const roomId of rooms) {
      const { sdp } = await publishThrough(
        node,
        roomId,
        newId(),
        peers.track(await TestPublisher.create({ video: false })),
      );
      fingerprints.push(/^a=fingerprint:(.+)$/m.exec(sdp)?.[1] ?? '');
    }
    // Generated once per node (workers/pool.ts), not per worker thread.
    expect(fingerprints[0]).toMatch(/^sha-256 /);
    expect(fingerprints[1]).toBe(fingerprints[0]);
    const text = await (await fetch(new URL('/metrics', node.url))).text();
    const perWorker = text
      .split('\n')
      .filter((line) => line.startsWith('truegather_worker_rooms{'))
      .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
    expect(perWorker).toEqual([1, 1]);
    expect(await metricValue(node, 'truegather_rooms')).toBe(2);

    for (const roomId of rooms) {
      expect((await node.request('DELETE', mediaControlPath('closeRoom', roomId))).status).toBe(200);
    }
    await waitFor(async () => (await metricValue(node, 'truegather_rooms')) === 0, { message: 'the rooms to close' });
  });

  it('ends the forwarded tracks of a publisher that leaves, renegotiates the subscriber and tells the edge', async () => {
    const roomId = newId();
    const [leaving, staying] = [newId(), newId()];
    const subscriberId = newId();
    const publisher = peers.track(await TestPublisher.create());
    await publishThrough(node, roomId, leaving, publisher);
    await publishThrough(node, roomId, staying, peers.track(await TestPublisher.create({ video: false })));
    const subscriber = peers.track(new TestSubscriber());
    await subscribeThrough(node, roomId, subscriberId, subscriber, [leaving, staying]);
    await waitFor(() => subscriber.packets('video', leaving) > 0 && subscriber.packets('audio', staying) > 0, {
      message: 'media at the subscriber',
    });

    // The edge removes the publisher when its participant leaves.
    const removed = await node.request('DELETE', mediaControlPath('unpublish', roomId, leaving));
    expect(removed.status).toBe(200);

    const offer = await node.events.waitForEvent(isEvent('subscriber_offer', subscriberId));
    expect(offer.room_id).toBe(roomId);
    expect(offer.feeds).toEqual([staying]);
    await answerOffer(node, roomId, subscriberId, subscriber, offer.sdp);
    expect(subscriber.feeds()).toEqual([staying]);
    const stayingBefore = subscriber.packets('audio', staying);
    await waitFor(() => subscriber.packets('audio', staying) > stayingBefore + 10, { message: 'the other feed' });
    expect(node.events.refused).toEqual([]);
  });

  it('reports a publisher whose connection never comes up, and drops its feed from subscribers', async () => {
    const roomId = newId();
    const [broken, working] = [newId(), newId()];
    const subscriberId = newId();
    await publishThrough(node, roomId, working, peers.track(await TestPublisher.create({ video: false })));
    // The node answers, but the answer never reaches this publisher: ICE cannot complete.
    const vanished = await TestPublisher.create();
    const published = await node.request('POST', mediaControlPath('publish', roomId), {
      participant_id: broken,
      sdp: await vanished.createOffer(),
    });
    expect(published.status).toBe(201);
    await vanished.close();
    const subscriber = peers.track(new TestSubscriber());
    const subscribed = await subscribeThrough(node, roomId, subscriberId, subscriber, [broken, working]);
    expect(subscribed.feeds).toEqual([broken, working]);

    const closed = await node.events.waitForEvent(isEvent('publisher_closed', broken), 15_000);
    expect(closed).toMatchObject({ room_id: roomId, reason: 'peer connection did not connect in time' });
    const offer = await node.events.waitForEvent(isEvent('subscriber_offer', subscriberId));
    expect(offer.feeds).toEqual([working]);
    await answerOffer(node, roomId, subscriberId, subscriber, offer.sdp);
    expect(subscriber.feeds()).toEqual([working]);
  });

  it('closes and reports a subscriber whose offer is never answered, and frees its place', async () => {
    const roomId = newId();
    const publisherId = newId();
    const subscriberId = newId();
    await publishThrough(node, roomId, publisherId, peers.track(await TestPublisher.create({ video: false })));
    const loadOf = async () => ((await (await fetch(new URL('/health', node.url))).json()) as { load: number }).load;
    const loadBefore = await loadOf();
    const offered = await node.request('PUT', mediaControlPath('subscribe', roomId, subscriberId), {
      feeds: [publisherId],
    });
    expect(offered.status).toBe(200);
    expect(await loadOf()).toBe(loadBefore + 1);

    // No answer ever comes: MEDIA_CONNECT_TIMEOUT_SECONDS (3 s here) counts from the offer.
    const closed = await node.events.waitForEvent(isEvent('subscriber_closed', subscriberId), 15_000);
    expect(closed).toMatchObject({ room_id: roomId, reason: 'peer connection did not connect in time' });
    await waitFor(async () => (await loadOf()) === loadBefore, { message: 'the subscriber to leave the load' });
    const late = await node.request('POST', mediaControlPath('setSubscriberAnswer', roomId, subscriberId), {
      sdp: 'v=0\r\n',
    });
    expect(late.status).toBe(404);
  });

  it('gives two publishers and three subscribers in one room exactly the feeds each asked for', async () => {
    const roomId = newId();
    const [alice, bob] = [newId(), newId()];
    await publishThrough(node, roomId, alice, peers.track(await TestPublisher.create()));
    await publishThrough(node, roomId, bob, peers.track(await TestPublisher.create()));

    const wanted: Record<string, string[]> = {
      onlyAlice: [alice],
      onlyBob: [bob],
      both: [alice, bob],
    };
    const subscribers = Object.fromEntries(
      await Promise.all(
        Object.entries(wanted).map(async ([name, feeds]) => {
          const subscriber = peers.track(new TestSubscriber());
          const offer = await subscribeThrough(node, roomId, newId(), subscriber, feeds);
          expect(offer.feeds).toEqual(feeds);
          return [name, subscriber] as const;
        }),
      ),
    );

    for (const [name, feeds] of Object.entries(wanted)) {
      const subscriber = subscribers[name]!;
      await waitFor(
        () => feeds.every((feed) => subscriber.packets('video', feed) >= 10 && subscriber.packets('audio', feed) >= 10),
        { message: `every wanted feed at ${name}` },
      );
      expect(subscriber.feeds()).toEqual([...feeds].sort());
      expect(subscriber.activeTracks()).toHaveLength(2 * feeds.length);
    }
  });

  it('renegotiates a subscriber that changes its feeds, and withdraws an offer that was never answered', async () => {
    const roomId = newId();
    const [alice, bob] = [newId(), newId()];
    const subscriberId = newId();
    await publishThrough(node, roomId, alice, peers.track(await TestPublisher.create()));
    await publishThrough(node, roomId, bob, peers.track(await TestPublisher.create()));
    const subscriber = peers.track(new TestSubscriber());
    await subscribeThrough(node, roomId, subscriberId, subscriber, [alice]);
    await waitFor(() => subscriber.packets('video', alice) > 0, { message: 'alice at the subscriber' });

    // An offer for [alice, bob] that the client never answers, superseded by one for [bob].
    const unanswered = await node.request('PUT', mediaControlPath('subscribe', roomId, subscriberId), {
      feeds: [alice, bob],
    });
    expect(unanswered.status).toBe(200);
    const offer = await subscribeThrough(node, roomId, subscriberId, subscriber, [bob]);
    expect(offer.feeds).toEqual([bob]);
    const bobBefore = subscriber.packets('video', bob);
    await waitFor(() => subscriber.packets('video', bob) > bobBefore + 10, { message: 'bob at the subscriber' });
    expect(subscriber.feeds()).toEqual([bob]);

    const stale = await node.request('POST', mediaControlPath('setSubscriberAnswer', roomId, subscriberId), {
      sdp: subscriber.pc.localDescription!.sdp,
    });
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ error: { code: 'conflict' } });

    // A client that reconnected answers from a new peer connection: refused until the edge removes
    // the subscriber and subscribes again.
    const reconnected = peers.track(new TestSubscriber());
    const offerForNew = await node.request<{ sdp: string }>(
      'PUT',
      mediaControlPath('subscribe', roomId, subscriberId),
      {
        feeds: [bob],
      },
    );
    const fromNewConnection = await node.request(
      'POST',
      mediaControlPath('setSubscriberAnswer', roomId, subscriberId),
      {
        sdp: await reconnected.answer(offerForNew.body.sdp),
      },
    );
    expect(fromNewConnection.status).toBe(409);
    expect((await node.request('DELETE', mediaControlPath('closeSubscriber', roomId, subscriberId))).status).toBe(200);
    const fresh = peers.track(new TestSubscriber());
    await subscribeThrough(node, roomId, subscriberId, fresh, [bob]);
    await waitFor(() => fresh.packets('video', bob) > 10, { message: 'bob at the reconnected subscriber' });
  });

  it('adds a screen track when the publisher renegotiates, and brings it to its subscribers by itself', async () => {
    const roomId = newId();
    const publisherId = newId();
    const subscriberId = newId();
    const publisher = peers.track(await TestPublisher.create());
    await publishThrough(node, roomId, publisherId, publisher);
    await node.events.waitForEvent(isEvent('publisher_ready', publisherId));
    const subscriber = peers.track(new TestSubscriber());
    await subscribeThrough(node, roomId, subscriberId, subscriber, [publisherId]);
    await waitFor(() => subscriber.activeTracks().length === 2, { message: 'audio and video' });

    await publisher.addScreenTrack();
    const renegotiated = await publishThrough(node, roomId, publisherId, publisher);
    expect(renegotiated.streams.map((stream) => stream.kind).sort()).toEqual(['audio', 'video', 'video']);
    const ready = await waitFor(
      () =>
        node.events.events.find(
          (event) =>
            event.type === 'publisher_ready' && event.participant_id === publisherId && event.streams.length === 3,
        ),
      { message: 'publisher_ready with three streams' },
    );
    expect(ready.room_id).toBe(roomId);

    const offer = await node.events.waitForEvent(isEvent('subscriber_offer', subscriberId));
    expect(offer.feeds).toEqual([publisherId]);
    await answerOffer(node, roomId, subscriberId, subscriber, offer.sdp);
    await waitFor(
      () =>
        subscriber.activeTracks().filter((received) => received.kind === 'video' && received.packets > 0).length === 2,
      { message: 'both video tracks at the subscriber' },
    );
  });

  it('starts a subscriber with no feeds and adds them later; buffers ICE candidates that come first', async () => {
    const roomId = newId();
    const publisherId = newId();
    const subscriberId = newId();
    // A trickled candidate may arrive before its publisher exists: kept, and harmless.
    const early = await node.request('POST', mediaControlPath('addIceCandidate', roomId, publisherId), {
      target: 'publisher',
      candidate: { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0 },
    });
    expect(early.status).toBe(200);
    const mdns = await node.request('POST', mediaControlPath('addIceCandidate', roomId, publisherId), {
      target: 'publisher',
      candidate: { candidate: 'candidate:2 1 udp 2122260223 0f2a7c1e-3b0d-4c6e-9b1a-2d3e4f5a6b7c.local 9 typ host' },
    });
    expect(mdns.status).toBe(200);
    await publishThrough(node, roomId, publisherId, peers.track(await TestPublisher.create()));
    const endOfCandidates = await node.request('POST', mediaControlPath('addIceCandidate', roomId, publisherId), {
      target: 'publisher',
      candidate: null,
    });
    expect(endOfCandidates.status).toBe(200);

    const subscriber = peers.track(new TestSubscriber());
    const empty = await subscribeThrough(node, roomId, subscriberId, subscriber, []);
    expect(empty.feeds).toEqual([]);
    const offer = await subscribeThrough(node, roomId, subscriberId, subscriber, [publisherId]);
    expect(offer.feeds).toEqual([publisherId]);
    await waitFor(
      () => subscriber.packets('video', publisherId) > 10 && subscriber.packets('audio', publisherId) > 10,
      {
        message: 'media after adding the feed',
      },
    );
  });
});
