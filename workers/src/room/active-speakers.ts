import { ACTIVE_SPEAKERS_MIN_INTERVAL_MS, type ActiveSpeaker } from '../../../shared/src/signaling.ts';
import { encodeServerFrame } from './frames.ts';
import { isListed, muteOf, type RoomState } from './room-state.ts';

/**
 * The speakers others may be told about: participants still in the room, listed (a hidden
 * participant is never named), and not muted here (the node drops muted tracks too; this covers a
 * report that crossed the mute).
 */
export function visibleSpeakers(state: RoomState, speakers: readonly ActiveSpeaker[]): ActiveSpeaker[] {
  return speakers.filter((speaker) => {
    const record = state.participant(speaker.participant_id);
    return record !== undefined && isListed(record) && !muteOf(record, 'audio').muted;
  });
}

export interface ActiveSpeakersRelayOptions {
  /** Filters a report at the time it is sent (see {@link visibleSpeakers}). */
  visible: (speakers: readonly ActiveSpeaker[]) => ActiveSpeaker[];
  broadcast: (text: string) => void;
  sendTo: (participantId: string, text: string) => void;
  now?: () => number;
}

/**
 * Turns the media node's speaker reports into `active_speakers` frames for everyone in the room: only
 * when the set or order others may see changed, and at most once per
 * {@link ACTIVE_SPEAKERS_MIN_INTERVAL_MS}. The node already reports at that pace, but reports that a
 * slow delivery held back can arrive together: the latest waits for the end of the interval, the
 * ones it supersedes are never sent. A participant who joins is told who speaks at once rather than
 * at the next change. Transient by nature: after an eviction the next report is sent.
 */
export class ActiveSpeakersRelay {
  readonly #options: Required<ActiveSpeakersRelayOptions>;
  /** The speakers of the last frame, in order. */
  #sent: readonly ActiveSpeaker[] = [];
  #sentAt = Number.NEGATIVE_INFINITY;
  #waiting: readonly ActiveSpeaker[] | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /**
   * The last report of each media node: a node hears only the publishers it holds, so a room across
   * nodes speaks the merge of them, loudest first.
   */
  readonly #reports = new Map<string, readonly ActiveSpeaker[]>();

  constructor(options: ActiveSpeakersRelayOptions) {
    this.#options = { now: Date.now, ...options };
  }

  /** A node's report of who speaks among its publishers (`node`: its identity). */
  report(speakers: readonly ActiveSpeaker[], node = ''): void {
    this.#reports.set(node, speakers);
    this.#schedule();
  }

  /** The room lost that node: what it last reported no longer holds. */
  forgetNode(node: string): void {
    if (this.#reports.delete(node)) this.#schedule();
  }

  #schedule(): void {
    const all = [...this.#reports.values()].flat().sort((a, b) => b.level - a.level);
    this.#waiting = all.filter(
      (speaker, index) => all.findIndex((other) => other.participant_id === speaker.participant_id) === index,
    );
    if (this.#timer !== undefined) return;
    const wait = this.#sentAt + ACTIVE_SPEAKERS_MIN_INTERVAL_MS - this.#options.now();
    if (wait <= 0) {
      this.#flush();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, wait);
  }

  #flush(): void {
    const speakers = this.#waiting;
    this.#waiting = undefined;
    if (!speakers) return;
    const visible = this.#options.visible(speakers);
    const unchanged =
      visible.length === this.#sent.length &&
      visible.every((speaker, index) => speaker.participant_id === this.#sent[index]?.participant_id);
    if (unchanged) return;
    this.#sent = visible;
    this.#sentAt = this.#options.now();
    this.#options.broadcast(encodeServerFrame('active_speakers', { speakers: visible }));
  }

  /** Tells a participant who just joined who speaks now (nothing when nobody does). */
  catchUp(participantId: string): void {
    const speakers = this.#options.visible(this.#sent);
    if (speakers.length > 0) this.#options.sendTo(participantId, encodeServerFrame('active_speakers', { speakers }));
  }

  /** The room ended: nothing more is sent, and the next session starts with nobody speaking. */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#waiting = undefined;
    this.#reports.clear();
    this.#sent = [];
    this.#sentAt = Number.NEGATIVE_INFINITY;
  }
}
