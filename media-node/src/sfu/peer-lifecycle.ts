import type { RTCPeerConnection } from 'werift';
import type { Logger } from '../../../shared/src/log.ts';
import { loggableError } from '../errors.ts';

export interface PeerLifecycleHooks {
  /**
   * A connection that has not connected this long after its negotiation started (a publisher's
   * first answer, a subscriber's first offer) is given up and reported.
   */
  connectTimeoutMs: number;
  onConnected?: () => void;
  /** Synchronously on close: tracks end, the room reports it. */
  onClosed: (reason: string, byRemote: boolean) => void;
  /** Once werift has closed the sockets: the ports may be reused. */
  onReleased: () => void;
}

/**
 * The part of a peer connection's life shared by publishers and subscribers: noticing that it
 * connected, failed or was closed by the browser, giving up on one that never connects, and closing
 * it exactly once.
 */
export class PeerLifecycle {
  readonly #pc: RTCPeerConnection;
  readonly #logger: Logger;
  readonly #hooks: PeerLifecycleHooks;
  #connectTimer: NodeJS.Timeout | undefined;
  #connected = false;
  #closed = false;

  constructor(pc: RTCPeerConnection, logger: Logger, hooks: PeerLifecycleHooks) {
    this.#pc = pc;
    this.#logger = logger;
    this.#hooks = hooks;
    pc.connectionStateChange.subscribe((state) => {
      if (state === 'connected' && !this.#connected) {
        this.#connected = true;
        clearTimeout(this.#connectTimer);
        this.#logger.debug('peer connection connected');
        this.#hooks.onConnected?.();
      } else if (state === 'failed') {
        this.close('peer connection failed', true);
      } else if (state === 'closed') {
        this.close('peer connection closed', true);
      }
    });
  }

  get connected(): boolean {
    return this.#connected;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts the connect timeout, unless it runs already: later negotiations do not extend it. */
  expectConnection(): void {
    if (this.#connected || this.#closed || this.#connectTimer) return;
    this.#connectTimer = setTimeout(
      () => this.close('peer connection did not connect in time', true),
      this.#hooks.connectTimeoutMs,
    );
    this.#connectTimer.unref();
  }

  /** The negotiation completed without any media to connect: nothing to time out until the next one. */
  expectNoConnection(): void {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
  }

  close(reason: string, byRemote: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#connectTimer);
    this.#logger.debug('peer connection closing', { reason });
    this.#hooks.onClosed(reason, byRemote);
    this.#pc
      .close()
      .catch((error: unknown) => {
        this.#logger.debug('closing a peer connection failed', { error: loggableError(error) });
      })
      .finally(this.#hooks.onReleased);
  }
}
