import type { TrueGatherClient } from '../src/index.ts';

/**
 * What each remote tile asks of its publisher's video: a layer no larger than the tile in device
 * pixels (ResizeObserver → `setPreferredSize`), no video at all while the tile is off screen
 * (IntersectionObserver → `pauseVideo` / `resumeVideo`), and, on the stats toggle, the resolution and
 * bitrate the tile really receives (from the subscriber connection's `inbound-rtp` stats).
 */

/**
 * A tile being resized (a window dragged, the grid reflowing as someone joins) settles before its size
 * is sent: the server switches layers at keyframes, and each switch asks the publisher for one.
 */
const RESIZE_DEBOUNCE_MS = 300;
/** How often the stats overlay is refreshed while shown. */
const STATS_INTERVAL_MS = 1_000;

interface WatchedTile {
  publisherId: string;
  element: HTMLElement;
  /** The last size sent (device pixels), so that an unchanged size is not sent again. */
  sentSize?: { width: number; height: number };
  resizeTimer?: ReturnType<typeof setTimeout>;
  visible?: boolean;
}

/**
 * A tile's size in device pixels: what a layer must cover to look sharp on this screen. (Not
 * `devicePixelContentBoxSize`: Chromium leaves an emulated device pixel ratio out of it.)
 */
function devicePixels(entry: ResizeObserverEntry): { width: number; height: number } {
  const ratio = window.devicePixelRatio || 1;
  return {
    width: Math.round(entry.contentRect.width * ratio),
    height: Math.round(entry.contentRect.height * ratio),
  };
}

