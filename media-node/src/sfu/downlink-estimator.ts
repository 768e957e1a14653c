/** One block of a viewer's RTCP receiver report, about one track the node sends it. */
export interface DownlinkFeedback {
  /** Share of the track's packets lost since the viewer's previous report (0–1). */
  fractionLost: number;
}

/** A report losing more than this share of packets means the link is short (GCC's loss thresholds). */
export const LOSS_CONGESTED = 0.1;
/**
 * Loss above {@link LOSS_CONGESTED} counts once reports have shown it for this long, with no clean
 * report between: a burst that one report covers is not congestion. On a machine starved of CPU,
 * Chromium viewers reported one ~35 % loss burst and clean reports after it; stepping down on it cost
 * them their layer for 12 s of climbing back.
 */
export const CONGESTION_CONFIRM_MS = 500;
/** Below this share the link counts as clean; in between, the estimate holds. */
export const LOSS_CLEAN = 0.02;
/** Clean reports for this long before the estimate may rise; a rise that meets congestion sooner doubles it. */
export const BASE_HOLD_MS = 4_000;
export const MAX_HOLD_MS = 32_000;
/** After loss: this share of what got through (a margin, so that the queue drains). */
const LOSS_MARGIN = 0.9;
/** The estimate never goes below this (it only ever selects each track's lowest layer there). */
export const MIN_ESTIMATE_BPS = 50_000;

/**
 * What one viewer's downlink carries, from the loss its receiver reports show. It starts unlimited: a
 * viewer gets what its preferences ask for until its link shows congestion. Then:
 * - **Down on congestion.** Reports losing more than {@link LOSS_CONGESTED} for
 *   {@link CONGESTION_CONFIRM_MS} set the estimate to what got through: what the node sent meanwhile ×
 *   (1 − loss) × 0.9, each further such report lowering it again. The estimate only goes down on loss.
 * - **Hold.** Loss between {@link LOSS_CLEAN} and {@link LOSS_CONGESTED} changes nothing but restarts
 *   the wait for a clean period.
 * - **Up one step after a clean period.** After {@link BASE_HOLD_MS} of clean reports since the last
 *   change, the owner may {@link raise} the estimate to what its next step needs (one layer up, or
 *   unlimited when that step gives every track what it asks for). A rise that meets congestion within
 *   {@link BASE_HOLD_MS} doubles the hold (up to {@link MAX_HOLD_MS}), so a link that cannot carry the
 *   next layer is probed less and less often; a rise that stays clean that long resets it.
 *
 * Round-trip times (receiver reports' LSR/DLSR) are not used: a werift viewer busy decrypting reports
 * its event loop's lag as delay (400–700 ms on a loaded machine, no loss), which stepped down viewers
 * whose link had room. A queue that overflows shows as loss.
 *
 * No timers: it advances on feedback only. The owner (a {@link Subscriber}) feeds it, decides what a
 * step is, and closes it with the connection.
 */
export class DownlinkEstimator {
  #estimateBps = Number.POSITIVE_INFINITY;
  #holdMs = BASE_HOLD_MS;
  /** Since when reports have been clean (and the estimate unchanged). */
  #stableSince: number;
  /** When the estimate last rose, until that rise is judged. */
  #raisedAt: number | undefined;
  /** The first report of the current run of heavy loss (cleared by a clean report). */
  #lossSince: number | undefined;
  #closed = false;

  constructor(now: number) {
    this.#stableSince = now;
  }

  /** Bits per second the viewer's link carries; infinite while no congestion was seen (or after recovery). */
  get estimateBps(): number {
    return this.#estimateBps;
  }

  /** The current wait for a clean period before a rise. */
  get holdMs(): number {
    return this.#holdMs;
  }

