import type { PublisherLayers } from '../../../shared/src/rest.ts';
import type { ViewerPreference } from './forwarded-track.ts';
import type { SourceLayer, SourceTrack } from './source-track.ts';

/**
 * A layer no viewer needs stops only after this long unneeded: a tile resized or scrolled back and
 * forth, or a viewer reconnecting, does not make the publisher's encoder flap. A layer needed again
 * is asked for at once.
 */
export const DYNACAST_RELEASE_MS = 3_000;
const DYNACAST_CHECK_INTERVAL_MS = 500;

/** What dynacast reads of a room: its publishers' tracks, and each subscriber's feeds and preferences. */
export interface DynacastRoom {
  publishers(): Iterable<{ participantId: string; tracks: readonly SourceTrack[] }>;
  subscribers(): Iterable<{ wantedFeeds: readonly string[]; preferenceOf(feed: string): ViewerPreference | undefined }>;
}

interface LayerDemand {
  /** The rids last reported (at first: every layer, as a publisher starts sending them all, reported at once). */
  reported: Set<string>;
  /** Reported rids no viewer needs, since when. */
  unneededSince: Map<string, number>;
}

/**
 * LiveKit's dynacast: tells each simulcast publisher which layers of its video viewers need, so that it
 * stops encoding and sending the others. A viewer needs the layer its preference selects among all
 * the publisher's layers, sending or not (a paused viewer needs none), and every layer below it: the
 * viewer's layer is also capped by its downlink, and a layer must flow for the node to step up to it.
 * The lowest layer is always needed, so that a new viewer gets a picture at once. Evaluated twice a
 * second per room.
 */
export class Dynacast {
  readonly #room: DynacastRoom;
  readonly #report: (publisherId: string, layers: PublisherLayers) => void;
  readonly #demand = new WeakMap<SourceTrack, LayerDemand>();
  readonly #timer: NodeJS.Timeout;

  constructor(room: DynacastRoom, report: (publisherId: string, layers: PublisherLayers) => void) {
    this.#room = room;
    this.#report = report;
    this.#timer = setInterval(() => this.check(), DYNACAST_CHECK_INTERVAL_MS);
    this.#timer.unref();
  }

  /** Compares what viewers need now with what each publisher was told, and reports the changes. */
  check(now = performance.now()): void {
    const subscribers = [...this.#room.subscribers()];
    for (const publisher of this.#room.publishers()) {
      for (const source of publisher.tracks) {
        if (source.kind !== 'video' || !source.simulcast || source.closed || !source.mid) continue;
        const needed = this.#neededRids(source, publisher.participantId, subscribers);
        // A new track is reported at once, whatever it needs: a report meant for the publisher's previous
        // connection (same mids) may have reached its new one.
        const fresh = !this.#demand.has(source);
        const demand = this.#demand.get(source) ?? {
          reported: new Set(source.layers.flatMap((layer) => (layer.rid ? [layer.rid] : []))),
          unneededSince: new Map(),
        };
        this.#demand.set(source, demand);
        const next = new Set(needed);
        for (const rid of demand.reported) {
          if (needed.has(rid)) {
            demand.unneededSince.delete(rid);
            continue;
          }
          const since = demand.unneededSince.get(rid) ?? now;
          demand.unneededSince.set(rid, since);
          if (now - since < DYNACAST_RELEASE_MS) next.add(rid);
        }
        for (const rid of demand.reported) if (!next.has(rid)) demand.unneededSince.delete(rid);
        const changed = next.size !== demand.reported.size || [...next].some((rid) => !demand.reported.has(rid));
        if (!changed && !fresh) continue;
        demand.reported = next;
        const rids = source.layers.flatMap((layer) => (layer.rid && next.has(layer.rid) ? [layer.rid] : []));
        this.#report(publisher.participantId, { mid: source.mid, rids });
      }
    }
  }

  /** The rids of every layer ranked at or below the highest one a viewer of this feed needs. */
  #neededRids(
    source: SourceTrack,
    publisherId: string,
    subscribers: readonly {
      wantedFeeds: readonly string[];
      preferenceOf(feed: string): ViewerPreference | undefined;
    }[],
  ): Set<string> {
    let highestRank = 0;
    for (const subscriber of subscribers) {
      if (!subscriber.wantedFeeds.includes(publisherId)) continue;
      const preference = subscriber.preferenceOf(publisherId) ?? {};
      if (preference.paused) continue;
      highestRank = Math.max(highestRank, this.#rankFor(source, preference));
    }
    return new Set(
      source.layers.flatMap((layer) => (layer.rid && source.rankOf(layer) <= highestRank ? [layer.rid] : [])),
    );
  }

  /**
   * The rank of the layer a preference selects among every layer of the source: the smallest whose
   * last known resolution covers it. No size asked, or a layer whose resolution no keyframe has told
   * yet: the top one (a layer that never flowed cannot be judged).
   */
  #rankFor(source: SourceTrack, { maxWidth, maxHeight }: ViewerPreference): number {
    const top = Math.max(...source.layers.map((layer) => source.rankOf(layer)));
    if (maxWidth === undefined && maxHeight === undefined) return top;
    if (source.layers.some((layer) => layer.width === 0)) return top;
    const covering = source.layers
      .filter((layer: SourceLayer) => layer.width >= (maxWidth ?? 0) && layer.height >= (maxHeight ?? 0))
      .map((layer) => source.rankOf(layer));
    return covering.length > 0 ? Math.min(...covering) : top;
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
