import { RequestRefusedError, updateAttachment } from './connection.ts';
import { encodeServerFrame } from './frames.ts';
import type { SignalingRequest } from './handlers.ts';
import { fullBucket, type RateLimit, takeToken } from './rate-limit.ts';
import type { RoomHandle } from './room-handle.ts';

/**
 * `send_data` has its own bucket beside the frame limit: a chat burst is fine, a socket that turns
 * the room into a relay (16 KiB to up to every participant, per message) is slowed down.
 * Refusals answer `rate_limited` and count towards the frame limit's close like any frame.
 */
export const DATA_RATE_LIMIT: RateLimit = { burst: 20, refillPerSecond: 10, refusalsBeforeClose: 20 };

/**
 * Relays app data to everyone else in the room, or only to the participants named in `to` (ids
 * not in the room are skipped: they may have just left). Needs the `publish_data` grant.
 */
export async function sendData(room: RoomHandle, request: SignalingRequest<'send_data'>): Promise<void> {
  const { frame, ws, attachment } = request;
  const record = room.state.participant(attachment.participantId);
  if (!record) throw new RequestRefusedError('not_joined', 'join the room first');
  if (!record.grants.publish_data) {
    throw new RequestRefusedError('forbidden', 'the token does not allow sending data');
  }
  const now = Date.now();
  const { allowed, bucket } = takeToken(
    attachment.dataBucket ?? fullBucket(now, DATA_RATE_LIMIT),
    now,
    DATA_RATE_LIMIT,
  );
  updateAttachment(ws, (current) => {
    current.dataBucket = bucket;
  });
  if (!allowed) throw new RequestRefusedError('rate_limited', 'too many data messages: slow down');

  const { data, topic, to } = frame.payload;
  const text = encodeServerFrame(
    'data',
    topic === undefined ? { from: record.id, data } : { from: record.id, data, topic },
  );
  const addressed = to === undefined ? null : new Set(to);
  for (const recipient of room.state.participants()) {
    if (recipient.id === record.id || (addressed && !addressed.has(recipient.id))) continue;
    room.sendTo(recipient.id, text);
  }
  request.reply('ack', {});
}
