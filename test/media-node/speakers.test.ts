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

    const first = await waitFor(() => speakerEvents(roomId)[0], { timeoutMs: 10_000, message: 'a first report' });
    expect(named(first)).toEqual([loudId]);
    expect(first.speakers[0]!.level).toBeGreaterThan(0);
    expect(first.speakers[0]!.level).toBeLessThanOrEqual(1);

    // Two more windows of everyone's packets (the silent publisher's own are the clock): still only the loud one.
    const until = silent.sentPackets.audio + 2 * 20;
    await waitFor(() => silent.sentPackets.audio >= until && levelless.sentPackets.audio >= until - 20, {
      message: 'two more windows of audio',
    });
    for (const event of speakerEvents(roomId)) {
      expect(named(event)).not.toContain(silentId);
      expect(named(event)).not.toContain(levellessId);
    }

    // Muted: no longer a speaker (its earlier window is forgotten); unmuted, it speaks again.
    const mute = (muted: boolean) =>
      node.request('PUT', mediaControlPath('mute', roomId, loudId), { kind: 'audio', muted });
    const reportAfter = (from: number, speakers: string[]) =>
      waitFor(
        () =>
          speakerEvents(roomId)
            .slice(from)
            .find((event) => named(event)?.join() === speakers.join()),
        {
          timeoutMs: 10_000,
          message: `a report naming [${speakers.join()}]`,
        },
      );
    await reportAfter(speakerEvents(roomId).length - 1, [loudId]);
    let from = speakerEvents(roomId).length;
    expect((await mute(true)).status).toBe(200);
    await reportAfter(from, []);
    from = speakerEvents(roomId).length;
    expect((await mute(false)).status).toBe(200);
    await reportAfter(from, [loudId]);

    // The loud one falls silent while the silent one starts to speak: for a window both may be heard
    // (the first one's window still holds speech), then only the new speaker is.
    loud.audioLevel = 127;
    silent.audioLevel = 5;
    await waitFor(
      () =>
        speakerEvents(roomId)
          .slice(3)
          .find((event) => named(event)?.join() === silentId),
      { timeoutMs: 10_000, message: 'only the formerly silent publisher named' },
    );
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
