import type { PublishResponse } from '../../../shared/src/media-control.ts';
import type { ClientFrameOf, ClientFrameType, ServerFrameType, ServerPayload } from '../../../shared/src/signaling.ts';
import { CLOSE_CODES } from '../../../shared/src/signaling-socket.ts';
import { iceServersFor } from '../auth/turn-credentials.ts';
import { type ConnectionAttachment, isOpen, RequestRefusedError, updateAttachment } from './connection.ts';
import { sendData } from './data-messages.ts';
import { encodeServerFrame } from './frames.ts';
import { applyMute, reapplyMutes } from './mute.ts';
import type { RoomHandle } from './room-handle.ts';
import { isListed, type ParticipantRecord, participantOf, publisherOf } from './room-state.ts';

/** One client request on its way through a handler; `reply` may be called once. */
export interface SignalingRequest<T extends ClientFrameType> {
  frame: ClientFrameOf<T>;
  ws: WebSocket;
  attachment: ConnectionAttachment;
  reply<R extends ServerFrameType>(type: R, payload: ServerPayload<R>): void;
}

type FrameHandler<T extends ClientFrameType> = (room: RoomHandle, request: SignalingRequest<T>) => Promise<void>;

/** The sender's participant record; every frame but join_room needs one. */
function senderRecord(room: RoomHandle, attachment: ConnectionAttachment): ParticipantRecord {
  const record = room.state.participant(attachment.participantId);
  if (!record) throw new RequestRefusedError('not_joined', 'join the room first');
  return record;
}

async function joinRoom(room: RoomHandle, request: SignalingRequest<'join_room'>): Promise<void> {
  const { frame, ws, attachment } = request;
  const participantId = attachment.participantId;
  if (attachment.joined) throw new RequestRefusedError('already_joined', 'this connection has already joined');
  if (frame.payload.room_id !== room.roomId) {
    throw new RequestRefusedError('room_mismatch', 'room_id does not match the room of the token');
  }
  if (!room.admits(participantId)) {
    throw new RequestRefusedError('room_full', `the room has reached ${room.config.maxParticipants} participants`);
  }
  // The room record is the store's: a join confirms it still exists, and extends its life.
  if (!(await room.confirmRoom())) throw new RequestRefusedError('not_found', 'the room does not exist or has expired');
  const iceServers = await iceServersFor(room.config.ice, participantId);
  // Checked again after the awaits, and from here to the reply nothing awaits: the cap holds against
  // concurrent joins, and the snapshot in `joined` and the events that follow it cannot overlap or
  // miss one another. A socket that went away meanwhile leaves the room as it was (a resuming
  // participant stays in its grace period, which the close started).
  if (!isOpen(ws)) return;
  if (!room.admits(participantId)) {
    throw new RequestRefusedError('room_full', `the room has reached ${room.config.maxParticipants} participants`);
  }
  // A participant whose record survives (reconnect within the grace period, or a replaced socket)
  // resumes: same identity, same publishing and subscriptions, and nobody is told it left or came.
  // It keeps the room's grants, not its token's: an admin may have changed them since the token was issued.
  const existing = room.state.participant(participantId);
  const record: ParticipantRecord = existing
    ? { ...existing, display: frame.payload.display, graceUntil: null }
    : {
        id: participantId,
        display: frame.payload.display,
        grants: attachment.grants,
        joinOrder: room.state.takeJoinOrder(room.roomId),
        joinedAt: Date.now(),
        publisher: null,
        subscription: null,
        graceUntil: null,
      };
  room.state.putParticipant(record);
  updateAttachment(ws, (current) => {
    current.joined = true;
  });
  if (!existing) {
    if (!room.state.meta()?.started) {
      room.state.updateMeta({ roomId: room.roomId, started: true });
      room.webhook('room.started');
    }
    room.webhook('participant.joined', { participant: participantOf(record) });
  }
  if (!existing && isListed(record)) {
    room.broadcast(encodeServerFrame('participant_joined', { participant: participantOf(record) }), participantId);
  }
  const others = room.state.participants().filter((other) => other.id !== participantId);
  request.reply('joined', {
    participant_id: participantId,
    room_id: room.roomId,
    publishers: others.flatMap((other) =>
      other.publisher?.ready ? [publisherOf({ ...other, publisher: other.publisher })] : [],
    ),
    ice_servers: iceServers,
    participants: others.filter(isListed).map(participantOf),
  });
  room.speakers.catchUp(participantId);
  await room.scheduleAlarm();
}

async function publishOffer(room: RoomHandle, request: SignalingRequest<'publish_offer'>): Promise<void> {
  const record = senderRecord(room, request.attachment);
  if (!record.grants.publish) throw new RequestRefusedError('forbidden', 'the token does not allow publishing');
  const republish = record.publisher !== null;
  if (!republish) {
    if (room.state.publishers().length >= room.maxPublishers) {
      throw new RequestRefusedError('room_full', 'the room has its maximum of publishers');
    }
    // The slot is taken before the media node is asked, so that concurrent offers count it.
    room.state.updateParticipant(record.id, (fresh) => {
      fresh.publisher = { streams: [], ready: false };
    });
  }
  room.state.updateMeta({ roomId: room.roomId, mediaUsed: true });
  let answer: PublishResponse;
  try {
    answer = await room.media.publish(room.roomId, record.id, request.frame.payload.sdp);
  } catch (error) {
    if (!republish) {
      room.state.updateParticipant(record.id, (fresh) => {
        fresh.publisher = null;
      });
    }
    throw error;
  }
  room.state.updateParticipant(record.id, (fresh) => {
    fresh.publisher = { streams: answer.streams, ready: fresh.publisher?.ready ?? false };
  });
  await reapplyMutes(room, record.id);
  request.reply('publish_answer', { sdp: answer.sdp });
}

