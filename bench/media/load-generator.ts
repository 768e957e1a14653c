/**
 * A load-generator process of the media benchmark: werift peers in a process of their own, so that
 * their CPU is never counted as the SFU's (and the bench sees when the generator itself saturates).
 * Driven over IPC by bench/media-node.ts (see {@link LoadCommand}).
 *
 * Full subscribers are werift peers that decrypt everything and check sequence continuity.
 * Light subscribers complete ICE and DTLS like any other, then count RTP datagrams without
 * decrypting them (werift's SRTP listeners are replaced by a counter): cheap enough for large N.
 */
import type { RTCPeerConnection } from 'werift';
import { type PeerIceOptions, TestPublisher, TestSubscriber, waitFor } from '../../test/support/werift-peers.ts';
import { serveBenchCommands } from './child.ts';

/** argv[2]: a local address other than 127.0.0.1 for ICE (when the SFU is Janus). */
const iceAddress = process.argv[2];
const ice: PeerIceOptions | undefined = iceAddress
  ? { iceServers: [], iceAdditionalHostAddresses: [iceAddress], iceInterfaceAddresses: { udp4: iceAddress } }
  : undefined;

export type LoadCommand =
  | { op: 'publish' }
  | { op: 'publisher-answer'; sdp: string }
  | { op: 'pause'; paused: boolean }
  | { op: 'subscribe'; offer: string; light: boolean }
  | { op: 'stats' }
  | { op: 'close' };

export interface SubscriberStats {
  light: boolean;
  packets: number;
  /** Sequence numbers never received, over every track (full subscribers only). */
  missing: number;
  /** Epoch ms of the first RTP packet. */
  firstPacketAt: number | undefined;
  /** The peer connection's state, for diagnostics. */
  state: string;
}

export interface LoadStats {
  cpu: NodeJS.CpuUsage;
  publisherSent: number;
  subscribers: SubscriberStats[];
}

/** A subscriber that counts SRTP datagrams once DTLS is up, instead of decrypting them. */
class LightSubscriber {
  readonly inner = new TestSubscriber({ ice });
  packets = 0;
  firstPacketAt: number | undefined;

  constructor() {
    this.inner.pc.connectionStateChange.subscribe((state) => {
      if (state === 'connected') this.#countInsteadOfDecrypting(this.inner.pc);
    });
  }

  #countInsteadOfDecrypting(pc: RTCPeerConnection): void {
    for (const transport of pc.dtlsTransports) {
      const onData = transport.iceTransport.connection.onData;
      onData.allUnsubscribe();
      onData.subscribe((data: Buffer) => {
        const payloadType = data[1]! & 0x7f;
        // RTP: version 2, payload type outside the RTCP range (RFC 5761).
        if (data[0]! >> 6 !== 2 || (payloadType >= 64 && payloadType <= 95)) return;
        this.packets++;
        this.firstPacketAt ??= performance.timeOrigin + performance.now();
      });
    }
  }
}

let publisher: TestPublisher | undefined;
const full: TestSubscriber[] = [];
const fullFirstPacketAt: (number | undefined)[] = [];
const light: LightSubscriber[] = [];

async function execute(command: LoadCommand): Promise<unknown> {
  switch (command.op) {
    case 'publish':
      publisher = await TestPublisher.create({ ice });
      return publisher.createOffer();
    case 'publisher-answer':
      await publisher!.setAnswer(command.sdp);
      // Janus lists a feed only once its publisher's connection is up: subscribing earlier fails
      // with "No such feed" (428), so the first step waits for it whatever the SFU.
      await waitFor(() => publisher!.pc.connectionState === 'connected', {
        timeoutMs: 30_000,
        message: "the publisher's connection",
      });
      return null;
    case 'pause':
      publisher!.paused = command.paused;
      return null;
    case 'subscribe': {
      if (command.light) {
        const subscriber = new LightSubscriber();
        light.push(subscriber);
        return subscriber.inner.answer(command.offer);
      }
      const subscriber = new TestSubscriber({ ice });
      const index = full.push(subscriber) - 1;
      fullFirstPacketAt.push(undefined);
      void waitFor(() => subscriber.totalPackets() > 0, { timeoutMs: 60_000, intervalMs: 5 }).then(
        () => {
          fullFirstPacketAt[index] = performance.timeOrigin + performance.now();
        },
        () => undefined,
      );
      return subscriber.answer(command.offer);
    }
    case 'stats':
      return {
        cpu: process.cpuUsage(),
        publisherSent: publisher ? publisher.sentPackets.audio + publisher.sentPackets.video : 0,
        subscribers: [
          ...full.map((subscriber, index) => ({
            light: false,
            packets: subscriber.totalPackets(),
            missing: [...subscriber.tracks.values()].reduce((sum, track) => sum + track.sequence.missing(), 0),
            firstPacketAt: fullFirstPacketAt[index],
            state: subscriber.pc.connectionState,
          })),
          ...light.map((subscriber) => ({
            light: true,
            packets: subscriber.packets,
            missing: 0,
            firstPacketAt: subscriber.firstPacketAt,
            state: subscriber.inner.pc.connectionState,
          })),
        ],
      } satisfies LoadStats;
    case 'close':
      await Promise.all([publisher?.close(), ...full.map((s) => s.close()), ...light.map((s) => s.inner.close())]);
      setImmediate(() => process.exit(0));
      return null;
  }
}

serveBenchCommands(execute);
