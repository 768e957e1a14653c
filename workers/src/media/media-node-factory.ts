import type { EdgeConfig } from '../config.ts';
import type { Env } from '../env.ts';
import { type MediaNodeClient, unavailableMediaNodeClient } from './media-node-client.ts';

/**
 * The seam through which a room coordinator gets its media node. Signaling works without one: media
 * requests are then answered with `media_unavailable` while joins, presence and leave keep working.
 */
export function createMediaNodeClient(_env: Env, config: EdgeConfig): MediaNodeClient {
  if (!config.mediaNode?.url) return unavailableMediaNodeClient('no media node is configured');
  return unavailableMediaNodeClient('the media node HTTP client is not wired into the edge yet');
}
