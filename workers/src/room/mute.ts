import type { StreamKind } from '../../../shared/src/rest.ts';
import { RequestRefusedError } from './connection.ts';
import { encodeServerFrame } from './frames.ts';
import type { RoomHandle } from './room-handle.ts';
import { type MuteState, muteOf, participantOf } from './room-state.ts';

export type MutedBy = 'self' | 'admin';

/**
 * The mute rules, for the `mute` frame (`self`) and the admin route (`admin`):
 * - an admin mutes anyone, and that mute is a lock;
 * - an admin's `muted: false` lifts the lock only: the kind stays muted until its owner unmutes it,
 *   so nobody is ever unmuted against their will;
 * - a participant under a lock who tries to unmute gets `forbidden`.
 * The media node stops forwarding a muted kind (no bandwidth goes to silence); the state is kept
 * even with nothing published, and applied when the participant publishes. Everyone, the
 * participant included, hears `track_muted`. Throws RequestRefusedError; returns the new state.
 */
export async function applyMute(
  room: RoomHandle,
  participantId: string,
  kind: StreamKind,
  muted: boolean,
  by: MutedBy,
): Promise<MuteState> {
  const record = room.state.participant(participantId);
  if (!record) throw new RequestRefusedError('not_found', 'no such participant in the room');
  const current = muteOf(record, kind);
  let next: MuteState;
  if (by === 'admin') next = muted ? { muted: true, locked: true } : { muted: current.muted, locked: false };
  else if (!muted && current.locked) {
    throw new RequestRefusedError('forbidden', `an admin muted your ${kind}: only an admin can lift that`);
  } else next = { muted, locked: current.locked };
  // The node first: if it cannot follow, the room's state stays as it was and the caller is told.
  if (record.publisher && next.muted !== current.muted) {
    await room.media.mute(room.roomId, participantId, kind, next.muted);
  }
  room.state.updateParticipant(participantId, (fresh) => {
    fresh.mutes = { ...fresh.mutes, [kind]: next };
  });
  room.broadcast(
    encodeServerFrame('track_muted', { publisher_id: participantId, kind, muted: next.muted, by, locked: next.locked }),
  );
  room.webhook('track.muted', { participant: participantOf(record), kind, muted: next.muted, by });
  return next;
}

/** After a publish: the node forgets mutes with a replaced connection, so the room repeats them. */
export async function reapplyMutes(room: RoomHandle, participantId: string): Promise<void> {
  const record = room.state.participant(participantId);
  if (!record?.mutes) return;
  for (const [kind, state] of Object.entries(record.mutes) as [StreamKind, MuteState][]) {
    if (state.muted) await room.media.mute(room.roomId, participantId, kind, true);
  }
}
