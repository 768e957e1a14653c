import { type MediaStreamTrack, RTCRtpCodecParameters, useNACK } from 'werift';
import { createForwardingStats } from '../../media-node/src/sfu/forwarding-stats.ts';
import { SourceTrack } from '../../media-node/src/sfu/source-track.ts';
import type { Logger } from '../../shared/src/log.ts';

export const VP8 = new RTCRtpCodecParameters({
  mimeType: 'video/VP8',
  clockRate: 90_000,
  payloadType: 96,
  rtcpFeedback: [useNACK()],
});

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silentLogger };

/** A VP8 source of werift tracks (one per layer) with no receiver behind it: for fan-out and layer tests. */
export function vp8Source(tracks: MediaStreamTrack[], logger: Logger = silentLogger): SourceTrack {
  return new SourceTrack({
    publisherId: 'publisher',
    kind: 'video',
    mid: '0',
    codec: VP8,
    receiver: {} as never,
    tracks,
    stats: createForwardingStats(),
    logger,
  });
}
