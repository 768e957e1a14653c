import type { MediaEvent } from '../../../shared/src/media-control.ts';
import { encodeServerFrame } from './frames.ts';
import { errorName, type RoomHandle } from './room-handle.ts';
import { participantOf, publisherOf } from './room-state.ts';

type MediaEventHandler<T extends MediaEvent['type']> = (
  room: RoomHandle,
  event: Extract<MediaEvent, { type: T }>,
  /** The identity of the node that sent it, when known. */
  node: string | undefined,
) => Promise<void> | void;

/** How the coordinator reacts to each media node event; events about departed participants are dropped. */
const mediaEventHandlers: { [T in MediaEvent['type']]: MediaEventHandler<T> } = {
  async publisher_ready(room, event) {
    let changed = false;
    const record = room.state.updateParticipant(event.participant_id, (record) => {
      if (!record.publisher) return;
      changed = !record.publisher.ready || JSON.stringify(record.publisher.streams) !== JSON.stringify(event.streams);
      record.publisher = { streams: event.streams, ready: true };
    });
    if (!record?.publisher) return;
    // Renegotiated or republished on its node: nodes that relay it pull its tracks again.
    await room.media.publisherReady(record.id);
    if (!changed) return;
    const publisher = publisherOf({ ...record, publisher: record.publisher });
    room.broadcast(encodeServerFrame('publisher_joined', { publisher }), record.id);
    room.webhook('track.published', { participant: participantOf(record), streams: publisher.streams });
    // Media now lives on the node: the alarm starts probing it.
    await room.scheduleAlarm();
  },
  async publisher_closed(room, event) {
    await room.stopPublishing(event.participant_id, { unpublishOnMediaNode: false });
  },
  async subscriber_closed(room, event) {
    room.state.updateParticipant(event.participant_id, (record) => {
      record.subscription = null;
    });
    await room.media.settleRelays();
  },
  async subscriber_offer(room, event) {
    const record = room.state.updateParticipant(event.participant_id, (record) => {
      record.subscription = event.feeds;
    });
    if (record) room.sendTo(record.id, encodeServerFrame('subscribe_offer', { sdp: event.sdp }));
    await room.media.settleRelays();
  },
  subscriber_layer(room, event) {
    if (!room.state.participant(event.participant_id)) return;
    const { feed, rid, width, height } = event;
    room.sendTo(event.participant_id, encodeServerFrame('layer_changed', { feed, rid, width, height }));
  },
  publisher_layers(room, event) {
    if (!room.state.participant(event.participant_id)?.publisher) return;
    const { mid, rids } = event;
    room.sendTo(event.participant_id, encodeServerFrame('publisher_layers', { mid, rids }));
  },
  ice_candidate(room, event) {
    if (!room.state.participant(event.participant_id)) return;
    const frame = encodeServerFrame('trickle_ice', { target: event.target, candidate: event.candidate });
    room.sendTo(event.participant_id, frame);
  },
  active_speakers(room, event, node) {
    room.speakers.report(event.speakers, node);
  },
};

/**
 * Queues a media event behind the participant's in-flight requests, so that a candidate or offer
 * never overtakes the reply it belongs to. Does not wait for it: the media node may emit events while
 * one of its own control calls from this room is still in flight. An event about the whole room
 * (active_speakers) waits for nobody.
 */
export function queueMediaEvent(
  room: RoomHandle,
  event: MediaEvent,
  exclusive: (participantId: string, task: () => Promise<void>) => Promise<void>,
  node?: string,
): void {
  const handler = mediaEventHandlers[event.type] as MediaEventHandler<MediaEvent['type']>;
  const run = async () => handler(room, event, node);
  const done = 'participant_id' in event ? exclusive(event.participant_id, run) : run();
  done.catch((error) => room.logger.warn('media event failed', { type: event.type, error: errorName(error) }));
}
