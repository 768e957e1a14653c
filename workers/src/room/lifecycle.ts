import type { ErrorCode } from '../../../shared/src/errors.ts';
import type { ClientFrame, ClientFrameType } from '../../../shared/src/signaling.ts';
import { CLOSE_CODES } from '../../../shared/src/signaling-socket.ts';
import { errorResponse } from '../http/errors.ts';
import {
  type ConnectionAttachment,
  closeSocket,
  isOpen,
  participantTag,
  readAttachment,
  sendText,
  updateAttachment,
} from './connection.ts';
import { decodeClientFrame, encodeServerFrame } from './frames.ts';
import { frameHandlers, type SignalingRequest } from './handlers.ts';
import { decodeIdentity, IDENTITY_HEADER } from './identity.ts';
import { fullBucket, SIGNALING_RATE_LIMIT, takeToken } from './rate-limit.ts';
import { errorCodeOf, errorName, JOIN_TIMEOUT_MS, PING_TIMEOUT_MS, type Room } from './room.ts';

/**
 * The connection lifecycle of a room in one place: connect (upgrade), receive (one frame), disconnect
 * (close or error), and the alarm that reaps dead sockets, ends grace periods and expires the room.
 */

/** Sockets a room accepts beyond its participant cap: connections that have not joined yet (join_room checks the cap). */
const CONNECTION_HEADROOM = 16;

export async function connect(room: Room, request: Request): Promise<Response> {
  const identity = decodeIdentity(request.headers.get(IDENTITY_HEADER));
  if (!identity) return errorResponse(400, 'bad_request', 'missing connection identity');
  if (request.headers.get('Upgrade')?.toLowerCase() !== 'websocket') {
    return errorResponse(426, 'bad_request', 'expected a WebSocket upgrade');
  }
  const meta = room.state.meta() ?? room.state.updateMeta({ roomId: identity.roomId });
  if (meta.roomId !== identity.roomId) return errorResponse(400, 'bad_request', 'identity is for another room');
  // A participant who left is gone: its earlier tokens are refused (a new join gets a new identity).
  const leftAt = room.state.leftAt(identity.participantId, Date.now());
  if (leftAt !== undefined && identity.issuedAt * 1000 <= leftAt) {
    return errorResponse(401, 'unauthorized', 'this participant has left the room; join it again');
  }
  const previous = room.ctx.getWebSockets(participantTag(identity.participantId));
  if (previous.length === 0 && room.ctx.getWebSockets().length >= room.config.maxParticipants + CONNECTION_HEADROOM) {
    return errorResponse(409, 'room_full', 'the room has too many connections');
  }

  const now = Date.now();
  const pair = new WebSocketPair();
  const [client, server] = [pair[0], pair[1]];
  const attachment: ConnectionAttachment = {
    participantId: identity.participantId,
    grants: identity.grants,
    joined: false,
    replaced: false,
    connectedAt: now,
    lastMessageAt: now,
    bucket: fullBucket(now),
    refusals: 0,
  };
  room.ctx.acceptWebSocket(server, [participantTag(identity.participantId)]);
  server.serializeAttachment(attachment);

  // One socket per participant: the newest wins. The participant keeps its identity, publishing
  // and subscriptions; until the new socket joins, it is in its grace period as after a drop.
  for (const old of previous) {
    updateAttachment(old, (replaced) => {
      replaced.replaced = true;
    });
    closeSocket(old, CLOSE_CODES.replaced, 'replaced');
  }
  if (room.state.participant(identity.participantId)) await room.startGrace(identity.participantId);
  await room.scheduleAlarm();
  return new Response(null, { status: 101, webSocket: client });
}

/** Handles one incoming message: rate limit, size and schema checks, then the frame's handler in order. */
export async function receive(room: Room, ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
  const attachment = readAttachment(ws);
  if (!attachment || attachment.replaced) return;
  const now = Date.now();
  const { allowed, bucket } = takeToken(attachment.bucket, now);
  attachment.bucket = bucket;
  attachment.lastMessageAt = now;
  attachment.refusals = allowed ? 0 : attachment.refusals + 1;
  ws.serializeAttachment(attachment);
  if (attachment.refusals >= SIGNALING_RATE_LIMIT.refusalsBeforeClose) {
    room.logger.warn('closing abusive connection', { participant_id: attachment.participantId });
    closeSocket(ws, CLOSE_CODES.policyViolation, 'rate limit exceeded');
    await disconnect(room, ws);
    return;
  }

  const decoded = decodeClientFrame(message);
  if (!decoded.ok && decoded.tooLarge) {
    closeSocket(ws, CLOSE_CODES.messageTooBig, 'message too large');
    await disconnect(room, ws);
    return;
  }
  const participantId = attachment.participantId;
  await room.exclusive(participantId, async () => {
    if (!allowed) {
      const requestId = decoded.ok ? decoded.frame.request_id : decoded.requestId;
      sendError(ws, 'rate_limited', 'too many frames: slow down', requestId);
      return;
    }
    if (!decoded.ok) {
      sendError(ws, decoded.code, decoded.message, decoded.requestId);
      return;
    }
    await dispatch(room, ws, decoded.frame);
  });
}