export class TileQuality {
  readonly #client: TrueGatherClient;
  readonly #onError: (error: unknown) => void;
  readonly #tiles = new Map<Element, WatchedTile>();
  readonly #resizes = new ResizeObserver((entries) => {
    for (const entry of entries) this.#resized(entry);
  });
  readonly #visibility = new IntersectionObserver((entries) => {
    for (const entry of entries) this.#visibilityChanged(entry);
  });
  /** The layer each publisher's video comes in now (`layer_changed`), e.g. `h 640×360`. */
  readonly #layers = new Map<string, string>();
  /** Which publisher a received track belongs to: `inbound-rtp` stats name the track, not the publisher. */
  readonly #publisherOfTrack = new Map<string, string>();
  #statsTimer: ReturnType<typeof setInterval> | undefined;
  #statsShown = false;
  /** The previous `bytesReceived` of each inbound video stream, for the bitrate over the last interval. */
  #previousBytes = new Map<string, { bytes: number; timestamp: number }>();

  constructor(client: TrueGatherClient, onError: (error: unknown) => void) {
    this.#client = client;
    this.#onError = onError;
  }

  /** Starts sizing and pausing `publisherId`'s video from `element`, its tile. */
  watch(publisherId: string, element: HTMLElement): void {
    if (this.#tiles.has(element)) return;
    this.#tiles.set(element, { publisherId, element });
    const layer = this.#layers.get(publisherId);
    if (layer) element.dataset.layer = layer;
    const overlay = element.querySelector<HTMLElement>('[data-testid=tile-stats]');
    if (overlay) overlay.hidden = !this.#statsShown;
    this.#resizes.observe(element);
    this.#visibility.observe(element);
  }

  /** A received track of `publisherId`, so that the stats overlay can put its figures on the right tile. */
  trackReceived(publisherId: string, track: MediaStreamTrack): void {
    this.#publisherOfTrack.set(track.id, publisherId);
  }

  /** The server now sends `publisherId`'s video in layer `rid` (null: none, e.g. paused). */
  layerChanged(publisherId: string, rid: string | null, width?: number, height?: number): void {
    const layer = rid === null ? 'none' : width && height ? `${rid} ${width}×${height}` : rid;
    this.#layers.set(publisherId, layer);
    for (const tile of this.#tiles.values()) if (tile.publisherId === publisherId) tile.element.dataset.layer = layer;
  }

  unwatch(element: Element): void {
    const tile = this.#tiles.get(element);
    if (!tile) return;
    clearTimeout(tile.resizeTimer);
    this.#tiles.delete(element);
    this.#resizes.unobserve(element);
    this.#visibility.unobserve(element);
  }

  /** Shows or hides each tile's received resolution and bitrate, refreshed every second while shown. */
  showStats(on: boolean): void {
    clearInterval(this.#statsTimer);
    this.#statsTimer = undefined;
    this.#statsShown = on;
    this.#previousBytes = new Map();
    for (const { element } of this.#tiles.values()) {
      const overlay = element.querySelector<HTMLElement>('[data-testid=tile-stats]');
      if (overlay) {
        overlay.hidden = !on;
        overlay.textContent = '…';
      }
    }
    if (!on) return;
    const refresh = () => this.#refreshStats().catch(this.#onError);
    void refresh();
    this.#statsTimer = setInterval(refresh, STATS_INTERVAL_MS);
  }

  close(): void {
    this.showStats(false);
    this.#resizes.disconnect();
    this.#visibility.disconnect();
    for (const tile of this.#tiles.values()) clearTimeout(tile.resizeTimer);
    this.#tiles.clear();
  }

  #resized(entry: ResizeObserverEntry): void {
    const tile = this.#tiles.get(entry.target);
    if (!tile) return;
    const size = devicePixels(entry);
    clearTimeout(tile.resizeTimer);
    tile.resizeTimer = setTimeout(() => {
      if (tile.sentSize?.width === size.width && tile.sentSize.height === size.height) return;
      // An empty box (display: none) asks for nothing: the tile is not visible, which pauses it instead.
      if (size.width === 0 || size.height === 0) return;
      tile.sentSize = size;
      this.#client.setPreferredSize(tile.publisherId, size.width, size.height).catch(this.#onError);
    }, RESIZE_DEBOUNCE_MS);
  }

  #visibilityChanged(entry: IntersectionObserverEntry): void {
    const tile = this.#tiles.get(entry.target);
    if (!tile || tile.visible === entry.isIntersecting) return;
    const first = tile.visible === undefined;
    tile.visible = entry.isIntersecting;
    tile.element.dataset.paused = String(!entry.isIntersecting);
    // A tile starts resumed: only a change (or a tile created off screen) needs telling.
    if (first && entry.isIntersecting) return;
    const change = entry.isIntersecting
      ? this.#client.resumeVideo(tile.publisherId)
      : this.#client.pauseVideo(tile.publisherId);
    change.catch(this.#onError);
  }

  async #refreshStats(): Promise<void> {
    const report = (await this.#client.getStats()).subscriber;
    const lines = new Map<string, string>();
    const seen = new Map<string, { bytes: number; timestamp: number }>();
    report?.forEach((stat: RTCInboundRtpStreamStats & { trackIdentifier?: string }) => {
      if (stat.type !== 'inbound-rtp' || stat.kind !== 'video' || !stat.trackIdentifier) return;
      const publisherId = this.#publisherOfTrack.get(stat.trackIdentifier);
      if (!publisherId) return;
      const bytes = stat.bytesReceived ?? 0;
      seen.set(stat.id, { bytes, timestamp: stat.timestamp });
      const previous = this.#previousBytes.get(stat.id);
      const kbps =
        previous && stat.timestamp > previous.timestamp
          ? Math.round(((bytes - previous.bytes) * 8) / (stat.timestamp - previous.timestamp))
          : undefined;
      const resolution = stat.frameWidth ? `${stat.frameWidth}×${stat.frameHeight}` : 'no video';
      const layer = this.#layers.get(publisherId)?.split(' ')[0];
      const figures = [resolution, kbps === undefined ? '…' : `${kbps} kbps`, ...(layer ? [`layer ${layer}`] : [])];
      lines.set(publisherId, figures.join(' · '));
    });
    this.#previousBytes = seen;
    // Stopped meanwhile: the interval's last refresh must not show the overlay again.
    if (this.#statsTimer === undefined) return;
    for (const { publisherId, element } of this.#tiles.values()) {
      const overlay = element.querySelector<HTMLElement>('[data-testid=tile-stats]');
      if (overlay) overlay.textContent = lines.get(publisherId) ?? 'no video';
    }
  }
}
