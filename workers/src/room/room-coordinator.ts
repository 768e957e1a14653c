import { DurableObject } from 'cloudflare:workers';
import { ParticipantIdSchema } from '../../../shared/src/ids.ts';
import { createLogger } from '../../../shared/src/log.ts';
import { type MediaEvent, MediaEventSchema } from '../../../shared/src/media-control.ts';
import { CLOSE_CODES } from '../../../shared/src/signaling-socket.ts';
import { edgeConfig } from '../config.ts';
import type { Env } from '../env.ts';
import type { MediaNodeClient } from '../media/media-node-client.ts';
import { createMediaNodeClient } from '../media/media-node-factory.ts';
import { roomRepository } from '../store/index.ts';
import { connect, disconnect, receive, runAlarm } from './lifecycle.ts';
import { queueMediaEvent } from './media-events.ts';
import { Room } from './room.ts';

/**
 * One room's signaling coordinator (one instance per room id, `idFromName`). A thin shell over the
 * Hibernation API: sockets are accepted with `ctx.acceptWebSocket`, keepalive pings are answered by
 * the runtime without waking the object, and each entry point hands over to lifecycle.ts.
 *
 * RPC for the rest of the edge: `leaveParticipant` (REST leave) and `handleMediaEvent` (media node events).
 */
export class RoomCoordinator extends DurableObject<Env> {
  /**
   * The room's media node client, created from config on first use. Durable Object tests put an
   * in-memory fake here through `runInDurableObject`; it is a field, not a method, so RPC never exposes it.
   */
  mediaNode: MediaNodeClient | undefined;
  #room: Room | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('ping', 'pong'));
  }

  override async fetch(request: Request): Promise<Response> {
    return connect(this.#coordinator(), request);
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    await receive(this.#coordinator(), ws, message);
  }

  override async webSocketClose(ws: WebSocket): Promise<void> {
    await disconnect(this.#coordinator(), ws);
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    await disconnect(this.#coordinator(), ws);
  }

  override async alarm(): Promise<void> {
    await runAlarm(this.#coordinator());
  }

  /**
   * Removes a participant exactly as a `leave` frame does (without the ack): its sockets close with
   * 1000, others hear `publisher_left` / `participant_left`, the media node and the store forget it.
   */
  async leaveParticipant(participantId: string): Promise<void> {
    const id = ParticipantIdSchema.parse(participantId);
    const room = this.#coordinator();
    if (!room.state.meta()) return;
    await room.exclusive(id, () => room.depart(id, 'rest_leave', { code: CLOSE_CODES.normal, reason: 'left' }));
  }

  /** Whether a token of `participantId` issued at `issuedAt` (seconds) predates that participant's leave. */
  async hasLeft(participantId: string, issuedAt: number): Promise<boolean> {
    const leftAt = this.#coordinator().state.leftAt(ParticipantIdSchema.parse(participantId), Date.now());
    return leftAt !== undefined && issuedAt * 1000 <= leftAt;
  }

  /**
   * Turns a media node event into frames: publisher_ready → `publisher_joined`, publisher_closed →
   * `publisher_left` and renegotiation, subscriber_offer → `subscribe_offer`, ice_candidate →
   * `trickle_ice`. Resolves once the event is queued; its frames follow the participant's in-flight replies.
   */
  async handleMediaEvent(event: MediaEvent): Promise<void> {
    const parsed = MediaEventSchema.parse(event);
    const room = this.#coordinator();
    if (room.state.meta()?.roomId !== parsed.room_id) {
      room.logger.warn('media event for another room', { type: parsed.type });
      return;
    }
    queueMediaEvent(room, parsed);
  }

  /** Built on first use, so that a bad configuration fails requests with its ConfigError, not construction. */
  #coordinator(): Room {
    if (!this.#room) {
      const config = edgeConfig(this.env);
      const repository = () => roomRepository(this.env, config);
      this.#room = new Room({
        ctx: this.ctx,
        config,
        repository,
        media: () => {
          this.mediaNode ??= createMediaNodeClient(config, this.ctx.storage, repository);
          return this.mediaNode;
        },
        logger: createLogger(config.logLevel, { component: 'room-coordinator' }),
      });
    }
    return this.#room;
  }
}