function sendError(ws: WebSocket, code: ErrorCode, message: string, requestId?: string): void {
  sendText(ws, encodeServerFrame('error', { code, message }, requestId));
}

async function dispatch(room: Room, ws: WebSocket, frame: ClientFrame): Promise<void> {
  // Re-read: a join earlier in this participant's queue may have changed it.
  const attachment = readAttachment(ws);
  if (!attachment || attachment.replaced) return;
  if (frame.type !== 'join_room' && !attachment.joined) {
    sendError(ws, 'not_joined', 'send join_room first', frame.request_id);
    return;
  }
  let replied = false;
  const request: SignalingRequest<ClientFrameType> = {
    frame,
    ws,
    attachment,
    reply(type, payload) {
      if (replied) throw new Error(`second reply to ${frame.type}`);
      replied = true;
      sendText(ws, encodeServerFrame(type, payload, frame.request_id));
    },
  };
  const handler = frameHandlers[frame.type] as (
    room: Room,
    request: SignalingRequest<ClientFrameType>,
  ) => Promise<void>;
  try {
    await handler(room, request);
    if (!replied && isOpen(ws)) throw new Error(`${frame.type} handler did not reply`);
  } catch (error) {
    const code = errorCodeOf(error);
    if (code === 'internal_error') {
      room.logger.error('frame handler failed', { type: frame.type, error: errorName(error) });
    } else if (code === 'media_unavailable') {
      // The client is told; operators need to see it too (a node down, a MEDIA_NODE_SECRET mismatch).
      room.logger.warn('media node call failed', { type: frame.type, error: (error as Error).message });
    }
    const message = code === 'internal_error' ? 'internal error' : (error as Error).message;
    if (!replied) sendError(ws, code, message, frame.request_id);
  }
}

/**
 * A socket closed or failed. If it was the participant's current socket, the participant enters its
 * grace period: it may reconnect and resume until the alarm removes it.
 */
export async function disconnect(room: Room, ws: WebSocket): Promise<void> {
  const attachment = readAttachment(ws);
  // Completes the closing handshake. Codes 1005/1006 may not be sent, so the reply is always 1000.
  closeSocket(ws, CLOSE_CODES.normal, 'closed');
  // Without meta the room was closed and wiped: nothing to keep, nothing to schedule.
  if (!attachment || attachment.replaced || !room.state.meta()) return;
  if (room.state.participant(attachment.participantId)) await room.startGrace(attachment.participantId);
  else await room.scheduleAlarm();
}

export async function runAlarm(room: Room): Promise<void> {
  const meta = room.state.meta();
  if (!meta) return;
  const now = Date.now();
  room.state.pruneLeft(now);

  for (const ws of room.ctx.getWebSockets()) {
    const attachment = readAttachment(ws);
    if (!attachment || attachment.replaced) continue;
    const pingedAt = room.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime();
    // Only sockets that ping can be judged dead by silence: a quiet client without keepalives is fine.
    const silent = pingedAt !== undefined && now - Math.max(pingedAt, attachment.lastMessageAt) > PING_TIMEOUT_MS;
    const neverJoined = !attachment.joined && now - attachment.connectedAt > JOIN_TIMEOUT_MS;
    if (silent || neverJoined) {
      closeSocket(
        ws,
        neverJoined ? CLOSE_CODES.policyViolation : CLOSE_CODES.goingAway,
        neverJoined ? 'join timeout' : 'ping timeout',
      );
      await disconnect(room, ws);
    }
  }

  for (const record of room.state.participants()) {
    if (record.graceUntil === null || record.graceUntil > now || room.joinedConnection(record.id)) continue;
    await room.exclusive(record.id, async () => {
      const current = room.state.participant(record.id);
      if (current?.graceUntil != null && current.graceUntil <= now) await room.depart(record.id, 'grace_expired', null);
    });
  }

  const participants = room.state.participants().length;
  const refreshAt = room.roomRefreshAt();
  if (participants > 0 && refreshAt !== null && refreshAt <= now) {
    // A room lives while it is used: extend it, unless the store already dropped it.
    if (await room.repository.touchRoom(meta.roomId)) {
      room.state.updateMeta({ roomId: meta.roomId, expiresAt: now + room.config.roomTtlSeconds * 1000 });
    } else {
      await closeRoom(room, 'room_expired');
      return;
    }
  }
  if (participants === 0 && room.ctx.getWebSockets().length === 0) {
    await closeRoom(room, 'room_empty');
    return;
  }
  await room.scheduleAlarm({ force: true });
}

/** Ends the room on this object: sockets closed, the media node told, all state (and the alarm) wiped. */
async function closeRoom(room: Room, reason: string): Promise<void> {
  const meta = room.meta();
  for (const ws of room.ctx.getWebSockets()) closeSocket(ws, CLOSE_CODES.normal, 'room closed');
  // State goes first, before anything awaits the network: a client that connects while the media
  // node is being told must find an empty room, not have its fresh join wiped afterwards.
  await room.ctx.storage.deleteAlarm();
  await room.ctx.storage.deleteAll();
  if (meta.mediaUsed) await room.bestEffort('closeRoom', () => room.media.closeRoom(meta.roomId));
  room.logger.info('room closed', { reason });
}
