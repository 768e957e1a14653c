import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { RtpHeader, RtpPacket, serializeAudioLevelIndication } from 'werift';
import { ActiveSpeakerObserver, SpeakerClock } from '../../media-node/src/sfu/active-speakers.ts';
import {
  AudioLevelMeter,
  NO_AUDIO_LEVEL,
  readAudioLevel,
  SILENCE_DBOV,
  SPEAKER_DETECTION,
} from '../../media-node/src/sfu/audio-level.ts';
import type { ActiveSpeaker } from '../../shared/src/signaling.ts';

/** Opus at 20 ms per packet: packets per tick of the detection clock. */
const PACKETS_PER_TICK = SPEAKER_DETECTION.tickMs / 20;
const PACKETS_PER_WINDOW = PACKETS_PER_TICK * SPEAKER_DETECTION.windowTicks;

describe('RFC 6464 audio level extension', () => {
  it('reads the level of a one-byte element from a parsed RTP packet, the V flag aside', () => {
    const header = new RtpHeader({
      payloadType: 111,
      sequenceNumber: 1,
      timestamp: 960,
      ssrc: 1234,
      extensionProfile: 0xbede,
      extensions: [
        { id: 1, payload: Buffer.from('0') },
        { id: 3, payload: Buffer.from([0x80 | 42]) },
      ],
    });
    const packet = RtpPacket.deSerialize(new RtpPacket(header, Buffer.from([0xf8, 0xff, 0xfe])).serialize());
    expect(readAudioLevel(packet.header.extensions, 3)).toBe(42);
    expect(readAudioLevel(packet.header.extensions, 1)).toBe(0x30 & 0x7f);
    expect(readAudioLevel(packet.header.extensions, 5)).toBe(NO_AUDIO_LEVEL);
  });

  it('matches werift’s serializer, and a malformed or absent element reads as no level', () => {
    for (const level of [0, 35, 36, SILENCE_DBOV]) {
      expect(readAudioLevel([{ id: 2, payload: serializeAudioLevelIndication(level) }], 2)).toBe(level);
    }
    expect(readAudioLevel([{ id: 2, payload: Buffer.alloc(0) }], 2)).toBe(NO_AUDIO_LEVEL);
    expect(readAudioLevel([], 2)).toBe(NO_AUDIO_LEVEL);
  });
});

/** Feeds one tick's packets (`active` of them at `level`, the rest silent) and advances the meter. */
function tick(meter: AudioLevelMeter, active: number, level = 20): number {
  for (let index = 0; index < PACKETS_PER_TICK; index++) meter.observe(index < active ? level : SILENCE_DBOV);
  return meter.advance();
}

/** Feeds a whole window with `active` packets in `PACKETS_PER_WINDOW` at `level`; the last advance's level. */
function window(meter: AudioLevelMeter, active: number, level = 20): number {
  let result = 0;
  let left = active;
  for (let index = 0; index < SPEAKER_DETECTION.windowTicks; index++) {
    const now = Math.min(left, PACKETS_PER_TICK);
    left -= now;
    result = tick(meter, now, level);
  }
  return result;
}

