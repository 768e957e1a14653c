import { compactNtp, type RTCDtlsTransport, type RtcpPacket, timestampSeconds } from 'werift';

/** RTCP SDES item type CNAME (RFC 3550 §6.5.1). */
const SDES_CNAME = 1;

/** How often every forwarding sender reports (RFC 3550 leaves it to the application; werift: 0.5–1.5 s). */
export const SENDER_REPORT_INTERVAL_MS = 1_000;

/** Seconds from the NTP era's start (1900-01-01) to the Unix epoch (RFC 868). */
const NTP_UNIX_EPOCH_OFFSET_S = 2_208_988_800;

/**
 * The 64-bit NTP timestamp (RFC 3550 §4: seconds since 1900 and a 32-bit fraction) of a Unix time in
 * milliseconds. werift's ntpTime() takes the decimal digits of the seconds for the fraction (0.5 s
 * becomes 5 / 2³² s), so its sender reports tell a receiver the time only to the second, too coarse
 * for a browser to line audio up with video.
 */
export function ntpTimeOf(unixMs: number): bigint {
  const seconds = Math.floor(unixMs / 1000);
  const fraction = Math.floor(((unixMs - seconds * 1000) / 1000) * 0x1_0000_0000);
  return (BigInt((seconds + NTP_UNIX_EPOCH_OFFSET_S) >>> 0) << 32n) | BigInt(fraction);
}

/** RTCP packet types (RFC 3550 §12.1). */
const RTCP_SR = 200;
const RTCP_SDES = 202;
/** An SR without report blocks: header, SSRC and the 20-byte sender info (RFC 3550 §6.4.1). */
const SENDER_REPORT_BYTES = 28;

/**
 * The compound packet a forwarding sender reports with: an SR without report blocks (the node's
 * legs only send), then, with a CNAME, an SDES chunk carrying it (RFC 3550 §6.4.1, §6.5). Written
 * here in one buffer: werift's serializers concatenate a buffer per field and ran at 25 µs per
 * report, 4 % of the node's CPU with 60 subscribers. Counters wrap at 32 bits, as the fields do.
 */
export function senderReportBytes(report: {
  ssrc: number;
  ntpTimestamp: bigint;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
  cname?: string;
}): Buffer {
  const cname = report.cname ? Buffer.from(report.cname) : undefined;
  // The chunk: SSRC, the CNAME item (type, length, text), then at least one null octet ending the item
  // list, to a 32-bit boundary (§6.5). An item's text is at most 255 octets.
  const text = cname?.subarray(0, 255);
  const chunkBytes = text ? (4 + 2 + text.length + 4) & ~3 : 0;
  const packet = Buffer.alloc(SENDER_REPORT_BYTES + (text ? 4 + chunkBytes : 0));
  packet[0] = 0x80;
  packet[1] = RTCP_SR;
  packet.writeUInt16BE(SENDER_REPORT_BYTES / 4 - 1, 2);
  packet.writeUInt32BE(report.ssrc >>> 0, 4);
  packet.writeBigUInt64BE(report.ntpTimestamp, 8);
  packet.writeUInt32BE(report.rtpTimestamp >>> 0, 16);
  packet.writeUInt32BE(report.packetCount >>> 0, 20);
  packet.writeUInt32BE(report.octetCount >>> 0, 24);
  if (text) {
    const sdes = SENDER_REPORT_BYTES;
    packet[sdes] = 0x81; // one chunk
    packet[sdes + 1] = RTCP_SDES;
    packet.writeUInt16BE(chunkBytes / 4, sdes + 2);
    packet.writeUInt32BE(report.ssrc >>> 0, sdes + 4);
    packet[sdes + 8] = SDES_CNAME;
    packet[sdes + 9] = text.length;
    text.copy(packet, sdes + 10);
  }
  return packet;
}

/** Bytes already serialized, where werift's sendRtcp expects packets (it calls serialize() on each). */
class SerializedRtcp {
  readonly #bytes: Buffer;
  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }
  serialize(): Buffer {
    return this.#bytes;
  }
}

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
  /** werift's "my report loop runs" flag: its loop starts at the first packet werift itself sends. */
  rtcpRunning: boolean;
}

/** A fast-path leg (rtp-egress.ts): werift's sender, its last-packet fields brought up to date. */
export interface ReportingLeg {
  syncSender(): object;
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
  /** Each leg with its sender's packet count at its last report. */
  readonly #senders = new Map<ReportingLeg, number>();
  #timer: NodeJS.Timeout | undefined;

  /**
   * The clock becomes the sender's only reporter. werift starts a report loop of its own at the first
   * packet it sends itself (the packets the fast path leaves to it: padding, CSRCs); two reporters of
   * one SSRC each have their own RTP-to-NTP mapping and overwrite each other's LSR, so a receiver's
   * lip sync and round-trip time follow whichever spoke last. Marked as running, werift's never starts.
   */
  add(leg: ReportingLeg): void {
    (leg.syncSender() as SenderCounters).rtcpRunning = true;
    this.#senders.set(leg, 0);
    this.#timer ??= setInterval(() => this.tick(), SENDER_REPORT_INTERVAL_MS);
  }

  delete(leg: ReportingLeg): void {
    this.#senders.delete(leg);
    if (this.#senders.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  get size(): number {
    return this.#senders.size;
  }

  /**
   * Brings every leg's counts up to date (werift's, and the forwarded-packet and viewer byte counts its
   * steady packets owe): the worker's stats reader calls it first, so that its figures do not lag a tick.
   */
  syncLegs(): void {
    for (const leg of this.#senders.keys()) leg.syncSender();
  }

  /** Sends one compound report per DTLS transport. Public for tests. */
  tick(): void {
    const byTransport = new Map<RTCDtlsTransport, RtcpPacket[]>();
    const now = timestampSeconds();
    for (const [leg, reportedCount] of this.#senders) {
      const sender = leg.syncSender() as SenderCounters;
      const transport = sender.dtlsTransport;
      if (transport?.state !== 'connected' || sender.packetCount === reportedCount) continue;
      this.#senders.set(leg, sender.packetCount);
      let packets = byTransport.get(transport);
      if (!packets) {
        packets = [];
        byTransport.set(transport, packets);
      }
      packets.push(new SerializedRtcp(senderReportBytes(sender)) as unknown as RtcpPacket);
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
