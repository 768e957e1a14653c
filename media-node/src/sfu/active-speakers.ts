import { EventEmitter } from 'node:events';
import type { ActiveSpeaker } from '../../../shared/src/signaling.ts';
import { type AudioLevelMeter, SPEAKER_DETECTION } from './audio-level.ts';

/** A track whose levels may be observed: a SourceTrack, metered when its publisher sends audio levels. */
export interface MeteredTrack {
  readonly publisherId: string;
  readonly muted: boolean;
  readonly audioLevel: AudioLevelMeter | undefined;
  once(event: 'closed', listener: () => void): unknown;
}

interface ObserverEvents {
  /** The set or order of speakers changed (at most once per `minReportIntervalMs`). */
  speakers: [ActiveSpeaker[]];
}

/** Levels are reported with 4 decimals: enough to rank and draw, short on the wire. */
const roundLevel = (level: number) => Math.round(level * 10_000) / 10_000;

/**
 * A room's speaker detection (mediasoup's AudioLevelObserver / ActiveSpeakerObserver): on each tick
 * of the worker's {@link SpeakerClock}, evaluates every observed track's window and reports who
 * speaks, loudest first, when the set or the order changed and the last report is at least
 * `minReportIntervalMs` old (a change within that interval is reported by a later tick, if it still
 * holds). A participant with several audio tracks counts once, at its loudest. Muted tracks never speak.
 */
export class ActiveSpeakerObserver extends EventEmitter<ObserverEvents> {
  readonly #clock: Pick<SpeakerClock, 'add' | 'delete'>;
  readonly #tracks = new Set<MeteredTrack>();
  /** The participant ids of the last report, in order. */
  #reported: readonly string[] = [];
  #reportedAt = Number.NEGATIVE_INFINITY;
  #closed = false;

  constructor(clock: Pick<SpeakerClock, 'add' | 'delete'>) {
    super();
    this.#clock = clock;
  }

  /** Observes the track until it closes; a track without a meter (video, no audio level negotiated) is ignored. */
  add(track: MeteredTrack): void {
    if (this.#closed || !track.audioLevel) return;
    this.#tracks.add(track);
    track.once('closed', () => this.#tracks.delete(track));
    this.#clock.add(this);
  }

  /** Evaluates the window of every track; `now` in ms (performance.now()). */
  tick(now: number): void {
    const loudest = new Map<string, number>();
    for (const track of this.#tracks) {
      const level = track.audioLevel!.advance();
      if (track.muted || level <= 0) continue;
      loudest.set(track.publisherId, Math.max(loudest.get(track.publisherId) ?? 0, level));
    }
    const speakers = [...loudest]
      .sort(([idA, levelA], [idB, levelB]) => levelB - levelA || (idA < idB ? -1 : 1))
      .map(([participantId, level]) => ({ participant_id: participantId, level: roundLevel(level) }));
    const changed =
      speakers.length !== this.#reported.length ||
      speakers.some((speaker, index) => speaker.participant_id !== this.#reported[index]);
    if (changed && now - this.#reportedAt >= SPEAKER_DETECTION.minReportIntervalMs) {
      this.#reported = speakers.map((speaker) => speaker.participant_id);
      this.#reportedAt = now;
      this.emit('speakers', speakers);
    }
    // Nothing to observe and nobody left to report as gone: the clock need not wake for this room.
    if (this.#tracks.size === 0 && this.#reported.length === 0) this.#clock.delete(this);
  }

  close(): void {
    this.#closed = true;
    this.#tracks.clear();
    this.#clock.delete(this);
  }
}

/**
 * One timer per worker thread for the speaker detection of all its rooms (as SenderReportClock for
 * sender reports): an event-loop wake-up costs ~150 µs here, so rooms share one, and it only runs
 * while some room observes a track.
 */
export class SpeakerClock {
  readonly #observers = new Set<ActiveSpeakerObserver>();
  #timer: NodeJS.Timeout | undefined;

  add(observer: ActiveSpeakerObserver): void {
    this.#observers.add(observer);
    this.#timer ??= setInterval(() => this.tick(performance.now()), SPEAKER_DETECTION.tickMs);
  }

  delete(observer: ActiveSpeakerObserver): void {
    this.#observers.delete(observer);
    if (this.#observers.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Public for tests, which drive the clock themselves. */
  tick(now: number): void {
    for (const observer of this.#observers) observer.tick(now);
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#observers.clear();
  }
}
