import { afterEach, describe, expect, it } from 'vitest';
import { MediaStreamTrack } from 'werift';
import { DYNACAST_RELEASE_MS, Dynacast } from '../../media-node/src/sfu/dynacast.ts';
import type { ViewerPreference } from '../../media-node/src/sfu/forwarded-track.ts';
import type { SourceTrack } from '../../media-node/src/sfu/source-track.ts';
import type { PublisherLayers } from '../../shared/src/rest.ts';
import { vp8Source } from './source-tracks.ts';

/** A viewer of the publisher's feed, as dynacast reads a subscriber. */
class Viewer {
  preference: ViewerPreference | undefined;
  wantedFeeds = ['publisher'];
  preferenceOf = () => this.preference;
}

describe('dynacast: the layers a simulcast publisher is told viewers need', () => {
  let source: SourceTrack;
  let dynacast: Dynacast;
  const reports: PublisherLayers[] = [];
  const viewers: Viewer[] = [];

  function setUp(
    sizes: [number, number][] = [
      [320, 180],
      [640, 360],
      [1280, 720],
    ],
  ) {
    source = vp8Source(['q', 'h', 'f'].map((rid) => new MediaStreamTrack({ kind: 'video', rid })));
    source.layers.forEach((layer, index) => {
      [layer.width, layer.height] = sizes[index]!;
    });
    reports.length = 0;
    viewers.length = 0;
    dynacast = new Dynacast(
      { publishers: () => [{ participantId: 'publisher', tracks: [source] }], subscribers: () => viewers },
      (publisherId, layers) => {
        expect(publisherId).toBe('publisher');
        reports.push(layers);
      },
    );
    // The test drives check() with its own clock: no evaluation of the room's timer in between.
    dynacast.close();
    // A new track is reported at once, every layer on (as a publisher starts).
    dynacast.check(0);
    expect(reports.splice(0)).toEqual([{ mid: '0', rids: ['q', 'h', 'f'] }]);
  }

  afterEach(() => source.close());

  it('stops every layer but the lowest when nobody watches, only after the release delay', () => {
    setUp();
    dynacast.check(0);
    dynacast.check(DYNACAST_RELEASE_MS - 1);
    expect(reports).toEqual([]);
    dynacast.check(DYNACAST_RELEASE_MS);
    expect(reports).toEqual([{ mid: '0', rids: ['q'] }]);
    dynacast.check(DYNACAST_RELEASE_MS * 2);
    expect(reports).toHaveLength(1);
  });

  it('asks at once for every layer up to the largest a viewer needs, judged among layers not sent now', () => {
    setUp();
    dynacast.check(0);
    dynacast.check(DYNACAST_RELEASE_MS);
    // h and f stopped: the viewer's size still selects h by its last known resolution.
    const viewer = new Viewer();
    viewer.preference = { maxWidth: 600, maxHeight: 300 };
    viewers.push(viewer);
    dynacast.check(DYNACAST_RELEASE_MS + 1);
    expect(reports.at(-1)).toEqual({ mid: '0', rids: ['q', 'h'] });
    // No preference: the largest, and every layer below it (the downlink may hold the viewer lower).
    viewer.preference = undefined;
    dynacast.check(DYNACAST_RELEASE_MS + 2);
    expect(reports.at(-1)).toEqual({ mid: '0', rids: ['q', 'h', 'f'] });
    // A second, small viewer changes nothing: the large one still needs f.
    const small = new Viewer();
    small.preference = { maxWidth: 320, maxHeight: 180 };
    viewers.push(small);
    dynacast.check(DYNACAST_RELEASE_MS * 3);
    expect(reports).toHaveLength(3);
  });

  it('does not flap: a layer needed again within the delay is never stopped', () => {
    setUp();
    const viewer = new Viewer();
    viewers.push(viewer);
    dynacast.check(0);
    viewer.preference = { maxWidth: 320, maxHeight: 180 };
    dynacast.check(1_000);
    viewer.preference = undefined;
    dynacast.check(2_000);
    viewer.preference = { maxWidth: 320, maxHeight: 180 };
    dynacast.check(2_500);
    dynacast.check(2_500 + DYNACAST_RELEASE_MS - 1);
    expect(reports).toEqual([]);
    dynacast.check(2_500 + DYNACAST_RELEASE_MS);
    expect(reports).toEqual([{ mid: '0', rids: ['q'] }]);
  });

  it('a paused viewer or one of another feed needs nothing; an unknown layer size keeps every layer', () => {
    setUp();
    const paused = new Viewer();
    paused.preference = { paused: true };
    const elsewhere = new Viewer();
    elsewhere.wantedFeeds = ['someone-else'];
    viewers.push(paused, elsewhere);
    dynacast.check(0);
    dynacast.check(DYNACAST_RELEASE_MS);
    expect(reports).toEqual([{ mid: '0', rids: ['q'] }]);

    setUp([
      [320, 180],
      [0, 0],
      [1280, 720],
    ]);
    const small = new Viewer();
    small.preference = { maxWidth: 320, maxHeight: 180 };
    viewers.push(small);
    dynacast.check(0);
    dynacast.check(DYNACAST_RELEASE_MS);
    expect(reports).toEqual([]);
  });
});
