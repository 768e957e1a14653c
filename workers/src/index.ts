import { app } from './app.ts';

export default app;
export { RoomCoordinator } from './room/room-coordinator.ts';
export { EmbeddedStore } from './store/embedded-store.ts';
