import type { Logger } from '../../../shared/src/log.ts';
import type { EdgeConfig } from '../config.ts';
import type { RoomRepository } from '../store/room-repository.ts';
import { HttpMediaNodeClient } from './http-media-node-client.ts';
import { type MediaNodeClient, unavailableMediaNodeClient } from './media-node-client.ts';
import { MediaNodePlacement } from './media-node-placement.ts';

/**
 * The seam through which a room coordinator gets its media node. Signaling works without one: media
 * requests are then answered with `media_unavailable` while joins, presence and leave keep working.
 * With MEDIA_NODE_SECRET set, the room is placed on the least-loaded registered node (Upstash) or on
 * MEDIA_NODE_URL, and stays there while that node answers.
 */
export function createMediaNodeClient(
  config: EdgeConfig,
  storage: DurableObjectStorage,
  repository: () => RoomRepository,
  logger: () => Logger,
): MediaNodeClient {
  const mediaNode = config.mediaNode;
  if (!mediaNode) return unavailableMediaNodeClient('no media node is configured (MEDIA_NODE_SECRET is unset)');
  return new HttpMediaNodeClient(mediaNode.secret, new MediaNodePlacement(storage, repository, config, logger));
}
