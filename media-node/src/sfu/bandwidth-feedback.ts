import { ReceiverEstimatedMaxBitrate, type RTCRtpReceiver, RtcpPayloadSpecificFeedback } from 'werift';
import type { Logger } from '../../../shared/src/log.ts';
import { loggableError } from '../errors.ts';

/**
 * The bitrate a publisher may send in total (all layers, all tracks): what the node announces in
 * its REMB. Chromium's own simulcast of a 720p camera asks ~2.5 Mbps at most; screen shares more.
 */
export const PUBLISHER_MAX_BITRATE_BPS = 6_000_000;

/**
 * Chromium adopts a REMB value outright only in the first 2 s after its first loss report (its
 * start phase); later it climbs ~8 % per second. The first REMBs go out often, so one lands there.
 */
const START_INTERVAL_MS = 250;
const START_PHASE_MS = 3_000;
const STEADY_INTERVAL_MS = 1_000;

/** REMB's 18-bit mantissa and 6-bit exponent (draft-alvestrand-rmcat-remb §2.2). */
export function rembFields(bitrate: number): { brExp: number; brMantissa: number } {
  let brExp = 0;
  while (bitrate / 2 ** brExp > 0x3ffff) brExp++;
  return { brExp, brMantissa: Math.floor(bitrate / 2 ** brExp) };
}

/**
 * Bandwidth feedback to a publisher (REMB, RTCP PSFB 15), as Janus gives it: a fixed ceiling. The
 * browser's congestion control starts from it and backs off on the loss our receiver reports show;
 * with no feedback at all Chromium stays near its 300 kbps start and never enables its top
 * simulcast layers. Runs while the publisher sends video.
 */
export class PublisherBandwidthFeedback {
  readonly #receivers: () => RTCRtpReceiver[];
  readonly #mediaSsrcs: () => number[];
  readonly #logger: Logger;
  readonly #fields = rembFields(PUBLISHER_MAX_BITRATE_BPS);
  #timer: NodeJS.Timeout | undefined;
  #startedAt = 0;
  #stopped = false;

  constructor(options: { receivers: () => RTCRtpReceiver[]; mediaSsrcs: () => number[]; logger: Logger }) {
    this.#receivers = options.receivers;
    this.#mediaSsrcs = options.mediaSsrcs;
    this.#logger = options.logger;
  }

  /** Video flows: feedback starts at once (idempotent). */
  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#startedAt = performance.now();
    this.#send();
    this.#timer = setInterval(this.#tick, START_INTERVAL_MS);
    this.#timer.unref();
  }

  readonly #tick = (): void => {
    this.#send();
    if (performance.now() - this.#startedAt >= START_PHASE_MS) {
      clearInterval(this.#timer);
      this.#timer = setInterval(this.#send, STEADY_INTERVAL_MS);
      this.#timer.unref();
    }
  };

  readonly #send = (): void => {
    const receiver = this.#receivers()[0];
    const transport = receiver?.dtlsTransport;
    const ssrcs = this.#mediaSsrcs();
    if (!receiver || !transport || transport.state !== 'connected' || ssrcs.length === 0) return;
    const remb = new ReceiverEstimatedMaxBitrate({
      senderSsrc: receiver.rtcpSsrc,
      mediaSsrc: 0,
      ...this.#fields,
      ssrcNum: ssrcs.length,
      ssrcFeedbacks: ssrcs,
    });
    transport.sendRtcp([new RtcpPayloadSpecificFeedback({ feedback: remb })]).catch((error: unknown) => {
      this.#logger.debug('sending REMB failed', { error: loggableError(error) });
    });
  };

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
