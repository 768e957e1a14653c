import { performance } from 'node:perf_hooks';
import type { Logger } from '../../../shared/src/log.ts';
import type { MediaEvent } from '../../../shared/src/media-control.ts';
import { notFound } from '../errors.ts';
import { SpeakerClock } from '../sfu/active-speakers.ts';
import { createForwardingStats } from '../sfu/forwarding-stats.ts';
import { PortAllocator } from '../sfu/port-allocator.ts';
import { MediaRoom } from '../sfu/room.ts';
import { socketsPerPeer } from '../sfu/rtc-settings.ts';
import { SenderReportClock } from '../sfu/sender-reports.ts';
import type { CommandArgs, CommandName, CommandResult, WorkerInit, WorkerStats, WorkerToMain } from './protocol.ts';
import { type LinkEnds, WorkerRelay } from './worker-relay.ts';

/**
 * The rooms pinned to one worker thread, and the commands the main thread sends them. Kept apart
 * from the thread plumbing so that it runs the same in a test without a thread.
 */
export class RoomHost {
  readonly #init: WorkerInit;
  readonly #logger: Logger;
  readonly #post: (message: WorkerToMain) => void;
  readonly #ports: PortAllocator;
  readonly #stats = createForwardingStats();
  readonly #senderReports = new SenderReportClock();
  readonly #speakerClock = new SpeakerClock();
  readonly #rooms = new Map<string, MediaRoom>();
  /** Parts of rooms on other worker threads: the feeds relayed to and from them. */
  readonly #relay: WorkerRelay;
  #lastUtilization = performance.eventLoopUtilization();

  constructor(init: WorkerInit, logger: Logger, post: (message: WorkerToMain) => void) {
    this.#init = init;
    this.#logger = logger;
    this.#post = post;
    this.#ports = new PortAllocator(init.ports, socketsPerPeer(init.settings));
    this.#relay = new WorkerRelay({ roomOf: (roomId) => this.#rooms.get(roomId), logger });
  }

  /** Pairs this worker with another one (the pool does, for every pair of running workers). */
  link(ends: LinkEnds): void {
    this.#relay.link(ends);
  }

  unlink(peer: number): void {
    this.#relay.unlink(peer);
  }

  /** One handler per command; the main thread validated the arguments. */
  readonly #handlers: { [N in CommandName]: (args: CommandArgs<N>) => Promise<CommandResult<N>> | CommandResult<N> } = {
    publish: ({ roomId, participantId, sdp }) => this.#room(roomId, true).publish(participantId, sdp),
    unpublish: ({ roomId, participantId }) => {
      this.#rooms.get(roomId)?.unpublish(participantId);
      return null;
    },
    addIceCandidate: async ({ roomId, participantId, target, candidate }) => {
      await this.#room(roomId, true).addIceCandidate(participantId, target, candidate);
      return null;
    },
    subscribe: ({ roomId, participantId, feeds }) => this.#room(roomId, true).subscribe(participantId, feeds),
    setSubscriberAnswer: async ({ roomId, participantId, sdp }) => {
      await this.#room(roomId, false).setSubscriberAnswer(participantId, sdp);
      return null;
    },
    closeSubscriber: ({ roomId, participantId }) => {
      this.#rooms.get(roomId)?.closeSubscriber(participantId);
      return null;
    },
    mute: ({ roomId, participantId, kind, muted }) => {
      this.#room(roomId, false).mute(participantId, kind, muted);
      return null;
    },
    updateSubscription: ({ roomId, participantId, feed, preference }) => {
      this.#room(roomId, false).updateSubscription(participantId, feed, preference);
      return null;
    },
    relay: ({ roomId, originUrl, feeds, pullingNode }) => this.#room(roomId, true).relay(originUrl, feeds, pullingNode),
    pull: ({ roomId, relayId, feeds, connection }) => this.#room(roomId, false).pull(relayId, connection, feeds),
    setRelaySenderAnswer: async ({ roomId, relayId, sdp }) => {
      await this.#room(roomId, false).setRelaySenderAnswer(relayId, sdp);
      return null;
    },
    closeRelaySender: ({ roomId, relayId }) => {
      this.#rooms.get(roomId)?.closeRelaySender(relayId);
      return null;
    },
    closeRoom: ({ roomId }) => {
      this.#rooms.get(roomId)?.close();
      return null;
    },
    closeAllRooms: () => {
      for (const room of this.#rooms.values()) room.close();
      return null;
    },
    ping: () => null,
    stats: () => this.#collectStats(),
  };

  async execute<N extends CommandName>(command: N, args: CommandArgs<N>): Promise<CommandResult<N>> {
    const handler = this.#handlers[command] as (args: CommandArgs<N>) => Promise<CommandResult<N>> | CommandResult<N>;
    try {
      return await handler(args);
    } catch (error) {
      const roomId = (args as { roomId?: string }).roomId;
      if (roomId) this.#rooms.get(roomId)?.closeIfUnused();
      throw error;
    }
  }

  #room(roomId: string, create: boolean): MediaRoom {
    const existing = this.#rooms.get(roomId);
    if (existing) return existing;
    if (!create) throw notFound('room');
    const room = new MediaRoom(roomId, {
      settings: this.#init.settings,
      ports: this.#ports,
      stats: this.#stats,
      senderReports: this.#senderReports,
      speakerClock: this.#speakerClock,
      logger: this.#logger,
      connectTimeoutMs: this.#init.connectTimeoutMs,
      secret: this.#init.secret,
      relayedFeeds: this.#relay,
    });
    room.on('feed', (participantId) => this.#relay.feedChanged(roomId, participantId));
    this.#rooms.set(roomId, room);
    room.on('event', (event: MediaEvent) => this.#post({ kind: 'event', event }));
    room.on('peers', ({ publishers, subscribers }) =>
      this.#post({ kind: 'room', roomId, publishers, subscribers, closed: false }),
    );
    room.once('closed', () => {
      this.#rooms.delete(roomId);
      this.#post({ kind: 'room', roomId, publishers: [], subscribers: [], closed: true });
    });
    return room;
  }

  #collectStats(): WorkerStats {
    this.#senderReports.syncLegs();
    let publishers = 0;
    let subscribers = 0;
    let bandwidthLimitedViewers = 0;
    let relaysSending = 0;
    let relaysReceiving = 0;
    for (const room of this.#rooms.values()) {
      relaysSending += room.relays.sending;
      relaysReceiving += room.relays.receiving;
      const peers = room.peers;
      publishers += peers.publishers.length;
      subscribers += peers.subscribers.length;
      bandwidthLimitedViewers += room.bandwidthLimitedViewers;
    }
    const utilization = performance.eventLoopUtilization(this.#lastUtilization);
    this.#lastUtilization = performance.eventLoopUtilization();
    return {
      ...this.#stats,
      rooms: this.#rooms.size,
      publishers,
      subscribers,
      bandwidthLimitedViewers,
      relaysSending,
      relaysReceiving,
      heapUsedBytes: process.memoryUsage().heapUsed,
      eventLoopUtilization: utilization.utilization,
    };
  }
}
