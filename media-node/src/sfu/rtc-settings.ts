import { networkInterfaces } from 'node:os';
import type { DtlsKeys } from 'werift';

/*
 * No werift import here but types: the main thread reads these settings, and werift costs ~35 MB of
 * memory in every thread that loads it. Peer connections are built in ./peer-connection.ts (workers only).
 */

/** What a worker needs to build peer connections; plain data, so it crosses into worker threads. */
export interface RtcSettings {
  /** The local IPv4 addresses ICE gathers on: MEDIA_RTC_LISTEN_IP, or every non-loopback interface. */
  hostAddresses: string[];
  /** Sockets bind to this address only (MEDIA_RTC_LISTEN_IP); absent: the wildcard address. */
  listenIp?: string;
  announcedIp?: string;
  stunUrl?: string;
  turn?: { url: string; secret?: string };
  /** Dynacast (MEDIA_DYNACAST): each room tells its simulcast publishers which layers viewers need; absent: off. */
  dynacast?: boolean;
  /**
   * The node's one DTLS certificate, generated at start (workers/pool.ts); absent, werift generates
   * one in each thread.
   */
  dtlsCertificate?: DtlsCertificate;
}

/** A DTLS certificate and its private key (PEM), as werift's `dtls.keys` takes them. */
export type DtlsCertificate = DtlsKeys;

/** The local IPv4 addresses werift would gather on by itself, fixed once so that port blocks fit them. */
export function defaultHostAddresses(listenIp: string | undefined): string[] {
  if (listenIp) return [listenIp];
  return Object.values(networkInterfaces())
    .flat()
    .filter((address) => address !== undefined && address.family === 'IPv4' && !address.internal)
    .map((address) => address!.address);
}

/**
 * UDP sockets one peer connection opens: one per host address (BUNDLE puts every m-line on it), plus
 * the TURN client's when TURN is configured. The port allocator hands out blocks of this size.
 */
export function socketsPerPeer(settings: RtcSettings): number {
  return settings.hostAddresses.length + (settings.turn?.secret ? 1 : 0);
}
