import type { ParticipantDetails, UpdateParticipantRequest } from '../../../shared/src/rest.ts';
import { encodeServerFrame } from './frames.ts';
import { errorName, type RoomHandle } from './room-handle.ts';
import { type ParticipantRecord, publisherOf } from './room-state.ts';

/** A participant as the admin routes show it: hidden ones included, with grants and published streams. */
export const participantDetailsOf = (record: ParticipantRecord): ParticipantDetails => ({
  id: record.id,
  display: record.display,
  joined_at: new Date(record.joinedAt).toISOString(),
  grants: record.grants,
  streams: record.publisher ? publisherOf({ ...record, publisher: record.publisher }).streams : [],
});

/**
 * An admin's change of a participant's grants, in effect at once: the room's record is what every
 * handler checks (and what a reconnect keeps). Revoking `publish` unpublishes, revoking `subscribe`
 * closes the participant's receiving connection. Null when the participant is not in the room.
 */
export async function updateGrants(
  room: RoomHandle,
  participantId: string,
  grants: UpdateParticipantRequest['grants'],
): Promise<ParticipantDetails | null> {
  const before = room.state.participant(participantId);
  if (!before) return null;
  room.state.updateParticipant(participantId, (record) => {
    record.grants = { ...record.grants, ...grants };
  });
  if (grants.publish === false) await room.stopPublishing(participantId, { unpublishOnMediaNode: true });
  if (grants.subscribe === false && before.subscription !== null) {
    room.state.updateParticipant(participantId, (record) => {
      record.subscription = null;
    });
    // The record already says no subscription (an admin's retry would not close it again): a node
    // that cannot be told must not cost the participant its `grants_updated`, whose SDK then closes
    // its side, nor the admin a 5xx for a change that took effect.
    try {
      await room.media.closeSubscriber(room.roomId, participantId);
    } catch (error) {
      room.logger.warn('media node call failed', { operation: 'closeSubscriber', error: errorName(error) });
    }
  }
  const after = room.state.participant(participantId);
  if (!after) return null;
  room.sendTo(participantId, encodeServerFrame('grants_updated', { grants: after.grants }));
  return participantDetailsOf(after);
}