describe('AudioLevelMeter (LiveKit: −35 dBov, 40 % of 400 ms)', () => {
  it('speaks with 40 % of the window’s packets active, not with less', () => {
    const minimum = Math.ceil(PACKETS_PER_WINDOW * SPEAKER_DETECTION.minActiveShare);
    expect(window(new AudioLevelMeter(), minimum)).toBeGreaterThan(0);
    expect(window(new AudioLevelMeter(), minimum - 1)).toBe(0);
  });

  it('counts −35 dBov as active and −36 dBov, packets without a level and silence as not', () => {
    expect(window(new AudioLevelMeter(), PACKETS_PER_WINDOW, 35)).toBeGreaterThan(0);
    expect(window(new AudioLevelMeter(), PACKETS_PER_WINDOW, 36)).toBe(0);
    expect(window(new AudioLevelMeter(), PACKETS_PER_WINDOW, NO_AUDIO_LEVEL)).toBe(0);
    expect(window(new AudioLevelMeter(), 0)).toBe(0);
  });

  it('slides: speech older than the window no longer counts, and no packets is not speaking', () => {
    const meter = new AudioLevelMeter();
    expect(window(meter, PACKETS_PER_WINDOW)).toBeGreaterThan(0);
    // Half a window of silence: still 50 % active.
    expect(tick(meter, 0)).toBeGreaterThan(0);
    expect(tick(meter, 0)).toBeGreaterThan(0);
    // Three quarters: 25 %.
    expect(tick(meter, 0)).toBe(0);
    const idle = new AudioLevelMeter();
    for (let index = 0; index < SPEAKER_DETECTION.windowTicks; index++) expect(idle.advance()).toBe(0);
  });

  it('levels are linear in 0..1, louder above quieter, steady speech above a burst, and smoothed', () => {
    const loud = window(new AudioLevelMeter(), PACKETS_PER_WINDOW, 6);
    const quiet = window(new AudioLevelMeter(), PACKETS_PER_WINDOW, 30);
    const burst = window(new AudioLevelMeter(), PACKETS_PER_WINDOW / 2, 6);
    expect(loud).toBeLessThanOrEqual(1);
    expect(loud).toBeGreaterThan(quiet);
    expect(loud).toBeGreaterThan(burst);
    // Converges to the window's level (−6 dBov ≈ 0.5) rather than jumping to it.
    const meter = new AudioLevelMeter();
    const first = tick(meter, PACKETS_PER_TICK, 6);
    const later = window(meter, PACKETS_PER_WINDOW, 6);
    expect(first).toBeLessThan(later);
    expect(later).toBeCloseTo(10 ** (-6 / 20), 1);
  });

  it('reset forgets the window (a muted track stops speaking at once)', () => {
    const meter = new AudioLevelMeter();
    window(meter, PACKETS_PER_WINDOW);
    meter.reset();
    expect(meter.advance()).toBe(0);
    expect(meter.level).toBe(0);
  });
});

/** A stand-in for a SourceTrack: what the observer reads of one. */
class FakeTrack extends EventEmitter<{ closed: [] }> {
  readonly audioLevel: AudioLevelMeter | undefined = new AudioLevelMeter();
  muted = false;
  /** −dBov of the packets fed on each tick; silence by default. */
  level = SILENCE_DBOV;
  readonly publisherId: string;
  constructor(publisherId: string) {
    super();
    this.publisherId = publisherId;
  }
  feedTick(): void {
    for (let index = 0; index < PACKETS_PER_TICK; index++) this.audioLevel?.observe(this.level);
  }
}

/** An observer on a hand-driven clock: `step()` feeds one tick of packets and ticks at +100 ms. */
function observed(...ids: string[]) {
  const clockTicks = { added: 0, deleted: 0 };
  const observer = new ActiveSpeakerObserver({
    add: () => clockTicks.added++,
    delete: () => clockTicks.deleted++,
  });
  const tracks = ids.map((id) => new FakeTrack(id));
  for (const track of tracks) observer.add(track);
  const reports: { at: number; speakers: ActiveSpeaker[] }[] = [];
  let now = 0;
  observer.on('speakers', (speakers) => reports.push({ at: now, speakers }));
  const step = (ticks = 1) => {
    for (let index = 0; index < ticks; index++) {
      for (const track of tracks) track.feedTick();
      now += SPEAKER_DETECTION.tickMs;
      observer.tick(now);
    }
  };
  const names = (index: number) => reports[index]?.speakers.map((speaker) => speaker.participant_id);
  return { observer, tracks, reports, step, names, clockTicks };
}

