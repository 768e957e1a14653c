import { app } from './app.ts';
import type { Env } from './env.ts';
import { deliverWebhooks } from './webhooks/deliver.ts';

export default {
  fetch: app.fetch,
  queue: deliverWebhooks,
} satisfies ExportedHandler<Env>;
export { RoomCoordinator } from './room/room-coordinator.ts';
export { EmbeddedStore } from './store/embedded-store.ts';
