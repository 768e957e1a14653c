import { Hono } from 'hono';
import type { Env } from './env.ts';

const app = new Hono<{ Bindings: Env }>();
app.get('/health', (c) => c.json({ status: 'ok', checks: {} }));

export default app;
export { RoomCoordinator } from './room/room-coordinator.ts';
export { EmbeddedStore } from './store/embedded-store.ts';
