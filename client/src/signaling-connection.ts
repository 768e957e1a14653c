import type { z } from 'zod';
import type { ErrorCode } from '../../shared/src/errors.ts';
import type {
  ClientFrameType,
  ClientPayloadSchemas,
  ServerFrame,
  ServerFrameType,
} from '../../shared/src/signaling.ts';
import { FINAL_CLOSE_CODES, SIGNALING_SUBPROTOCOL } from '../../shared/src/signaling-socket.ts';
import { TypedEmitter } from './typed-emitter.ts';

/** An `error` reply, or a request that could not complete (`connection_lost`, `timeout`). */
export class SignalingError extends Error {
  /** The server's error code (see the README's list), or `connection_lost` / `timeout` on this side. */
  readonly code: ErrorCode | 'connection_lost' | 'timeout';

  constructor(code: SignalingError['code'], message: string) {
    super(message);
    this.name = 'SignalingError';
    this.code = code;
  }
}

/** Where the signaling socket stands; `closed` is final (left, removed, replaced, room ended, or reconnecting gave up). */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Reconnection after an unexpected drop: exponential backoff from `initialDelayMs`, capped at `maxDelayMs`. */
export interface ReconnectPolicy {
  /** Total time to keep trying: the server keeps a dropped participant for its grace period (20 s by default). */
  giveUpAfterMs: number;
  /** The wait before the first attempt. */
  initialDelayMs: number;
  /** The longest wait between two attempts. */
  maxDelayMs: number;
}

/** Try for 20 s (the server's default grace period), 250 ms doubling to 4 s apart. */
export const DEFAULT_RECONNECT: ReconnectPolicy = { giveUpAfterMs: 20_000, initialDelayMs: 250, maxDelayMs: 4_000 };

/**
 * Keepalive: the server answers `ping` with `pong` without waking the room, and reaps sockets
 * that stay silent; proxies also drop idle connections after ~60 s.
 */
const KEEPALIVE_INTERVAL_MS = 25_000;

type Pending = {
  resolve: (frame: ServerFrame) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
};

/** The events a `SignalingConnection` emits. */
export interface ConnectionEvents extends Record<string, unknown> {
  /** The socket's state changed. */
  state: ConnectionState;
  /** Server events (frames without request_id) and replies nobody waits for. */
  frame: ServerFrame;
  /** A new socket is open after a drop: the owner re-sends join_room to resume. */
  reopened: undefined;
  /** The socket closed for good, with the server's close code (see `CLOSE_CODES`) and reason. */
  closed: { code: number; reason: string };
}

/** Options of a `SignalingConnection`. */
export interface SignalingConnectionOptions {
  /** The `ws_url` that `POST …/join` answered. */
  url: string;
  /** The participant token; it travels as the second WebSocket subprotocol, never in the URL. */
  token: string;
  /** Reconnection after an unexpected drop (default `DEFAULT_RECONNECT`). */
  reconnect?: ReconnectPolicy;
  /** The WebSocket class to use (default: the global one). */
  WebSocket?: typeof WebSocket;
}

/**
 * One signaling WebSocket with request/reply correlation by request_id, and reconnection with
 * exponential backoff after an unexpected drop.
 */
export class SignalingConnection extends TypedEmitter<ConnectionEvents> {
  #socket: WebSocket | undefined;
  #state: ConnectionState = 'connecting';
  #nextRequestId = 1;
  readonly #pending = new Map<string, Pending>();
  readonly #url: string;
  #token: string;
  readonly #policy: ReconnectPolicy;
  readonly #WebSocketImpl: typeof WebSocket;

  constructor(options: SignalingConnectionOptions) {
    super();
    this.#url = options.url;
    this.#token = options.token;
    this.#policy = options.reconnect ?? DEFAULT_RECONNECT;
    this.#WebSocketImpl = options.WebSocket ?? WebSocket;
  }

  /** The socket's state. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The token the next (re)connection presents: replaced as it is refreshed. */
  set token(token: string) {
    this.#token = token;
  }

  /** Opens the socket; rejects if the first attempt fails (the token was refused, the server is down). */
  open(): Promise<void> {
    return this.#connect();
  }

