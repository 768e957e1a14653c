import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RTP_EXTENSION_URI } from 'werift';
import { newId } from '../../shared/src/ids.ts';
import { type MediaEvent, mediaControlPath } from '../../shared/src/media-control.ts';
import { PeerSet, TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';
import { MediaNodeProcess, publishThrough, subscribeThrough } from './harness.ts';

type SpeakersEvent = Extract<MediaEvent, { type: 'active_speakers' }>;

const AUDIO_LEVEL_URI = RTP_EXTENSION_URI.audioLevelIndication;
const extmapIds = (sdp: string, uri: string) =>
  sdp
    .split('\r\n')
    .filter((line) => line.startsWith('a=extmap:') && line.endsWith(` ${uri}`))
    .map((line) => Number(line.slice('a=extmap:'.length).split(' ')[0]));

/**
 * Speaker detection in a real media node process, fed by werift publishers that put RFC 6464 levels
 * on their audio as browsers do; its `active_speakers` events are read where the edge would get them.
 */
describe('active speakers on the media node', () => {
  let node: MediaNodeProcess;
  const peers = new PeerSet();

  beforeAll(async () => {
    node = await MediaNodeProcess.start();
  });

  afterAll(async () => {
    await peers.closeAll();
    await node?.stop();
  });

  const speakerEvents = (roomId: string) =>
    node.events.events.filter(
      (event): event is SpeakersEvent => event.type === 'active_speakers' && event.room_id === roomId,
    );
  const named = (event: SpeakersEvent | undefined) => event?.speakers.map((speaker) => speaker.participant_id);
  /** The next report after the first `after` ones, waiting for it. */
  const reportAfter = (roomId: string, after: number) =>
    waitFor(() => speakerEvents(roomId)[after], { timeoutMs: 10_000, message: `speaker report #${after + 1}` });

  it('names the publisher that speaks, never a silent one or one without levels, and drops it while muted', async () => {
    const roomId = newId();
    const [loudId, silentId, levellessId] = [newId(), newId(), newId()];
    const loud = peers.track(await TestPublisher.create({ audioLevel: 10, video: false }));
    const silent = peers.track(await TestPublisher.create({ audioLevel: 127, video: false }));
    const levelless = peers.track(await TestPublisher.create({ video: false }));

    // The publishing leg negotiates the extension when the browser offers it (the answer carries the
    // offer's id), and does not invent it for a publisher that does not.
    const loudOffer = loud.pc.localDescription?.sdp ?? (await loud.createOffer());
    const loudAnswer = await publishThrough(node, roomId, loudId, loud);
    expect(extmapIds(loudAnswer.sdp, AUDIO_LEVEL_URI)).toEqual(extmapIds(loudOffer, AUDIO_LEVEL_URI));
    expect(extmapIds(loudAnswer.sdp, AUDIO_LEVEL_URI)).toHaveLength(1);
    await publishThrough(node, roomId, silentId, silent);
    expect(extmapIds((await publishThrough(node, roomId, levellessId, levelless)).sdp, AUDIO_LEVEL_URI)).toEqual([]);

    const first = await reportAfter(roomId, 0);
    expect(named(first)).toEqual([loudId]);
    expect(first.speakers[0]!.level).toBeGreaterThan(0);
    expect(first.speakers[0]!.level).toBeLessThanOrEqual(1);

    // Two more windows of everyone's packets (the silent publisher's own are the clock): still only the loud one.
    const until = silent.sentPackets.audio + 2 * 20;
    await waitFor(() => silent.sentPackets.audio >= until && levelless.sentPackets.audio >= until - 20, {
      message: 'two more windows of audio',
    });
    for (const event of speakerEvents(roomId)) expect(named(event)).toEqual([loudId]);

    // Muted: no longer a speaker (its earlier window is forgotten); unmuted, it speaks again.
    const mute = (muted: boolean) =>
      node.request('PUT', mediaControlPath('mute', roomId, loudId), { kind: 'audio', muted });
    expect((await mute(true)).status).toBe(200);
    expect(named(await reportAfter(roomId, 1))).toEqual([]);
    expect((await mute(false)).status).toBe(200);
    expect(named(await reportAfter(roomId, 2))).toEqual([loudId]);

    // The loud one falls silent, the silent one speaks louder than it ever did: the order follows.
    loud.audioLevel = 127;
    silent.audioLevel = 5;
    const next = await waitFor(
      () =>
        speakerEvents(roomId)
          .slice(3)
          .find((event) => named(event)?.includes(silentId)),
      { timeoutMs: 10_000, message: 'the formerly silent publisher named' },
    );
    expect(named(next)?.[0]).toBe(silentId);
  });

  it('keeps the audio level out of what subscribers receive: not negotiated, not in the packets', async () => {
    const roomId = newId();
    const publisherId = newId();
    const publisher = peers.track(await TestPublisher.create({ audioLevel: 10, video: false }));
    await publishThrough(node, roomId, publisherId, publisher);
    const subscriber = peers.track(new TestSubscriber());
    const offer = await subscribeThrough(node, roomId, newId(), subscriber, [publisherId]);
    expect(offer.sdp).not.toContain(AUDIO_LEVEL_URI);

    const seenIds = new Set<number>();
    let packets = 0;
    for (const transceiver of subscriber.pc.getTransceivers()) {
      transceiver.receiver.track.onReceiveRtp.subscribe((packet) => {
        packets++;
        for (const extension of packet.header.extensions) seenIds.add(extension.id);
      });
    }
    await waitFor(() => packets >= 50, { message: '50 forwarded audio packets' });
    // Only what the subscriber's own answer negotiated (at most the MID): never the publisher's level.
    const answer = subscriber.pc.localDescription?.sdp ?? '';
    const negotiated = extmapIds(answer, RTP_EXTENSION_URI.sdesMid);
    expect(answer).not.toContain(AUDIO_LEVEL_URI);
    for (const id of seenIds) expect(negotiated).toContain(id);
  });
});
