import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { ChromiumSimulcastPublisher } from '../../bench/media/chromium-publisher.ts';
import { newId } from '../../shared/src/ids.ts';
import {
  MEDIA_CONTROL_TIMEOUT_MS,
  mediaControlPath,
  type PublishResponse,
  type RelayResponse,
} from '../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../shared/src/media-node-trust.ts';
import { signServiceToken } from '../../shared/src/service-token.ts';
import { MEDIA_NODE_AUDIENCE } from '../../shared/src/token.ts';
import { nackCount, PeerSet, TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';
import { answerOffer, isEvent, MediaNodeProcess, metricValue, publishThrough, subscribeThrough } from './harness.ts';

/** The relay senders the origin opened so far, oldest first (from its log). */
function relaySenderIds(node: MediaNodeProcess): string[] {
  return node.logs.flatMap((line) => {
    const parsed = JSON.parse(line) as { message?: string; relay_id?: string };
    return parsed.message === 'relay sender opened' && parsed.relay_id ? [parsed.relay_id] : [];
  });
}

/**
 * Answers each `subscriber_offer` the node sends about this viewer, in order, as the SDK would,
 * until stopped.
 */
function answerOffersOf(node: MediaNodeProcess, roomId: string, viewerId: string, viewer: TestSubscriber) {
  const failures: string[] = [];
  let answered = 0;
  let stopped = false;
  const offers = () => node.events.events.filter(isEvent('subscriber_offer', viewerId));
  const loop = async () => {
    for (;;) {
      const next = await waitFor(() => (stopped ? 'stopped' : offers()[answered]), { timeoutMs: 120_000 });
      if (next === 'stopped') return;
      answered++;
      await answerOffer(node, roomId, viewerId, viewer, next.sdp).catch((error: Error) => failures.push(error.message));
    }
  };
  loop().catch((error: Error) => failures.push(error.message));
  return {
    failures,
    stop: () => {
      stopped = true;
    },
  };
}

/** A node-to-node token: `from` calling `to`. */
function nodeToken(to: MediaNodeProcess, from: MediaNodeProcess, secret = to.secret): Promise<string> {
  return signServiceToken(secret, {
    issuer: mediaNodeIdentity(from.url),
    audience: MEDIA_NODE_AUDIENCE,
    claims: { node: mediaNodeIdentity(to.url) },
  });
}

/**
 * Relays between two real media nodes (child processes sharing MEDIA_NODE_SECRET): a publisher on
 * node A, viewers on node B, and the `relay` operation the edge calls on B.
 */
describe('relays between media nodes', () => {
  let origin: MediaNodeProcess;
  let pulling: MediaNodeProcess;
  const peers = new PeerSet();

  beforeAll(async () => {
    const secret = randomBytes(32).toString('base64url');
    [origin, pulling] = await Promise.all([
      MediaNodeProcess.start({ MEDIA_NODE_SECRET: secret }),
      MediaNodeProcess.start({ MEDIA_NODE_SECRET: secret }),
    ]);
  });

  afterEach(async () => {
    await peers.closeAll();
  });

  afterAll(async () => {
    await Promise.all([origin?.stop(), pulling?.stop()]);
  });

  /** A publisher on the origin node, its media flowing. */
  async function publishOnOrigin(roomId: string) {
    const publisherId = newId();
    const publisher = peers.track(await TestPublisher.create());
    await publishThrough(origin, roomId, publisherId, publisher);
    await origin.events.waitForEvent(isEvent('publisher_ready', publisherId));
    return { publisherId, publisher };
  }

  function relay(roomId: string, feeds: string[], originUrl = origin.url) {
    return pulling.request<RelayResponse>('PUT', mediaControlPath('relay', roomId), { origin_url: originUrl, feeds });
  }

  it('carries a publisher on A to viewers on B over one relay, with continuous sequence numbers', async () => {
    const roomId = newId();
    const { publisherId } = await publishOnOrigin(roomId);

    const relayed = await relay(roomId, [publisherId]);
    expect(relayed).toMatchObject({ status: 200, body: { feeds: [publisherId] } });

    const viewers = [new TestSubscriber(), new TestSubscriber(), new TestSubscriber()].map((viewer) =>
      peers.track(viewer),
    );
    for (const viewer of viewers) {
      const offer = await subscribeThrough(pulling, roomId, newId(), viewer, [publisherId]);
      expect(offer.feeds).toEqual([publisherId]);
    }
    for (const viewer of viewers) {
      await waitFor(() => viewer.packets('audio', publisherId) > 50 && viewer.packets('video', publisherId) > 50, {
        message: 'audio and video relayed to every viewer on B',
      });
      for (const track of viewer.activeTracks()) expect(track.sequence.missing()).toBe(0);
    }

    // One relay for every viewer: open on both ends, and what A sent once B received once.
    expect(await metricValue(pulling, 'truegather_relays_open{direction="received"}')).toBe(1);
    expect(await metricValue(origin, 'truegather_relays_open{direction="sent"}')).toBe(1);
    const sentByOrigin = await metricValue(origin, 'truegather_relayed_packets_total{direction="sent"}');
    const forwardedOnB = await metricValue(pulling, 'truegather_rtp_forwarded_packets_total');
    expect(sentByOrigin).toBeGreaterThan(100);
    // Three viewers get each relayed packet: B forwards about three times what crossed the relay.
    expect(forwardedOnB).toBeGreaterThan(2 * sentByOrigin);
    // The relay is not a participant: no load on either node beyond the peers themselves.
    const health = async (node: MediaNodeProcess) =>
      (await (await fetch(new URL('/health', node.url))).json()) as { load: number };
    expect((await health(pulling)).load).toBe(3);
    expect((await health(origin)).load).toBe(1);

    // `feeds: []` closes the relay on both nodes.
    expect(await relay(roomId, [])).toMatchObject({ status: 200, body: { feeds: [] } });
    await waitFor(async () => (await metricValue(origin, 'truegather_relays_open{direction="sent"}')) === 0, {
      message: 'the origin end of the relay to close',
    });
    expect(await metricValue(pulling, 'truegather_relays_open{direction="received"}')).toBe(0);
  });

  it('re-establishes a relay that dropped: viewers on B get media again, sequence numbers continuous', async () => {
    const roomId = newId();
    const { publisherId } = await publishOnOrigin(roomId);
    expect((await relay(roomId, [publisherId])).status).toBe(200);
    const viewer = peers.track(new TestSubscriber());
    await subscribeThrough(pulling, roomId, newId(), viewer, [publisherId]);
    await waitFor(() => viewer.packets('video', publisherId) > 30, { message: 'relayed video on B' });

    // The origin drops its end of the relay (as a crash of its peer connection would).
    const relayId = await waitFor(() => relaySenderIds(origin).at(-1), { message: 'the relay sender id' });
    const closed = await origin.request('DELETE', mediaControlPath('closeRelaySender', roomId, relayId), undefined, {
      token: await nodeToken(origin, pulling),
    });
    expect(closed.status).toBe(200);
    await waitFor(() => relaySenderIds(origin).length >= 2, { message: 'the pulling node to re-establish the relay' });
    const before = { audio: viewer.packets('audio', publisherId), video: viewer.packets('video', publisherId) };
    await waitFor(
      () =>
        viewer.packets('audio', publisherId) > before.audio + 50 &&
        viewer.packets('video', publisherId) > before.video + 30,
      { message: 'media on B again after the relay was re-established' },
    );
    // The viewer's tracks stayed (no renegotiation), and their sequence numbers have no jump.
    expect(viewer.activeTracks()).toHaveLength(2);
    for (const track of viewer.activeTracks()) expect(track.sequence.missing()).toBe(0);
    expect(await metricValue(pulling, 'truegather_relays_open{direction="received"}')).toBe(1);
    expect(await metricValue(origin, 'truegather_relays_open{direction="sent"}')).toBe(1);
    await relay(roomId, []);
  });

  it('answers a viewer’s NACKs on B from B’s history', async () => {
    const roomId = newId();
    const { publisherId } = await publishOnOrigin(roomId);
    expect((await relay(roomId, [publisherId])).status).toBe(200);
    const viewer = peers.track(new TestSubscriber({ lossPercent: 5 }));
    await subscribeThrough(pulling, roomId, newId(), viewer, [publisherId]);
    const video = await waitFor(
      () => viewer.activeTracks().find((received) => received.kind === 'video' && received.sequence.span >= 150),
      { timeoutMs: 15_000, message: '150 relayed video packets at the viewer' },
    );
    expect(await nackCount(viewer.pc, 'inbound-rtp')).toBeGreaterThan(0);
    expect(video.sequence.missing()).toBeLessThanOrEqual(1);
    await relay(roomId, []);
  });

  it('follows the origin’s publishers: added tracks, leaving and republishing reach B’s viewer', async () => {
    const roomId = newId();
    const { publisherId, publisher } = await publishOnOrigin(roomId);
    // A second publisher that stays: the viewer always keeps a feed (and its connection).
    const { publisherId: stayingId } = await publishOnOrigin(roomId);
    expect((await relay(roomId, [publisherId, stayingId])).body).toEqual({ feeds: [publisherId, stayingId] });
    const viewerId = newId();
    const viewer = peers.track(new TestSubscriber());
    await subscribeThrough(pulling, roomId, viewerId, viewer, [publisherId, stayingId]);
    const answering = answerOffersOf(pulling, roomId, viewerId, viewer);
    const liveVideoTracks = (feed: string) =>
      viewer.activeTracks().filter((track) => track.kind === 'video' && track.streamId === feed && track.packets > 0);
    try {
      await waitFor(() => liveVideoTracks(publisherId).length === 1 && liveVideoTracks(stayingId).length === 1, {
        message: 'both feeds on B',
      });

      // A screen track added on A: the relay renegotiates by itself, B's viewer gets it.
      await publisher.addScreenTrack();
      await publishThrough(origin, roomId, publisherId, publisher);
      await waitFor(() => liveVideoTracks(publisherId).length === 2, { message: 'the relayed screen track' });

      // The publisher leaves A: its relayed feed ends on B, the viewer renegotiates as for a local publisher.
      expect((await origin.request('DELETE', mediaControlPath('unpublish', roomId, publisherId))).status).toBe(200);
      await waitFor(() => viewer.feeds().join() === stayingId, { message: 'the feed to end on B' });
      // The origin's events are the edge's only source about publishers: B reports none.
      expect(pulling.events.events.filter((event) => event.type.startsWith('publisher_'))).toEqual([]);

      // It publishes again from a new connection: the relay, still up, brings its new tracks.
      const republished = peers.track(await TestPublisher.create());
      await publishThrough(origin, roomId, publisherId, republished);
      await waitFor(() => liveVideoTracks(publisherId).length === 1 && viewer.packets('audio', publisherId) > 0, {
        message: 'the republished feed on B',
      });
      expect(await metricValue(pulling, 'truegather_relays_open{direction="received"}')).toBe(1);
      expect(await metricValue(origin, 'truegather_relays_open{direction="sent"}')).toBe(1);
      expect(answering.failures).toEqual([]);
    } finally {
      answering.stop();
      await relay(roomId, []);
    }
  });

  it('relays every layer of a Chromium simulcast publisher: a viewer on B switches layers', async () => {
    const roomId = newId();
    const publisherId = newId();
    const chromium = await ChromiumSimulcastPublisher.launch();
    peers.track(chromium);
    const published = await origin.request<PublishResponse>('POST', mediaControlPath('publish', roomId), {
      participant_id: publisherId,
      sdp: await chromium.createOffer(),
    });
    expect(published.status).toBe(201);
    await chromium.setAnswer(published.body.sdp);
    await origin.events.waitForEvent(isEvent('publisher_ready', publisherId), 20_000);
    expect((await relay(roomId, [publisherId])).body).toEqual({ feeds: [publisherId] });
    // Closed even when a wait below fails: an open relay would fail the next test's relay count.
    onTestFinished(async () => {
      await relay(roomId, []);
    });

    const viewerId = newId();
    const keyframes: { width: number; height: number }[] = [];
    const viewer = peers.track(new TestSubscriber({ onKeyframe: (size) => keyframes.push(size) }));
    await subscribeThrough(pulling, roomId, viewerId, viewer, [publisherId]);
    const layerEvents = () => pulling.events.events.filter(isEvent('subscriber_layer', viewerId));
    const prefer = (max_width: number, max_height: number) =>
      pulling.request('PUT', mediaControlPath('updateSubscription', roomId, viewerId), {
        feed: publisherId,
        max_width,
        max_height,
      });

    // The smallest layer, then the full one: each arrives from its keyframe, as from a local publisher.
    expect((await prefer(320, 180)).status).toBe(200);
    await waitFor(() => layerEvents().some((event) => event.width === 320), {
      timeoutMs: 30_000,
      message: 'the 320-px layer at the viewer on B',
    });
    await waitFor(() => keyframes.some((size) => size.width === 320), { message: 'a 320-px keyframe' });
    expect((await prefer(1280, 720)).status).toBe(200);
    await waitFor(() => layerEvents().some((event) => event.width === 1280), {
      timeoutMs: 30_000,
      message: 'the 1280-px layer at the viewer on B',
    });
    await waitFor(() => keyframes.some((size) => size.width === 1280), { message: 'a 1280-px keyframe' });
    const video = viewer.activeTracks().find((track) => track.kind === 'video')!;
    // One stream for the viewer across the switches: no sequence gap.
    expect(video.sequence.missing()).toBeLessThanOrEqual(1);
    expect(await metricValue(pulling, 'truegather_layer_switches_total')).toBeGreaterThan(0);
    // Chromium's start plus two layer switches, each waiting up to 30 s on a loaded machine.
  }, 90_000);

  it('answers the edge before it gives up when the origin hangs, so that the pulling node is not taken for hung', async () => {
    const roomId = newId();
    const { publisherId } = await publishOnOrigin(roomId);
    // An origin that accepts the connection and never answers.
    const hung = createServer(() => {});
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    try {
      const started = performance.now();
      const answer = await relay(roomId, [publisherId], `http://127.0.0.1:${(hung.address() as AddressInfo).port}/`);
      expect(answer.status).toBe(503);
      expect(answer.body).toMatchObject({ error: { code: 'media_unavailable' } });
      // The edge counts a call without an answer in MEDIA_CONTROL_TIMEOUT_MS against the node it called.
      expect(performance.now() - started).toBeLessThan(MEDIA_CONTROL_TIMEOUT_MS);
    } finally {
      hung.closeAllConnections();
      await new Promise((resolve) => hung.close(resolve));
    }
  });

  it('does not follow an origin’s redirect, so the node token never goes elsewhere', async () => {
    const roomId = newId();
    const { publisherId } = await publishOnOrigin(roomId);
    const tokensSeen: (string | undefined)[] = [];
    const elsewhere = createServer((request, response) => {
      tokensSeen.push(request.headers.authorization);
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    const redirecting = createServer((_request, response) => {
      response.writeHead(307, { location: `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}/` }).end();
    });
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    try {
      const answer = await relay(
        roomId,
        [publisherId],
        `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}/`,
      );
      expect(answer.status).toBe(503);
      expect(answer.body).toMatchObject({ error: { code: 'media_unavailable' } });
      expect(tokensSeen).toEqual([]);
    } finally {
      await Promise.all([elsewhere, redirecting].map((server) => new Promise((resolve) => server.close(resolve))));
    }
  });

  it('refuses an unreachable origin with media_unavailable, and node-to-node calls with the edge’s token', async () => {
    const roomId = newId();
    const { publisherId } = await publishOnOrigin(roomId);

    const unreachable = await relay(roomId, [publisherId], 'http://127.0.0.1:9/');
    expect(unreachable.status).toBe(503);
    expect(unreachable.body).toMatchObject({ error: { code: 'media_unavailable' } });

    // A feed the origin does not have is not relayed, and no relay stays open for it.
    expect(await relay(roomId, [newId()])).toMatchObject({ status: 200, body: { feeds: [] } });
    expect(await metricValue(pulling, 'truegather_relays_open')).toBe(0);

    const invalid = await relay(roomId, [publisherId], 'ftp://example.com/');
    expect(invalid).toMatchObject({ status: 400, body: { error: { code: 'validation_failed' } } });
    const tooMany = await relay(
      roomId,
      Array.from({ length: 65 }, () => newId()),
    );
    expect(tooMany.status).toBe(400);

    // The edge's token is not a node's: the node-to-node routes refuse it.
    const pull = mediaControlPath('pull', roomId, newId());
    const asEdge = await origin.request('PUT', pull, { feeds: [publisherId], connection: newId() });
    expect(asEdge.status).toBe(401);
    // A node's token signed with another secret, or minted for another node, is refused too.
    const wrongSecret = await nodeToken(origin, pulling, randomBytes(32));
    const forAnotherNode = await nodeToken(pulling, pulling);
    for (const token of [wrongSecret, forAnotherNode]) {
      const refused = await origin.request('PUT', pull, { feeds: [publisherId], connection: newId() }, { token });
      expect(refused.status).toBe(401);
    }
    // A node may not call the edge's routes either.
    const asNode = await nodeToken(origin, pulling);
    expect(
      (await origin.request('GET', mediaControlPath('describeRoom', roomId), undefined, { token: asNode })).status,
    ).toBe(401);
    // A relay's SDP may exceed a participant's 64 KiB (an m-line per layer of every feed), up to 256 KiB.
    const answer = mediaControlPath('setRelaySenderAnswer', roomId, newId());
    const sdpOf = (kib: number) => `v=0\r\n${'a=x\r\n'.repeat((kib * 1024) / 5)}`;
    const token = asNode;
    const large = await origin.request('POST', answer, { sdp: sdpOf(100) }, { token });
    expect(large).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    const tooLarge = await origin.request('POST', answer, { sdp: sdpOf(300) }, { token });
    expect(tooLarge.status).toBe(413);
    // Nothing was left behind by the refusals.
    expect(await metricValue(pulling, 'truegather_relays_open')).toBe(0);
    expect(await metricValue(origin, 'truegather_relays_open')).toBe(0);
  });
});
