import {
  compactNtp,
  type RTCDtlsTransport,
  type RTCRtpSender,
  type RtcpPacket,
  RtcpSenderInfo,
  RtcpSourceDescriptionPacket,
  RtcpSrPacket,
  SourceDescriptionChunk,
  SourceDescriptionItem,
  timestampSeconds,
} from 'werift';

/** RTCP SDES item type CNAME (RFC 3550 §6.5.1). */
const SDES_CNAME = 1;

/** How often every forwarding sender reports (RFC 3550 leaves it to the application; werift: 0.5–1.5 s). */
export const SENDER_REPORT_INTERVAL_MS = 1_000;

/** The sender fields werift's own report loop reads (werift 0.25). */
interface SenderCounters {
  ssrc: number;
  cname?: string;
  ntpTimestamp: bigint;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
  lastSRtimestamp?: number;
  lastSentSRTimestamp?: number;
  dtlsTransport?: RTCDtlsTransport;
}

/**
 * RTCP sender reports for every fast-path sender of a worker, on one timer. werift runs one report
 * loop per sender (a timer wake-up each 0.5–1.5 s, each costing ~150 µs of CPU here); this sends all
 * of them in one tick, the reports of one subscriber connection in one compound packet, and only for
 * senders that sent since their last report (RFC 3550 §6.4: an SR is an active sender's report;
 * nothing to report costs nothing while a publisher is silent). The SR fields are werift's
 * (lastSRtimestamp feeds its round-trip time from receiver reports).
 */
export class SenderReportClock {
  /** Each sender with its packet count at its last report. */
  readonly #senders = new Map<SenderCounters, number>();
  #timer: NodeJS.Timeout | undefined;

  add(sender: RTCRtpSender): void {
    this.#senders.set(sender as unknown as SenderCounters, 0);
    this.#timer ??= setInterval(() => this.tick(), SENDER_REPORT_INTERVAL_MS);
  }

  delete(sender: RTCRtpSender): void {
    this.#senders.delete(sender as unknown as SenderCounters);
    if (this.#senders.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  get size(): number {
    return this.#senders.size;
  }

  /** Sends one compound report per DTLS transport. Public for tests. */
  tick(): void {
    const byTransport = new Map<RTCDtlsTransport, RtcpPacket[]>();
    const now = timestampSeconds();
    for (const [sender, reportedCount] of this.#senders) {
      const transport = sender.dtlsTransport;
      if (transport?.state !== 'connected' || sender.packetCount === reportedCount) continue;
      this.#senders.set(sender, sender.packetCount);
      let packets = byTransport.get(transport);
      if (!packets) {
        packets = [];
        byTransport.set(transport, packets);
      }
      packets.push(
        new RtcpSrPacket({
          ssrc: sender.ssrc,
          senderInfo: new RtcpSenderInfo({
            ntpTimestamp: sender.ntpTimestamp,
            rtpTimestamp: sender.rtpTimestamp,
            packetCount: sender.packetCount,
            octetCount: sender.octetCount,
          }),
        }),
      );
      if (sender.cname) {
        packets.push(
          new RtcpSourceDescriptionPacket({
            chunks: [
              new SourceDescriptionChunk({
                source: sender.ssrc,
                items: [new SourceDescriptionItem({ type: SDES_CNAME, text: sender.cname })],
              }),
            ],
          }),
        );
      }
      sender.lastSRtimestamp = compactNtp(sender.ntpTimestamp);
      sender.lastSentSRTimestamp = now;
    }
    for (const [transport, packets] of byTransport) {
      transport.sendRtcp(packets).catch(() => {
        // The connection is closing: its reports no longer matter.
      });
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#senders.clear();
  }
}
