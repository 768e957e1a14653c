import { afterEach, describe, expect, it } from 'vitest';
import { useKeyObjectsForSrtp } from '../../media-node/src/sfu/srtp-key-objects.ts';
import { PeerSet, TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';

describe('SRTP keys as KeyObjects', () => {
  const peers = new PeerSet();
  afterEach(() => peers.closeAll());

  it('swaps the keys of every cipher of a connected werift connection, and media keeps flowing both ways', async () => {
    const publisher = peers.track(await TestPublisher.create());
    const subscriber = peers.track(new TestSubscriber());
    await publisher.setAnswer(await subscriber.answer(await publisher.createOffer()));
    await waitFor(() => subscriber.packets('video') > 10, { message: 'media before the swap' });

    // One bundled DTLS transport per side: SRTP and SRTCP, each with a local and a remote context.
    expect(useKeyObjectsForSrtp(publisher.pc)).toBe(4);
    expect(useKeyObjectsForSrtp(subscriber.pc)).toBe(4);

    // RTP (encrypt on one side, decrypt on the other) and RTCP (PLI back to the publisher) still work.
    const before = { rtp: subscriber.packets('video'), plis: publisher.pliTimes.length };
    await subscriber.requestKeyframes();
    await waitFor(() => subscriber.packets('video') > before.rtp + 30 && publisher.pliTimes.length > before.plis, {
      message: 'RTP and RTCP after the swap',
    });
  });
});