  /** Sends a request and resolves with its reply; an `error` reply rejects with SignalingError. */
  request<T extends ClientFrameType>(
    type: T,
    payload: z.input<(typeof ClientPayloadSchemas)[T]>,
    timeoutMs = 15_000,
  ): Promise<ServerFrame> {
    const requestId = String(this.#nextRequestId++);
    return new Promise((resolve, reject) => {
      if (this.#state !== 'open' || !this.#socket) {
        reject(new SignalingError('connection_lost', 'signaling is not connected'));
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(requestId);
        reject(new SignalingError('timeout', `no reply to ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(requestId, { resolve, reject, timer });
      this.#socket.send(JSON.stringify({ type, request_id: requestId, payload }));
    });
  }

  /** Sends a frame that needs no reply (trickle ICE). Dropped silently while disconnected. */
  notify<T extends ClientFrameType>(type: T, payload: z.input<(typeof ClientPayloadSchemas)[T]>): void {
    if (this.#state === 'open') this.#socket?.send(JSON.stringify({ type, payload }));
  }

  /** Closes the socket for good (1000), without reconnecting. */
  close(): void {
    this.#setState('closed');
    this.#socket?.close(1000, 'client closed');
    this.#failPending('connection closed');
  }

  #connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = new this.#WebSocketImpl(this.#url, [SIGNALING_SUBPROTOCOL, this.#token]);
      this.#socket = socket;
      let opened = false;
      let keepalive: ReturnType<typeof setInterval> | undefined;
      socket.onopen = () => {
        opened = true;
        keepalive = setInterval(() => socket.send('ping'), KEEPALIVE_INTERVAL_MS);
        this.#setState('open');
        resolve();
      };
      socket.onmessage = (event) => this.#onMessage(event.data);
      socket.onclose = (event) => {
        clearInterval(keepalive);
        if (this.#socket !== socket) return;
        this.#failPending(`connection closed (${event.code})`);
        if (!opened) {
          reject(new SignalingError('connection_lost', `could not connect (${event.code})`));
          return;
        }
        if (this.#state === 'closed' || FINAL_CLOSE_CODES.has(event.code)) {
          this.#setState('closed');
          this.emit('closed', { code: event.code, reason: event.reason });
          return;
        }
        void this.#reconnect();
      };
    });
  }

  async #reconnect(): Promise<void> {
    this.#setState('reconnecting');
    const deadline = Date.now() + this.#policy.giveUpAfterMs;
    let delay = this.#policy.initialDelayMs;
    while (Date.now() < deadline && this.#state === 'reconnecting') {
      await new Promise((resume) => setTimeout(resume, delay));
      if (this.#state !== 'reconnecting') return;
      try {
        await this.#connect();
        this.emit('reopened', undefined);
        return;
      } catch {
        delay = Math.min(delay * 2, this.#policy.maxDelayMs);
      }
    }
    if (this.#state === 'reconnecting') {
      this.#setState('closed');
      this.emit('closed', { code: 1006, reason: 'reconnection failed' });
    }
  }

  #onMessage(data: unknown): void {
    if (typeof data !== 'string') return;
    // The SDK ships without zod to stay small; the server validates what it sends, so the
    // client checks only that a frame is an object with a type.
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data) as ServerFrame;
    } catch {
      return;
    }
    if (typeof frame !== 'object' || frame === null || typeof frame.type !== 'string') return;
    const pending = frame.request_id === undefined ? undefined : this.#pending.get(frame.request_id);
    if (!pending || frame.request_id === undefined) {
      this.emit('frame', frame);
      return;
    }
    this.#pending.delete(frame.request_id);
    clearTimeout(pending.timer);
    if (frame.type === 'error') pending.reject(new SignalingError(frame.payload.code, frame.payload.message));
    else pending.resolve(frame);
  }

  #failPending(reason: string): void {
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new SignalingError('connection_lost', reason));
      this.#pending.delete(id);
    }
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit('state', state);
  }
}

/** Narrows a reply to the type the caller expects, or throws: the server broke the contract. */
export function expectReply<T extends ServerFrameType>(frame: ServerFrame, type: T): Extract<ServerFrame, { type: T }> {
  if (frame.type !== type) throw new SignalingError('internal_error', `expected ${type}, got ${frame.type}`);
  return frame as Extract<ServerFrame, { type: T }>;
}
