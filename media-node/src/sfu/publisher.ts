import { type RTCRtpTransceiver, RTP_EXTENSION_URI } from 'werift';
import type { Stream, StreamKind } from '../../../shared/src/rest.ts';
import { badSdp, notFound, unavailable } from '../errors.ts';
import { PublisherBandwidthFeedback } from './bandwidth-feedback.ts';
import { MediaPeer, type MediaPeerOptions } from './media-peer.ts';
import {
  announceHostCandidates,
  fingerprintOf,
  MAX_MEDIA_SECTIONS,
  sdpShapeProblem,
  simulcastProblem,
  withoutMdnsCandidates,
  withPlainRidLines,
} from './sdp-text.ts';
import { SourceTrack } from './source-track.ts';

/**
 * When media flows on some tracks but not all, `ready` still fires this long after the first
 * packet: a browser may negotiate a video m-line and send nothing on it (camera off).
 */
export const READY_GRACE_MS = 2_000;

interface PublisherEvents {
  /** A new track was negotiated (first offer or a renegotiation adding e.g. a screen track). */
  track: [SourceTrack];
  /** Media flows: the edge may announce the publisher. Fires again when the set of tracks changes. */
  ready: [Stream[]];
  closed: [reason: string, byRemote: boolean];
}

/**
 * A participant's ingress peer connection (audio, video and an optional screen track), answering
 * the browser's offers. Each received track becomes a {@link SourceTrack}.
 */
export class Publisher extends MediaPeer<PublisherEvents> {
  readonly #tracks = new Map<RTCRtpTransceiver, SourceTrack>();
  /** Kinds the edge muted: tracks a renegotiation adds start muted too. */
  readonly #mutedKinds = new Set<StreamKind>();
  #fingerprint: string | undefined;
  #readyAnnounced = false;
  #readyTimer: NodeJS.Timeout | undefined;
  readonly #bandwidthFeedback: PublisherBandwidthFeedback;