async function trickleIce(room: RoomHandle, request: SignalingRequest<'trickle_ice'>): Promise<void> {
  const record = senderRecord(room, request.attachment);
  const { target, candidate } = request.frame.payload;
  if (target === 'publisher' && !record.publisher)
    throw new RequestRefusedError('not_publishing', 'nothing is published');
  if (target === 'subscriber' && record.subscription === null) {
    throw new RequestRefusedError('bad_request', 'there is no subscription to add candidates to');
  }
  await room.media.addIceCandidate(room.roomId, record.id, target, candidate);
  request.reply('ack', {});
}

/** Asks the media node for an offer carrying exactly `feeds`, records what it carries and replies with it. */
async function renegotiate<T extends 'subscribe' | 'unsubscribe'>(
  room: RoomHandle,
  request: SignalingRequest<T>,
  feeds: string[],
): Promise<void> {
  const participantId = request.attachment.participantId;
  room.state.updateMeta({ roomId: room.roomId, mediaUsed: true });
  const offer = await room.media.subscribe(room.roomId, participantId, feeds);
  room.state.updateParticipant(participantId, (fresh) => {
    fresh.subscription = offer.feeds;
  });
  request.reply('subscribe_offer', { sdp: offer.sdp });
  // Relays to the viewer's node that nobody there needs any more (an unsubscribe) close.
  await room.media.settleRelays();
  // A subscription with feeds is media on the node: the alarm probes it.
  await room.scheduleAlarm();
}

async function subscribe(room: RoomHandle, request: SignalingRequest<'subscribe'>): Promise<void> {
  const record = senderRecord(room, request.attachment);
  if (!record.grants.subscribe) throw new RequestRefusedError('forbidden', 'the token does not allow subscribing');
  const requested = [...new Set(request.frame.payload.feeds)];
  const unknown = requested.filter((feed) => feed === record.id || !room.state.participant(feed)?.publisher);
  if (unknown.length > 0)
    throw new RequestRefusedError('unknown_feed', `not a publisher in this room: ${unknown.join(', ')}`);
  const current = record.subscription ?? [];
  // Subscribing to nothing new asks for a restart: the client's receiving connection broke (a network
  // switch, a media node that went away). The media node's side is replaced, and its fresh offer
  // (a new DTLS fingerprint) tells the client to answer from a new connection.
  if (record.subscription !== null && requested.every((feed) => current.includes(feed))) {
    await room.media.closeSubscriber(room.roomId, record.id);
  }
  await renegotiate(room, request, [...new Set([...current, ...requested])]);
}

async function unsubscribe(room: RoomHandle, request: SignalingRequest<'unsubscribe'>): Promise<void> {
  const record = senderRecord(room, request.attachment);
  const current = record.subscription ?? [];
  const removed = new Set(request.frame.payload.feeds);
  if (!current.some((feed) => removed.has(feed))) {
    throw new RequestRefusedError('unknown_feed', 'none of these feeds is subscribed');
  }
  await renegotiate(
    room,
    request,
    current.filter((feed) => !removed.has(feed)),
  );
}

async function subscribeAnswer(room: RoomHandle, request: SignalingRequest<'subscribe_answer'>): Promise<void> {
  const record = senderRecord(room, request.attachment);
  if (record.subscription === null)
    throw new RequestRefusedError('bad_request', 'there is no subscribe_offer to answer');
  await room.media.setSubscriberAnswer(room.roomId, record.id, request.frame.payload.sdp);
  request.reply('ack', {});
}

async function unpublish(room: RoomHandle, request: SignalingRequest<'unpublish'>): Promise<void> {
  const record = senderRecord(room, request.attachment);
  const stopped = await room.stopPublishing(record.id, { unpublishOnMediaNode: true });
  if (!stopped) throw new RequestRefusedError('not_publishing', 'nothing is published');
  request.reply('ack', {});
}

async function mute(room: RoomHandle, request: SignalingRequest<'mute'>): Promise<void> {
  const record = senderRecord(room, request.attachment);
  await applyMute(room, record.id, request.frame.payload.kind, request.frame.payload.muted, 'self');
  request.reply('ack', {});
}

/** A subscribed feed's video layer for this viewer (or none, paused): the node applies it without renegotiation. */
async function updateSubscription(room: RoomHandle, request: SignalingRequest<'update_subscription'>): Promise<void> {
  const record = senderRecord(room, request.attachment);
  const subscription = request.frame.payload;
  if (!(record.subscription ?? []).includes(subscription.feed)) {
    throw new RequestRefusedError('unknown_feed', 'this feed is not subscribed');
  }
  await room.media.updateSubscription(room.roomId, record.id, subscription);
  request.reply('ack', {});
}

async function leave(room: RoomHandle, request: SignalingRequest<'leave'>): Promise<void> {
  const record = senderRecord(room, request.attachment);
  request.reply('ack', {});
  await room.depart(record.id, 'leave', { code: CLOSE_CODES.normal, reason: 'left' });
}

/** Handlers by frame type: each replies exactly once or throws (the dispatcher turns that into `error`). */
export const frameHandlers: { [T in ClientFrameType]: FrameHandler<T> } = {
  join_room: joinRoom,
  publish_offer: publishOffer,
  trickle_ice: trickleIce,
  subscribe,
  subscribe_answer: subscribeAnswer,
  unsubscribe,
  unpublish,
  leave,
  send_data: sendData,
  mute,
  update_subscription: updateSubscription,
};
