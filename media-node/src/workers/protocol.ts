import type { LogLevel } from '../../../shared/src/config.ts';
import type { IceCandidate } from '../../../shared/src/ice.ts';
import type {
  MediaEvent,
  PublishResponse,
  PullResponse,
  RelayResponse,
  SubscribeResponse,
} from '../../../shared/src/media-control.ts';
import type { StreamKind } from '../../../shared/src/rest.ts';
import type { IceTarget } from '../../../shared/src/signaling.ts';
import type { SerializedMediaError } from '../errors.ts';
import type { ViewerPreference } from '../sfu/forwarded-track.ts';
import type { ForwardingStats } from '../sfu/forwarding-stats.ts';
import type { RtcSettings } from '../sfu/rtc-settings.ts';
import type { LinkEnds } from './worker-relay.ts';

/**
 * Messages between the main thread and a media worker thread. Everything here is structured-clone
 * data; the main thread has validated every field before it crosses.
 */

export interface WorkerInit {
  index: number;
  logLevel: LogLevel;
  nodeId: string;
  settings: RtcSettings;
  connectTimeoutMs: number;
  /** This worker's disjoint slice of the RTC port range. */
  ports: { min: number; max: number };
  /** MEDIA_NODE_SECRET: a relay's pulling end signs its calls to the origin node with it. */
  secret: Uint8Array;
}

/** Operations on a room, and what each resolves to. */
export interface RoomCommands {
  publish: { args: { roomId: string; participantId: string; sdp: string }; result: PublishResponse };
  unpublish: { args: { roomId: string; participantId: string }; result: null };
  addIceCandidate: {
    args: { roomId: string; participantId: string; target: IceTarget; candidate: IceCandidate | null };
    result: null;
  };
  subscribe: { args: { roomId: string; participantId: string; feeds: string[] }; result: SubscribeResponse };
  setSubscriberAnswer: { args: { roomId: string; participantId: string; sdp: string }; result: null };
  closeSubscriber: { args: { roomId: string; participantId: string }; result: null };
  closeRoom: { args: { roomId: string }; result: null };
  mute: { args: { roomId: string; participantId: string; kind: StreamKind; muted: boolean }; result: null };
  updateSubscription: {
    args: { roomId: string; participantId: string; feed: string; preference: ViewerPreference };
    result: null;
  };
  /** Edge → pulling node; `pullingNode` is this node's identity, the issuer of its calls to the origin. */
  relay: {
    args: { roomId: string; originUrl: string; feeds: string[]; pullingNode: string };
    result: RelayResponse;
  };
  /** Pulling node → origin node: the relay sender `relayId` should carry `feeds`. */
  pull: { args: { roomId: string; relayId: string; feeds: string[]; connection: string }; result: PullResponse };
  setRelaySenderAnswer: { args: { roomId: string; relayId: string; sdp: string }; result: null };
  closeRelaySender: { args: { roomId: string; relayId: string }; result: null };
}
export type RoomCommandName = keyof RoomCommands;

/** Operations on the worker itself. */
export interface WorkerCommands {
  /** The pool's watchdog: a worker that does not answer this in time is stuck, and replaced. */
  ping: { args: Record<string, never>; result: null };
  stats: { args: Record<string, never>; result: WorkerStats };
  closeAllRooms: { args: Record<string, never>; result: null };
}

export type CommandName = RoomCommandName | keyof WorkerCommands;
type AllCommands = RoomCommands & WorkerCommands;
export type CommandArgs<N extends CommandName> = AllCommands[N]['args'];
export type CommandResult<N extends CommandName> = AllCommands[N]['result'];

export interface WorkerStats extends ForwardingStats {
  rooms: number;
  publishers: number;
  subscribers: number;
  /** Subscribers held below their preferred layers by their downlink estimate (a gauge, not a counter). */
  bandwidthLimitedViewers: number;
  /** Relays open, by this node's end: origin (sending) and pulling node (receiving). */
  relaysSending: number;
  relaysReceiving: number;
  heapUsedBytes: number;
  /** Event-loop utilization since the previous stats request (0–1). */
  eventLoopUtilization: number;
}

export type MainToWorker =
  | { kind: 'request'; id: number; command: CommandName; args: unknown }
  /** Pairs this worker with another one for worker relays (the port is transferred). */
  | ({ kind: 'link' } & LinkEnds)
  /** The other worker stopped: its link ends. */
  | { kind: 'unlink'; peer: number };

export type WorkerToMain =
  | { kind: 'ready' }
  | { kind: 'response'; id: number; ok: true; result: unknown }
  | { kind: 'response'; id: number; ok: false; error: SerializedMediaError }
  | { kind: 'event'; event: MediaEvent }
  /** The peers of a room changed; `closed` when the room is gone from the worker. */
  | { kind: 'room'; roomId: string; publishers: string[]; subscribers: string[]; closed: boolean };
