import { EventEmitter } from 'node:events';
import type { RTCPeerConnection } from 'werift';
import type { IceCandidate } from '../../../shared/src/ice.ts';
import type { Logger } from '../../../shared/src/log.ts';
import type { ForwardingStats } from './forwarding-stats.ts';
import { PeerLifecycle } from './peer-lifecycle.ts';
import { addRemoteCandidate } from './remote-candidates.ts';
import { SerialQueue } from './serial-queue.ts';

export interface MediaPeerOptions {
  participantId: string;
  peerConnection: RTCPeerConnection;
  announcedIp: string | undefined;
  stats: ForwardingStats;
  logger: Logger;
  connectTimeoutMs: number;
  /** Releases the connection's ports once its sockets are closed. */
  onReleased: () => void;
}

/**
 * What a {@link Publisher} and a {@link Subscriber} share: one participant's peer connection, its
 * lifecycle (connect timeout, closing once), its negotiations run one at a time, trickled candidates.
 */
// biome-ignore lint/suspicious/noExplicitAny: the constraint @types/node puts on EventEmitter's event map
export abstract class MediaPeer<Events extends Record<keyof Events, any[]>> extends EventEmitter<Events> {
  readonly participantId: string;
  protected readonly pc: RTCPeerConnection;
  protected readonly lifecycle: PeerLifecycle;
  protected readonly stats: ForwardingStats;
  protected readonly logger: Logger;
  protected readonly announcedIp: string | undefined;
  protected readonly negotiations = new SerialQueue();

  constructor(options: MediaPeerOptions) {
    super();
    this.participantId = options.participantId;
    this.pc = options.peerConnection;
    this.stats = options.stats;
    this.logger = options.logger;
    this.announcedIp = options.announcedIp;
    this.lifecycle = new PeerLifecycle(this.pc, this.logger, {
      connectTimeoutMs: options.connectTimeoutMs,
      onConnected: () => this.onConnected(),
      onClosed: (reason, byRemote) => this.onClosed(reason, byRemote),
      onReleased: options.onReleased,
    });
  }

  get closed(): boolean {
    return this.lifecycle.closed;
  }

  addIceCandidate(candidate: IceCandidate | null): Promise<void> {
    return addRemoteCandidate(this.pc, candidate);
  }

  /** Closes the connection; `byRemote` tells the room to report it to the edge. */
  close(reason: string, byRemote = false): void {
    this.lifecycle.close(reason, byRemote);
  }

  /** Once, when the connection first connects. */
  protected onConnected(): void {}

  /** Synchronously on close: the peer ends its tracks and emits `closed`. */
  protected abstract onClosed(reason: string, byRemote: boolean): void;
}
