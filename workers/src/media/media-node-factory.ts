import type { Logger } from '../../../shared/src/log.ts';
import type { EdgeConfig } from '../config.ts';
import type { RoomRepository } from '../store/room-repository.ts';
import { HttpMediaNodeClient, type NodeHealth } from './http-media-node-client.ts';
import { type MediaNodeClient, unavailableMediaNodeClient } from './media-node-client.ts';
import { MediaNodePlacement } from './media-node-placement.ts';
import { RoomMedia, type RoomMediaView } from './room-media.ts';

export interface RoomMediaDependencies {
  config: EdgeConfig;
  kv: SyncKvStorage;
  repository: () => RoomRepository;
  logger: () => Logger;
  roomId: () => string;
  view: RoomMediaView;
}

/**
 * One node's control API client: over HTTP, signed with MEDIA_NODE_SECRET. Without the secret,
 * signaling works without media: every media request is answered with `media_unavailable` while
 * joins, presence and leave keep working.
 */
export function connectMediaNode(config: EdgeConfig, url: string, health: NodeHealth): MediaNodeClient {
  const mediaNode = config.mediaNode;
  if (!mediaNode) return unavailableMediaNodeClient('no media node is configured (MEDIA_NODE_SECRET is unset)');
  return new HttpMediaNodeClient(mediaNode.secret, url, health);
}

/**
 * The seam through which a room coordinator gets its media: each participant placed on a node of
 * the registry (Upstash) or of MEDIA_NODE_URL, and kept there while that node answers.
 */
export function createRoomMedia(
  deps: RoomMediaDependencies,
  connect: (config: EdgeConfig, url: string, health: NodeHealth) => MediaNodeClient = connectMediaNode,
): RoomMedia {
  const placement = new MediaNodePlacement(deps.kv, deps.repository, deps.config, deps.logger);
  return new RoomMedia({
    roomId: deps.roomId,
    kv: deps.kv,
    placement,
    connect: (url) => connect(deps.config, url, placement),
    view: deps.view,
    logger: deps.logger,
  });
}