  /**
   * One report block. `sentBps`: what the node sent this viewer lately (all tracks), which loss is
   * judged against.
   */
  report(feedback: DownlinkFeedback, sentBps: number, now: number): void {
    if (this.#closed) return;
    if (feedback.fractionLost >= LOSS_CLEAN) this.#stableSince = now;
    if (feedback.fractionLost > LOSS_CONGESTED) {
      this.#lossSince ??= now;
      if (now - this.#lossSince >= CONGESTION_CONFIRM_MS) {
        this.#congested(sentBps * (1 - feedback.fractionLost) * LOSS_MARGIN, now);
      }
      return;
    }
    if (feedback.fractionLost >= LOSS_CLEAN) return;
    this.#lossSince = undefined;
    if (this.#raisedAt !== undefined && now - this.#raisedAt >= BASE_HOLD_MS) {
      // The last rise held: the link carries it, and the next one needs only the base wait.
      this.#raisedAt = undefined;
      this.#holdMs = BASE_HOLD_MS;
    }
  }

  #congested(carriedBps: number, now: number): void {
    if (this.#raisedAt !== undefined && now - this.#raisedAt < BASE_HOLD_MS) {
      this.#holdMs = Math.min(this.#holdMs * 2, MAX_HOLD_MS);
    }
    this.#raisedAt = undefined;
    this.#estimateBps = Math.min(this.#estimateBps, Math.max(carriedBps, MIN_ESTIMATE_BPS));
    this.#stableSince = now;
  }

  /** The link has been clean for the hold since the last change: the estimate may rise. */
  canRaise(now: number): boolean {
    return !this.#closed && Number.isFinite(this.#estimateBps) && now - this.#stableSince >= this.#holdMs;
  }

  /** Raises the estimate to `bps` (infinite: unlimited again), if {@link canRaise}. */
  raise(bps: number, now: number): boolean {
    if (!this.canRaise(now) || bps <= this.#estimateBps) return false;
    this.#estimateBps = bps;
    this.#raisedAt = now;
    this.#stableSince = now;
    return true;
  }

  close(): void {
    this.#closed = true;
  }
}

/** What a track takes of its viewer's bandwidth budget (see {@link ForwardedTrack.applyBudget}). */
export interface BudgetUse {
  /** The bitrate of the layer it gets (or switches to); for {@link shareEstimate}, of every track. */
  usedBps: number;
  /** It gets a lower layer than its viewer's preference asks for, for want of bandwidth. */
  limited: boolean;
  /** What the next layer up would cost on top (infinite when not limited); the cheapest of them. */
  upgradeBps: number;
}

/** A track sharing a viewer's downlink (a {@link ForwardedTrack}). */
export interface BudgetTaker {
  readonly source: { readonly kind: 'audio' | 'video'; readonly simulcast: boolean };
  /** Takes what fits in `budgetBps` (at least its lowest layer) and tells what it uses. */
  applyBudget(budgetBps: number, now: number): BudgetUse;
}

/**
 * Shares a viewer's downlink estimate among its tracks, by priority: audio first (it is never cut, so
 * its cost comes off the top), then video that cannot step down (one layer: screen shares, which the
 * SDK sends without simulcast), then simulcast video in the order given (subscription order), each
 * taking the highest layer that fits what is left — its lowest layer at least: bandwidth never pauses
 * a track. The contract's streams do not say which video is a screen share; this order puts them
 * before cameras all the same.
 */
export function shareEstimate(estimateBps: number, tracks: Iterable<BudgetTaker>, now: number): BudgetUse {
  let left = estimateBps;
  let usedBps = 0;
  const video: BudgetTaker[] = [];
  for (const track of tracks) {
    if (track.source.kind !== 'audio') {
      video.push(track);
      continue;
    }
    const use = track.applyBudget(Number.POSITIVE_INFINITY, now);
    left -= use.usedBps;
    usedBps += use.usedBps;
  }
  video.sort((a, b) => Number(a.source.simulcast) - Number(b.source.simulcast));
  let limited = false;
  let upgradeBps = Number.POSITIVE_INFINITY;
  for (const track of video) {
    const use = track.applyBudget(Math.max(left, 0), now);
    left -= use.usedBps;
    usedBps += use.usedBps;
    if (use.limited) {
      limited = true;
      upgradeBps = Math.min(upgradeBps, use.upgradeBps);
    }
  }
  return { usedBps, limited, upgradeBps };
}
