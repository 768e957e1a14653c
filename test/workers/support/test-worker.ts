import type { MediaNodeClient } from '../../../workers/src/media/media-node-client.ts';
import { createRoomMedia, type RoomMediaDependencies } from '../../../workers/src/media/media-node-factory.ts';
import type { RoomMedia } from '../../../workers/src/media/room-media.ts';
import { RoomCoordinator as EdgeRoomCoordinator } from '../../../workers/src/room/room-coordinator.ts';

export { default } from '../../../workers/src/index.ts';
export { EmbeddedStore } from '../../../workers/src/store/embedded-store.ts';

/** A test's media nodes: node URL → fake (tests and objects share one isolate). */
export type MediaNodeFakes = Map<string, MediaNodeClient>;

/** Media node fakes by room id, given by tests with `useMediaNode` / `useMediaNodes` (see rooms.ts). */
export const mediaNodeFakes = new Map<string, MediaNodeFakes>();

/**
 * The Worker under test: the edge's own, except that its rooms reach a test's fake media nodes when
 * the test gave some for that room (see rooms.ts `useMediaNode`), else the configured ones. The fakes
 * stand in for MEDIA_NODE_URL's static nodes, in the order given; placement, relays and probes are the
 * product's. Every call looks its fake up again, so a fake outlives evictions.
 */
export class RoomCoordinator extends EdgeRoomCoordinator {
  static override readonly createRoomMedia: typeof createRoomMedia = (deps) => {
    // Built on first use and again when the test gives the room other fakes (a test may first see the
    // room without a node, then give it one).
    let built: { fakes: MediaNodeFakes | undefined; media: RoomMedia } | undefined;
    let roomId: string | undefined;
    const current = (): RoomMedia => {
      roomId ??= deps.roomId();
      const fakes = mediaNodeFakes.get(roomId);
      if (!built || built.fakes !== fakes)
        built = { fakes, media: fakes ? withFakes(deps, roomId, fakes) : createRoomMedia(deps) };
      return built.media;
    };
    return new Proxy({} as RoomMedia, {
      get(_target, property) {
        const media = current();
        const value = Reflect.get(media, property, media);
        return typeof value === 'function' ? value.bind(media) : value;
      },
    });
  };
}

/** The room's media on the test's fakes, standing for MEDIA_NODE_URL's static nodes in the order given. */
function withFakes(deps: RoomMediaDependencies, roomId: string, fakes: MediaNodeFakes): RoomMedia {
  const secret = deps.config.mediaNode?.secret ?? new Uint8Array(32);
  const config = {
    ...deps.config,
    upstash: undefined,
    mediaNode: { urls: [...fakes.keys()], secret, allowHttp: true },
  };
  return createRoomMedia({ ...deps, config }, (_config, url) => {
    const fake = () => {
      const client = mediaNodeFakes.get(roomId)?.get(url);
      if (!client) throw new Error(`no fake media node ${url} for room ${roomId}`);
      return client;
    };
    const route =
      <M extends keyof MediaNodeClient>(method: M) =>
      (...args: unknown[]) =>
        // biome-ignore lint/suspicious/noExplicitAny: forwards one client's call to another of the same interface
        (fake()[method] as any)(...args);
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
      relay: route('relay'),
    };
  });
}
