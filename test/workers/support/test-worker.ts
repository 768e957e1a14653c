import type { MediaNodeClient } from '../../../workers/src/media/media-node-client.ts';
import { createMediaNodeClient } from '../../../workers/src/media/media-node-factory.ts';
import { RoomCoordinator as EdgeRoomCoordinator } from '../../../workers/src/room/room-coordinator.ts';

export { default } from '../../../workers/src/index.ts';
export { EmbeddedStore } from '../../../workers/src/store/embedded-store.ts';

/** Media node fakes by room id, given by tests with `useMediaNode` (tests and objects share one isolate). */
export const mediaNodeFakes = new Map<string, MediaNodeClient>();

/**
 * The Worker under test: the edge's own, except that its rooms reach a test's fake media node
 * when the test gave one for that room (see rooms.ts `useMediaNode`), else the configured one.
 * Every media node call names its room, so the fake is looked up per call and outlives evictions.
 */
export class RoomCoordinator extends EdgeRoomCoordinator {
  static override readonly createMediaNodeClient: typeof createMediaNodeClient = (...args) => {
    const configured = createMediaNodeClient(...args);
    const route =
      <M extends keyof MediaNodeClient>(method: M) =>
      (roomId: string, ...rest: unknown[]) =>
        // biome-ignore lint/suspicious/noExplicitAny: forwards one client's call to another of the same interface
        ((mediaNodeFakes.get(roomId) ?? configured)[method] as any)(roomId, ...rest);
    return {
      publish: route('publish'),
      addIceCandidate: route('addIceCandidate'),
      subscribe: route('subscribe'),
      setSubscriberAnswer: route('setSubscriberAnswer'),
      unpublish: route('unpublish'),
      closeSubscriber: route('closeSubscriber'),
      closeRoom: route('closeRoom'),
      describeRoom: route('describeRoom'),
      mute: route('mute'),
      updateSubscription: route('updateSubscription'),
    };
  };
}
