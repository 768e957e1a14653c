import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { SubscriberLayer } from '../../shared/src/rest.ts';
import { metricValue } from '../media-node/harness.ts';
import { chromiumPath, launchChromium } from '../support/chromium.ts';
import { cameraOverride, createRoomOnDemo, joinOnDemo, sentLayerWidths } from '../support/demo-page.ts';
import { type JoinedParticipant, joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { LimitedLink, limitedLinkTool } from '../support/limited-link.ts';
import { RemoteViewer } from '../support/remote-viewer.ts';
import { requireTool } from '../support/required-tools.ts';
import { waitFor } from '../support/werift-peers.ts';

/**
 * A viewer behind a really limited downlink: a werift viewer in a network namespace of its own, whose
 * veth link the test throttles to 400 kbit/s (`tc tbf`, see LimitedLink.limit), beside a viewer on an
 * unlimited link. The publisher is Chromium sending three layers (1280×720 fake camera). Needs root,
 * iproute2 and Chromium: REQUIRE_NETNS=1 (CI) makes their absence a failure; without it the suite is
 * skipped where either is missing.
 */

const required = process.env.REQUIRE_NETNS === '1';
const LINK_RATE = '400kbit';

((chromiumPath && limitedLinkTool) || required ? describe : describe.skip)('a viewer behind a limited downlink', () => {
  let link: LimitedLink | undefined;
  let stack: RunningStack | undefined;
  let browser: Browser | undefined;
  let context: BrowserContext | undefined;
  const viewers: RemoteViewer[] = [];

  beforeAll(async () => {
    link = LimitedLink.create(requireTool(limitedLinkTool, 'root with iproute2 (ip netns)', 'REQUIRE_NETNS'));
    // The node's RTC sockets listen on the host side of the veth pair: reachable from both namespaces.
    stack = await startLoopbackStack({ MEDIA_RTC_LISTEN_IP: link.hostAddress });
    browser = await launchChromium();
    context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  }, 120_000);

  afterAll(async () => {
    // Each step runs even when an earlier one fails: the namespace must not outlive the test.
    const steps = [
      ...viewers.map((viewer) => () => viewer.close()),
      () => context?.close(),
      () => browser?.close(),
      () => stack?.stop(),
    ];
    for (const step of steps)
      await Promise.resolve()
        .then(step)
        .catch(() => undefined);
    link?.destroy();
  });

  /** The layer `participant` was last told it gets of `feed` (`layer_changed`), since frame index `from`. */
  function lastLayer(participant: JoinedParticipant, from = 0): SubscriberLayer | undefined {
    const frames = participant.frames.slice(from).filter((frame) => frame.type === 'layer_changed');
    return frames.at(-1)?.payload as SubscriberLayer | undefined;
  }

  async function subscribe(participant: JoinedParticipant, viewer: RemoteViewer, feed: string) {
    const offer = expectReply(await participant.connection.request('subscribe', { feeds: [feed] }), 'subscribe_offer');
    const sdp = await viewer.answer(offer.payload.sdp);
    expectReply(await participant.connection.request('subscribe_answer', { sdp }), 'ack');
  }

  it('gets a lower layer than an unlimited viewer, and climbs back when the limit goes', async () => {
    const node = { url: stack!.mediaUrl };
    const alice = await context!.newPage();
    await alice.addInitScript(cameraOverride({ width: 1280, height: 720 }));
    const invite = await createRoomOnDemo(alice, stack!.edgeUrl);
    await joinOnDemo(alice, invite, 'Alice');
    await waitFor(async () => (await sentLayerWidths(alice)).length === 3, {
      timeoutMs: 20_000,
      intervalMs: 250,
      message: 'Chromium sending all three layers',
    });
    const roomId = new URL(invite).searchParams.get('room')!;

    const open = await joinParticipant(stack!, roomId, 'Open');
    const limited = await joinParticipant(stack!, roomId, 'Limited');
    // Alice's feed: listed at join if the room had announced it by then, else announced after.
    const feed = await waitFor(
      () => {
        const announced = open.frames.flatMap((frame) =>
          frame.type === 'publisher_joined' ? [frame.payload.publisher] : [],
        );
        return [...open.joined.payload.publishers, ...announced].find((publisher) => publisher.display === 'Alice')?.id;
      },
      { timeoutMs: 20_000, message: 'Alice’s feed announced' },
    );
    const openViewer = new RemoteViewer(link!.hostAddress);
    const limitedViewer = new RemoteViewer(link!.namespaceAddress, (command) => link!.commandInside(command));
    viewers.push(openViewer, limitedViewer);
    await subscribe(open, openViewer, feed);
    await subscribe(limited, limitedViewer, feed);

    // Both start on the 1280-px layer: nothing limits them yet.
    await waitFor(() => lastLayer(open)?.width === 1280 && lastLayer(limited)?.width === 1280, {
      timeoutMs: 20_000,
      message: 'both viewers on the 1280-px layer',
    });
    await waitFor(() => openViewer.width === 1280 && limitedViewer.width === 1280, {
      timeoutMs: 10_000,
      message: 'both viewers receiving 1280-px keyframes',
    });
    expect(await metricValue(node, 'truegather_viewers_bandwidth_limited')).toBe(0);

    // 400 kbit/s towards the limited viewer: it steps down, the open one stays.
    const beforeLimit = limited.frames.length;
    link!.limit(LINK_RATE);
    const limitedAt = performance.now();
    // When each layer_changed reached the limited viewer (ms since the limit), for the report.
    const timeline: string[] = [];
    limited.connection.on('frame', (frame) => {
      if (frame.type === 'layer_changed') {
        timeline.push(`${Math.round(performance.now() - limitedAt)} ms: ${frame.payload.width ?? '?'} px`);
      }
    });
    const lower = await waitFor(
      () => {
        const layer = lastLayer(limited, beforeLimit);
        return layer?.width !== undefined && layer.width < 1280 && layer;
      },
      { timeoutMs: 10_000, message: 'the limited viewer stepping down' },
    );
    const stepDownMs = performance.now() - limitedAt;
    // What reaches it: keyframes of the lower layer (through the queue the limit built up).
    const keyframesBefore = limitedViewer.keyframes.length;
    await waitFor(() => limitedViewer.keyframes.slice(keyframesBefore).some((size) => size.width < 1280), {
      timeoutMs: 30_000,
      message: 'a lower-layer keyframe reaching the limited viewer',
    });
    expect(lower.width).toBeLessThanOrEqual(640);
    expect(lastLayer(open)?.width).toBe(1280);
    expect(openViewer.width).toBe(1280);
    await waitFor(async () => (await metricValue(node, 'truegather_viewers_bandwidth_limited')) === 1, {
      timeoutMs: 5_000,
      intervalMs: 200,
      message: 'the node counting one bandwidth-limited viewer',
    });

    // The limit goes: the viewer climbs back to the 1280-px layer, one step per clean hold period.
    const beforeLift = limited.frames.length;
    link!.unlimit();
    const liftedAt = performance.now();
    await waitFor(() => lastLayer(limited, beforeLift)?.width === 1280, {
      timeoutMs: 60_000,
      intervalMs: 100,
      message: 'the limited viewer climbing back to 1280 px',
    });
    const climbMs = performance.now() - liftedAt;
    await waitFor(() => limitedViewer.width === 1280, { timeoutMs: 10_000, message: '1280-px keyframes again' });
    await waitFor(async () => (await metricValue(node, 'truegather_viewers_bandwidth_limited')) === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
      message: 'no bandwidth-limited viewer left',
    });
    console.info(
      `downlink limit: stepped down to ${lower.width} px ${Math.round(stepDownMs)} ms after limiting the link to ${LINK_RATE}/s; ` +
        `back at 1280 px ${Math.round(climbMs)} ms after the limit was lifted ` +
        `(lifted at ${Math.round(liftedAt - limitedAt)} ms; ${timeline.join(', ')})`,
    );
  }, 180_000);
});
