import { CodedError } from '../../../shared/src/errors.ts';
import type { Grants } from '../../../shared/src/token.ts';
import type { TokenBucket } from './rate-limit.ts';

/**
 * Per-socket state, kept with the socket by `serializeAttachment` so it survives hibernation
 * (well under the 16 KiB attachment limit).
 */
export interface ConnectionAttachment {
  participantId: string;
  grants: Grants;
  /** Set by `join_room`; frames other than join_room are refused before it. */
  joined: boolean;
  /** Set when a newer socket of the same participant took over: this one is closing with 4000. */
  replaced: boolean;
  connectedAt: number;
  lastMessageAt: number;
  bucket: TokenBucket;
  /** `send_data`'s own bucket (data-messages.ts); absent until the first data message. */
  dataBucket?: TokenBucket;
  /** Consecutive frames refused by the rate limit. */
  refusals: number;
}

export interface Connection {
  ws: WebSocket;
  attachment: ConnectionAttachment;
}

/** Sockets are tagged with their participant, so that `getWebSockets(tag)` finds them without a scan. */
export const participantTag = (participantId: string) => `participant:${participantId}`;

export function readAttachment(ws: WebSocket): ConnectionAttachment | null {
  return ws.deserializeAttachment() as ConnectionAttachment | null;
}

/** Reads the current attachment, applies `change` and writes it back in one synchronous step. */
export function updateAttachment(ws: WebSocket, change: (attachment: ConnectionAttachment) => void): void {
  const attachment = readAttachment(ws);
  if (!attachment) return;
  change(attachment);
  ws.serializeAttachment(attachment);
}

export const isOpen = (ws: WebSocket) => ws.readyState === WebSocket.OPEN;

/** `getWebSockets` may return sockets that are closing: sending to those throws, so it is skipped. */
export function sendText(ws: WebSocket, text: string): boolean {
  if (!isOpen(ws)) return false;
  try {
    ws.send(text);
    return true;
  } catch {
    return false;
  }
}

/** Closes a socket that may already be closing or closed; a second close would throw. */
export function closeSocket(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // Already closed by the peer or the runtime: nothing left to do.
  }
}

/** A refused request: becomes an `error` frame with this code, and the socket stays open. */
export class RequestRefusedError extends CodedError {}