describe('ActiveSpeakerObserver', () => {
  it('reports speakers loudest first, only when the set or the order changes', () => {
    const { tracks, reports, step, names } = observed('ann', 'bob', 'cy');
    const [ann, bob] = tracks as [FakeTrack, FakeTrack];
    ann.level = 25;
    bob.level = 10;
    step(SPEAKER_DETECTION.windowTicks * 2);
    expect(reports).toHaveLength(1);
    expect(names(0)).toEqual(['bob', 'ann']);
    expect(reports[0]!.speakers[0]!.level).toBeGreaterThan(reports[0]!.speakers[1]!.level);
    for (const speaker of reports[0]!.speakers) expect(speaker.level).toBeLessThanOrEqual(1);

    // Levels move, the order does not: nothing new.
    bob.level = 12;
    step(SPEAKER_DETECTION.windowTicks * 2);
    expect(reports).toHaveLength(1);

    // Ann gets louder than Bob: a new order.
    ann.level = 3;
    step(SPEAKER_DETECTION.windowTicks * 2);
    expect(names(1)).toEqual(['ann', 'bob']);

    // Everyone falls silent: an empty report, once.
    ann.level = SILENCE_DBOV;
    bob.level = SILENCE_DBOV;
    step(SPEAKER_DETECTION.windowTicks * 2);
    expect(reports.map((_, index) => names(index))).toEqual([['bob', 'ann'], ['ann', 'bob'], []]);
  });

  it('reports at most once per 250 ms: a change within it comes with a later tick, if it still holds', () => {
    const { tracks, reports, step, names } = observed('ann', 'bob');
    const [ann, bob] = tracks as [FakeTrack, FakeTrack];
    ann.level = 10;
    step(SPEAKER_DETECTION.windowTicks);
    expect(names(0)).toEqual(['ann']);
    // Bob starts at once: his window fills within the interval; the report waits for its end.
    bob.level = 5;
    for (let index = 0; index < 12; index++) step();
    for (let index = 1; index < reports.length; index++) {
      expect(reports[index]!.at - reports[index - 1]!.at).toBeGreaterThanOrEqual(SPEAKER_DETECTION.minReportIntervalMs);
    }
    expect(reports.at(-1)!.speakers.map((speaker) => speaker.participant_id)).toEqual(['bob', 'ann']);
  });

  it('never names a muted track, counts a participant once at its loudest, forgets closed tracks', () => {
    const { observer, tracks, reports, step, names, clockTicks } = observed('ann', 'bob');
    const [ann, bob] = tracks as [FakeTrack, FakeTrack];
    const screenAudio = new FakeTrack('bob');
    observer.add(screenAudio);
    tracks.push(screenAudio);
    ann.level = 10;
    ann.muted = true;
    bob.level = 30;
    screenAudio.level = 8;
    step(SPEAKER_DETECTION.windowTicks * 2);
    expect(reports).toHaveLength(1);
    expect(names(0)).toEqual(['bob']);
    // At the level of the louder track (−8 dBov, still rising through the smoothing), far above −30 dBov.
    expect(reports[0]!.speakers[0]!.level).toBeGreaterThan(3 * 10 ** (-30 / 20));

    bob.emit('closed');
    screenAudio.emit('closed');
    ann.emit('closed');
    step();
    expect(names(1)).toEqual([]);
    // Nothing left to observe or report: the observer leaves the worker's clock.
    expect(clockTicks.deleted).toBe(1);
  });

  it('ignores tracks without a meter (no audio level negotiated) and stops once closed', () => {
    const { observer, reports, step, clockTicks } = observed();
    const video = Object.assign(new FakeTrack('ann'), { audioLevel: undefined });
    observer.add(video);
    expect(clockTicks.added).toBe(0);
    observer.close();
    step();
    expect(reports).toEqual([]);
  });
});

describe('SpeakerClock', () => {
  it('runs one timer while any room observes, none otherwise', () => {
    const clock = new SpeakerClock();
    const [first, second] = [new ActiveSpeakerObserver(clock), new ActiveSpeakerObserver(clock)];
    expect(clock.running).toBe(false);
    first.add(new FakeTrack('ann'));
    second.add(new FakeTrack('bob'));
    expect(clock.running).toBe(true);
    first.close();
    expect(clock.running).toBe(true);
    second.close();
    expect(clock.running).toBe(false);
  });
});