  constructor(options: MediaPeerOptions) {
    super(options);
    this.#bandwidthFeedback = new PublisherBandwidthFeedback({
      receivers: () => this.#videoTracks().flatMap((track) => (track.receiver ? [track.receiver] : [])),
      mediaSsrcs: () =>
        this.#videoTracks().flatMap((track) =>
          track.layers.flatMap((layer) => (layer.ssrc === undefined ? [] : [layer.ssrc])),
        ),
      logger: this.logger,
    });
  }

  #videoTracks(): SourceTrack[] {
    return this.tracks.filter((track) => track.kind === 'video');
  }

  get tracks(): SourceTrack[] {
    return [...this.#tracks.values()];
  }

  /** The fingerprint of the browser's DTLS certificate: a different one means a new connection. */
  get fingerprint(): string | undefined {
    return this.#fingerprint;
  }

  get streams(): Stream[] {
    return this.tracks.map((track) => ({
      kind: track.kind,
      mid: track.mid,
      codec: canonicalMimeType(track.codec.mimeType),
      ...(track.simulcast
        ? {
            layers: track.layers.map((layer) => ({
              rid: layer.rid ?? String(layer.index),
              ...(layer.width > 0 ? { width: layer.width, height: layer.height } : {}),
            })),
          }
        : {}),
    }));
  }

  /** Stops (or resumes) forwarding this publisher's tracks of `kind` to every subscriber. */
  mute(kind: StreamKind, muted: boolean): void {
    if (muted) this.#mutedKinds.add(kind);
    else this.#mutedKinds.delete(kind);
    for (const track of this.#tracks.values()) if (track.kind === kind) track.setMuted(muted);
  }

  /** Applies a browser offer (the first one or a renegotiation) and returns the answer. */
  negotiate(offerSdp: string): Promise<{ sdp: string; streams: Stream[] }> {
    return this.negotiations.run(async () => {
      if (this.closed) throw notFound('publisher');
      const problem = sdpShapeProblem(offerSdp, { media: true, maxMediaSections: MAX_MEDIA_SECTIONS });
      const offerProblem = problem ?? simulcastProblem(offerSdp);
      if (offerProblem) throw badSdp(offerProblem);
      try {
        await this.pc.setRemoteDescription({ type: 'offer', sdp: withPlainRidLines(withoutMdnsCandidates(offerSdp)) });
        await this.pc.setLocalDescription(await this.pc.createAnswer());
      } catch (error) {
        // A renegotiation that failed half-way leaves the connection in an unknown state: it ends,
        // and the edge hears of it (a failed first negotiation is the caller's to clean up).
        if (this.#fingerprint !== undefined && this.pc.signalingState !== 'stable') {
          this.close('renegotiation failed', true);
        }
        // Whatever werift cannot answer comes from the offer it was given.
        throw badSdp(error instanceof Error ? error.message : 'rejected by the WebRTC stack');
      }
      // The connection can fail while werift gathers candidates (e.g. every port of its block is
      // held by another process): that is the node's failure, not the offer's, and the closed
      // transceivers must not be mistaken for an offer without a usable track.
      if (this.closed) throw unavailable('the peer connection failed while negotiating');
      this.#fingerprint = fingerprintOf(offerSdp);
      this.#syncTracks();
      if (this.#tracks.size === 0) {
        throw badSdp('no audio or video track with a supported codec (Opus, VP8, H.264)');
      }
      this.lifecycle.expectConnection();
      const answer = this.pc.localDescription?.sdp ?? '';
      return { sdp: announceHostCandidates(answer, this.announcedIp), streams: this.streams };
    });
  }

  /** Makes the tracks match what the last negotiation receives: new m-lines start, dropped ones end. */
  #syncTracks(): void {
    let changed = false;
    for (const transceiver of this.pc.getTransceivers()) {
      const receiving = isReceiving(transceiver);
      const existing = this.#tracks.get(transceiver);
      if (existing && !receiving) {
        this.#tracks.delete(transceiver);
        existing.close();
        changed = true;
      } else if (!existing && receiving) {
        const source = this.#createSource(transceiver);
        this.#tracks.set(transceiver, source);
        changed = true;
        this.emit('track', source);
      }
    }
    if (changed && this.#readyAnnounced) {
      this.#readyAnnounced = false;
      this.#checkReady();
    }
  }

  #createSource(transceiver: RTCRtpTransceiver): SourceTrack {
    const receiver = transceiver.receiver;
    // werift makes one track per rid (RFC 8853 simulcast), but its peer connection's onTrack and
    // `receiver.track` only ever show the first one: the layers are read from `receiver.tracks`.
    const ridTracks = receiver.tracks.filter((track) => track.rid !== undefined);
    const source = new SourceTrack({
      publisherId: this.participantId,
      kind: transceiver.kind === 'audio' ? 'audio' : 'video',
      mid: transceiver.mid ?? '',
      codec: transceiver.codecs[0]!,
      receiver,
      tracks: ridTracks.length > 0 ? ridTracks : [receiver.track],
      stats: this.stats,
      logger: this.logger,
      // The answer keeps the offer's id for each extension it accepts (peer-connection.ts offers it for audio).
      audioLevelExtensionId: transceiver.headerExtensions.find(
        (extension) => extension.uri === RTP_EXTENSION_URI.audioLevelIndication,
      )?.id,
    });
    source.once('flowing', () => {
      if (source.kind === 'video') this.#bandwidthFeedback.start();
      this.#checkReady();
    });
    if (this.#mutedKinds.has(source.kind)) source.setMuted(true);
    return source;
  }

  #checkReady(): void {
    if (this.#readyAnnounced || this.closed) return;
    const tracks = this.tracks;
    if (tracks.length > 0 && tracks.every((track) => track.flowing)) {
      this.#announceReady();
    } else if (tracks.some((track) => track.flowing)) {
      this.#readyTimer ??= setTimeout(() => this.#announceReady(), READY_GRACE_MS);
    }
  }

  #announceReady(): void {
    clearTimeout(this.#readyTimer);
    this.#readyTimer = undefined;
    if (this.#readyAnnounced || this.closed) return;
    this.#readyAnnounced = true;
    this.emit('ready', this.streams);
  }

  protected override onClosed(reason: string, byRemote: boolean): void {
    clearTimeout(this.#readyTimer);
    this.#bandwidthFeedback.stop();
    for (const track of this.#tracks.values()) track.close();
    this.#tracks.clear();
    this.emit('closed', reason, byRemote);
  }
}

/** MIME types as browsers report them in stats: `audio/opus`, `video/VP8`, `video/H264`. */
function canonicalMimeType(mimeType: string): string {
  const [type = '', name = ''] = mimeType.split('/');
  return `${type.toLowerCase()}/${name.toLowerCase() === 'opus' ? 'opus' : name.toUpperCase()}`;
}

function isReceiving(transceiver: RTCRtpTransceiver): boolean {
  if (transceiver.stopped || transceiver.codecs.length === 0) return false;
  const direction = transceiver.currentDirection;
  return (
    (direction === 'recvonly' || direction === 'sendrecv') &&
    (transceiver.kind === 'audio' || transceiver.kind === 'video')
  );
}
