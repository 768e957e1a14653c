import { SELF } from 'cloudflare:test';
import type { z } from 'zod';
import {
  type ClientFrameType,
  type ClientPayloadSchemas,
  type ServerFrame,
  ServerFrameSchema,
  type ServerFrameType,
} from '../../../shared/src/signaling.ts';

export const BASE_URL = 'http://edge.test';
const WAIT_MS = 5_000;

type FrameOf<T extends ServerFrameType> = Extract<ServerFrame, { type: T }>;

export interface Closed {
  code: number;
  reason: string;
}

/** How the token travels: `?token=` or the `truegather.v1, <token>` subprotocol pair browsers use. */
export type TokenTransport = 'query' | 'subprotocol';

/** The upgrade request a client sends for `roomId` with `token`, as a plain fetch. */
export function upgrade(
  roomId: string,
  token: string | undefined,
  options: { via?: TokenTransport; headers?: Record<string, string> } = {},
): Promise<Response> {
  const url = new URL('/ws', BASE_URL);
  url.searchParams.set('room_id', roomId);
  const headers: Record<string, string> = { Upgrade: 'websocket', ...options.headers };
  if (token && (options.via ?? 'query') === 'query') url.searchParams.set('token', token);
  if (token && options.via === 'subprotocol') headers['Sec-WebSocket-Protocol'] = `truegather.v1, ${token}`;
  return SELF.fetch(url, { headers });
}

/**
 * A real signaling WebSocket through the Worker (SELF.fetch with Upgrade, then accept()). Every
 * received frame is validated against the contract and kept; tests take frames in order with
 * `next`, which waits (with a timeout) for one that has not been taken yet.
 */
export class SignalingSocket {
  readonly ws: WebSocket;
  /** Every frame received, in order; `raw` keeps non-JSON text such as `pong`. */
  readonly received: (ServerFrame | { raw: string })[] = [];
  readonly closed: Promise<Closed>;
  #taken = new Set<number>();
  #waiters = new Set<() => void>();
  #nextRequestId = 1;
  #closedWith: Closed | undefined;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = new Promise((resolve) => {
      ws.addEventListener('close', (event) => {
        this.#closedWith = { code: event.code, reason: event.reason };
        resolve(this.#closedWith);
        this.#wake();
      });
    });
    ws.addEventListener('message', (event) => {
      const text = typeof event.data === 'string' ? event.data : '(binary)';
      let frame: ServerFrame | { raw: string };
      try {
        frame = ServerFrameSchema.parse(JSON.parse(text));
      } catch {
        frame = { raw: text };
      }
      this.received.push(frame);
      this.#wake();
    });
  }

  static async open(roomId: string, token: string, via: TokenTransport = 'query'): Promise<SignalingSocket> {
    const response = await upgrade(roomId, token, { via });
    if (response.status !== 101 || !response.webSocket) {
      throw new Error(`upgrade refused: ${response.status} ${await response.text()}`);
    }
    response.webSocket.accept();
    return new SignalingSocket(response.webSocket);
  }

  get isClosed(): boolean {
    return this.#closedWith !== undefined;
  }

  sendRaw(data: string | ArrayBuffer): void {
    this.ws.send(data);
  }

  /** Sends a request with a fresh request_id and resolves with the reply that carries it. */
  async request<T extends ClientFrameType>(
    type: T,
    payload: z.input<(typeof ClientPayloadSchemas)[T]>,
  ): Promise<ServerFrame> {
    const requestId = `r${this.#nextRequestId++}`;
    this.ws.send(JSON.stringify({ type, request_id: requestId, payload }));
    return this.next((frame) => frame.request_id === requestId);
  }

  /** Like `request`, but insists on the reply type (an `error` reply fails the test with its code). */
  async expectReply<T extends ServerFrameType, C extends ClientFrameType>(
    type: C,
    payload: z.input<(typeof ClientPayloadSchemas)[C]>,
    replyType: T,
  ): Promise<FrameOf<T>> {
    const reply = await this.request(type, payload);
    if (reply.type !== replyType) throw new Error(`${type}: expected ${replyType}, got ${JSON.stringify(reply)}`);
    return reply as FrameOf<T>;
  }

  /** Takes the oldest untaken frame of `type` (and matching `where`), waiting for it if needed. */
  nextOf<T extends ServerFrameType>(type: T, where: (frame: FrameOf<T>) => boolean = () => true): Promise<FrameOf<T>> {
    return this.next((frame) => frame.type === type && where(frame as FrameOf<T>)) as Promise<FrameOf<T>>;
  }

  /** Takes the oldest untaken frame matching `predicate`, waiting for it if needed. */
  next(predicate: (frame: ServerFrame) => boolean, timeoutMs = WAIT_MS): Promise<ServerFrame> {
    return this.#waitFor(() => {
      const index = this.received.findIndex(
        (frame, i) => !this.#taken.has(i) && 'type' in frame && predicate(frame as ServerFrame),
      );
      if (index === -1) return undefined;
      this.#taken.add(index);
      return this.received[index] as ServerFrame;
    }, timeoutMs);
  }

  /** Waits for a raw (non-JSON) text message such as the `pong` keepalive answer. */
  nextRaw(text: string): Promise<string> {
    return this.#waitFor(() => {
      const index = this.received.findIndex((frame, i) => !this.#taken.has(i) && 'raw' in frame && frame.raw === text);
      if (index === -1) return undefined;
      this.#taken.add(index);
      return text;
    }, WAIT_MS);
  }

  /** Frames received so far that nobody took, of one type: for asserting that something did not arrive. */
  untaken(type?: ServerFrameType): ServerFrame[] {
    return this.received.filter(
      (frame, i): frame is ServerFrame =>
        !this.#taken.has(i) && 'type' in frame && (type === undefined || frame.type === type),
    );
  }

  close(code = 1000, reason = 'test done'): void {
    if (!this.isClosed) this.ws.close(code, reason);
  }

  #wake(): void {
    for (const waiter of this.#waiters) waiter();
  }

  #waitFor<R>(check: () => R | undefined, timeoutMs: number): Promise<R> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const result = check();
        if (result !== undefined) {
          finish();
          resolve(result);
        } else if (this.#closedWith) {
          finish();
          reject(new Error(`socket closed (${this.#closedWith.code} ${this.#closedWith.reason}) while waiting`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        const seen = this.received.map((frame) => ('type' in frame ? frame.type : frame.raw)).join(', ');
        reject(new Error(`no matching frame within ${timeoutMs} ms; received: ${seen}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.#waiters.delete(attempt);
      };
      this.#waiters.add(attempt);
      attempt();
    });
  }
}
