import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { expectReply } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { SubscriberLayer } from '../../shared/src/rest.ts';
import { metricValue } from '../media-node/harness.ts';
import { chromiumPath, launchChromium } from '../support/chromium.ts';
import { cameraOverride, createRoomOnDemo, joinOnDemo, sentLayerWidths } from '../support/demo-page.ts';
import { type JoinedParticipant, joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { describeWithTool } from '../support/required-tools.ts';
import { TestSubscriber, waitFor } from '../support/werift-peers.ts';

/**
 * Simulcast through a relay: a Chromium publisher (the demo page's SDK, three layers of a 1280×720
 * fake camera) fills node A (MEDIA_CAPACITY=1), so a werift viewer goes to node B, which pulls every
 * layer from A over the relay; the viewer switches layers there with `update_subscription`.
 */

describeWithTool(chromiumPath, 'REQUIRE_BROWSER')('simulcast through a relay between two media nodes', () => {
  let stack: RunningStack;
  let browser: Browser;
  let alice: Page;

  beforeAll(async () => {
    stack = await startLoopbackStack({ MEDIA_CAPACITY: '1' }, { mediaNodes: 2 });
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  /** The layer `viewer` was last told it gets (`layer_changed`) since frame index `from`. */
  const lastLayer = (viewer: JoinedParticipant, from: number) =>
    viewer.frames
      .slice(from)
      .filter((frame) => frame.type === 'layer_changed')
      .at(-1)?.payload as SubscriberLayer | undefined;

  it('a viewer on node B switches between the layers of a publisher on node A', async () => {
    const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
    alice = await context.newPage();
    await alice.addInitScript(cameraOverride({ width: 1280, height: 720 }));
    const link = await createRoomOnDemo(alice, stack.edgeUrl);
    await joinOnDemo(alice, link, 'Alice');
    const roomId = new URL(link).searchParams.get('room') ?? '';
    await waitFor(async () => (await sentLayerWidths(alice)).length === 3, {
      timeoutMs: 20_000,
      intervalMs: 250,
      message: 'Chromium sending all three layers',
    });

    const bob = await joinParticipant(stack, roomId, 'Bob');
    const aliceId = await waitFor(
      () =>
        bob.joined.payload.publishers.find((publisher) => publisher.display === 'Alice')?.id ??
        bob.frames.flatMap((frame) => (frame.type === 'publisher_joined' ? [frame.payload.publisher.id] : []))[0],
      { timeoutMs: 20_000, message: 'Alice announced' },
    );
    let keyframe = { width: 0, height: 0 };
    const viewer = new TestSubscriber({ onKeyframe: (size) => (keyframe = size) });
    try {
      const offer = expectReply(await bob.connection.request('subscribe', { feeds: [aliceId] }), 'subscribe_offer');
      expectReply(
        await bob.connection.request('subscribe_answer', { sdp: await viewer.answer(offer.payload.sdp) }),
        'ack',
      );
      await waitFor(() => viewer.packets('video', aliceId) > 0 && viewer.packets('audio', aliceId) > 0, {
        timeoutMs: 30_000,
        message: 'Alice’s audio and video on node B',
      });
      // Bob is on node B (A holds Alice alone), which gets Alice over one relay.
      const [nodeA, nodeB] = stack.mediaUrls.map((url) => ({ url })) as [{ url: string }, { url: string }];
      expect(await metricValue(nodeB, 'truegather_subscribers')).toBe(1);
      expect(await metricValue(nodeA, 'truegather_subscribers')).toBe(0);
      expect(await metricValue(nodeB, 'truegather_relays_open{direction="received"}')).toBe(1);

      // The smallest layer, then the largest: each switch is announced, and the keyframes that follow
      // are that layer's size.
      for (const [maxHeight, rid, width] of [
        [180, 'q', 320],
        [720, 'f', 1280],
        [360, 'h', 640],
      ] as const) {
        const from = bob.frames.length;
        expectReply(
          await bob.connection.request('update_subscription', { feed: aliceId, max_height: maxHeight }),
          'ack',
        );
        const layer = await waitFor(() => lastLayer(bob, from)?.rid === rid && lastLayer(bob, from), {
          timeoutMs: 15_000,
          message: `layer ${rid} announced`,
        });
        expect(layer.width).toBe(width);
        await waitFor(() => keyframe.width === width, { timeoutMs: 15_000, message: `a ${width}-px keyframe on B` });
      }
    } finally {
      await viewer.close();
    }
  }, 180_000);
});
