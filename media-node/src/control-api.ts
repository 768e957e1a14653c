import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { z } from 'zod';
import { ParticipantIdSchema, RoomIdSchema } from '../../shared/src/ids.ts';
import { LIMITS } from '../../shared/src/limits.ts';
import type { Logger } from '../../shared/src/log.ts';
import {
  AddIceCandidateRequestSchema,
  MEDIA_CONTROL_ROUTES,
  MuteRequestSchema,
  NODE_TO_NODE_OPERATIONS,
  type OkResponse,
  PublishRequestSchema,
  PullRequestSchema,
  RelayRequestSchema,
  RelaySenderAnswerRequestSchema,
  type RoomPeersResponse,
  SubscribeRequestSchema,
  SubscriberAnswerRequestSchema,
  UpdateSubscriptionRequestSchema,
} from '../../shared/src/media-control.ts';
import { bearerToken, verifyServiceToken } from '../../shared/src/service-token.ts';
import { ControlTokenClaimsSchema, MEDIA_NODE_AUDIENCE, TOKEN_ISSUER } from '../../shared/src/token.ts';
import { asMediaNodeError, loggableError, MediaNodeError } from './errors.ts';
import type { CommandArgs, CommandResult, RoomCommandName } from './workers/protocol.ts';

/**
 * A control body carries at most one SDP (≤ 64 KiB) plus a few ids; JSON escaping of CR/LF adds a
 * few percent. Anything larger is refused (413) before it is read.
 */
export const CONTROL_BODY_MAX_BYTES = LIMITS.sdpMaxBytes + 16 * 1024;
/** A node-to-node body carries a relay's answer, larger than a participant's SDP. */
export const RELAY_BODY_MAX_BYTES = LIMITS.relaySdpMaxBytes + 16 * 1024;

export interface RoomCommandRunner {
  run<N extends RoomCommandName>(command: N, args: CommandArgs<N>): Promise<CommandResult<N>>;
  peersOf(roomId: string): RoomPeersResponse;
}

export interface HealthReport {
  status: 'ok' | 'draining';
  node_id: string;
  load: number;
  capacity: number;
  draining: boolean;
  rooms: number;
  workers: number;
}

export interface ControlApiDependencies {
  secret: Uint8Array;
  /** This node's identity (mediaNodeIdentity of the URL the edge dials): control tokens must name it. */
  identity: () => string;
  rooms: RoomCommandRunner;
  health: () => HealthReport;
  metrics: () => Promise<{ contentType: string; body: string }>;
  logger: Logger;
}

const OK: OkResponse = { ok: true };

/**
 * The operator endpoints: `/health` and `/metrics`, open, for probes and Prometheus on the internal
 * network; they tell nothing about rooms beyond counts. Served by the control API's listener, or by
 * one of their own (MEDIA_OPERATOR_PORT).
 */
export function createOperatorApi(deps: Pick<ControlApiDependencies, 'health' | 'metrics'>): Hono {
  const app = new Hono();
  app.get('/health', (c) => c.json(deps.health()));
  app.get('/metrics', async (c) => {
    const { contentType, body } = await deps.metrics();
    return c.body(body, 200, { 'content-type': contentType });
  });
  app.notFound((c) => c.json(new MediaNodeError(404, 'not_found', 'no such route').toEnvelope(), 404));
  return app;
}

/**
 * The media node's HTTP API. `/v1/*` is the edge's control API (media-control.ts), authenticated by
 * a service token; with `operatorRoutes`, the operator endpoints too.
 */
export function createControlApi(deps: ControlApiDependencies, options: { operatorRoutes: boolean }): Hono {
  const app = new Hono();
  const { logger } = deps;

  if (options.operatorRoutes) app.route('/', createOperatorApi(deps));

  app.use('/v1/*', async (c, next) => {
    const token = bearerToken(c.req.header('authorization'));
    if (!token) throw new MediaNodeError(401, 'unauthorized', 'a Bearer service token is required');
    try {
      // The edge signs control tokens as TOKEN_ISSUER; a media node signs the node-to-node calls of
      // a relay with its identity as issuer: each side may call only its own routes. Every token
      // names the node it was minted for: one minted for another node is refused here.
      const claims = await verifyServiceToken(
        token,
        deps.secret,
        MEDIA_NODE_AUDIENCE,
        undefined,
        ControlTokenClaimsSchema,
      );
      if (claims.node !== deps.identity()) throw new Error('control token minted for another node');
      const fromEdge = claims.iss === TOKEN_ISSUER;
      if (fromEdge === isNodeToNodePath(c.req.path)) throw new Error('control token of the wrong issuer');
    } catch (error) {
      const expired = (error as { code?: string }).code === 'ERR_JWT_EXPIRED';
      throw new MediaNodeError(
        401,
        'unauthorized',
        expired ? 'the service token has expired' : 'invalid service token',
      );
    }
    await next();
  });
  const limitBody = (maxSize: number) =>
    bodyLimit({
      maxSize,
      onError: () => {
        throw new MediaNodeError(413, 'payload_too_large', `the body exceeds ${maxSize} bytes`);
      },
    });
  const controlBodyLimit = limitBody(CONTROL_BODY_MAX_BYTES);
  const relayBodyLimit = limitBody(RELAY_BODY_MAX_BYTES);
  app.use('/v1/*', (c, next) => (isNodeToNodePath(c.req.path) ? relayBodyLimit : controlBodyLimit)(c, next));

  const routes = MEDIA_CONTROL_ROUTES;
  app.on(routes.publish.method, routes.publish.path, async (c) => {
    const body = await parseBody(c, PublishRequestSchema);
    const roomId = param(c, 'room_id', RoomIdSchema);
    const answer = await deps.rooms.run('publish', { roomId, participantId: body.participant_id, sdp: body.sdp });
    return c.json(answer, 201);
  });

  app.on(routes.unpublish.method, routes.unpublish.path, async (c) => {
    await deps.rooms.run('unpublish', peerParams(c));
    return c.json(OK);
  });

  app.on(routes.addIceCandidate.method, routes.addIceCandidate.path, async (c) => {
    const body = await parseBody(c, AddIceCandidateRequestSchema);
    await deps.rooms.run('addIceCandidate', { ...peerParams(c), target: body.target, candidate: body.candidate });
    return c.json(OK);
  });

  app.on(routes.subscribe.method, routes.subscribe.path, async (c) => {
    const body = await parseBody(c, SubscribeRequestSchema);
    return c.json(await deps.rooms.run('subscribe', { ...peerParams(c), feeds: body.feeds }));
  });

  app.on(routes.setSubscriberAnswer.method, routes.setSubscriberAnswer.path, async (c) => {
    const body = await parseBody(c, SubscriberAnswerRequestSchema);
    await deps.rooms.run('setSubscriberAnswer', { ...peerParams(c), sdp: body.sdp });
    return c.json(OK);
  });

  app.on(routes.closeSubscriber.method, routes.closeSubscriber.path, async (c) => {
    await deps.rooms.run('closeSubscriber', peerParams(c));
    return c.json(OK);
  });

  app.on(routes.mute.method, routes.mute.path, async (c) => {
    const body = await parseBody(c, MuteRequestSchema);
    await deps.rooms.run('mute', { ...peerParams(c), kind: body.kind, muted: body.muted });
    return c.json(OK);
  });

  app.on(routes.updateSubscription.method, routes.updateSubscription.path, async (c) => {
    const body = await parseBody(c, UpdateSubscriptionRequestSchema);
    const preference = { maxWidth: body.max_width, maxHeight: body.max_height, paused: body.paused };
    await deps.rooms.run('updateSubscription', { ...peerParams(c), feed: body.feed, preference });
    return c.json(OK);
  });

  app.on(routes.closeRoom.method, routes.closeRoom.path, async (c) => {
    await deps.rooms.run('closeRoom', { roomId: param(c, 'room_id', RoomIdSchema) });
    return c.json(OK);
  });

  app.on(routes.relay.method, routes.relay.path, async (c) => {
    const body = await parseBody(c, RelayRequestSchema);
    const roomId = param(c, 'room_id', RoomIdSchema);
    const pullingNode = deps.identity();
    return c.json(
      await deps.rooms.run('relay', { roomId, originUrl: body.origin_url, feeds: body.feeds, pullingNode }),
    );
  });

  app.on(routes.pull.method, routes.pull.path, async (c) => {
    const body = await parseBody(c, PullRequestSchema);
    return c.json(await deps.rooms.run('pull', { ...relayParams(c), feeds: body.feeds, connection: body.connection }));
  });

  app.on(routes.setRelaySenderAnswer.method, routes.setRelaySenderAnswer.path, async (c) => {
    const body = await parseBody(c, RelaySenderAnswerRequestSchema);
    await deps.rooms.run('setRelaySenderAnswer', { ...relayParams(c), sdp: body.sdp });
    return c.json(OK);
  });

  app.on(routes.closeRelaySender.method, routes.closeRelaySender.path, async (c) => {
    await deps.rooms.run('closeRelaySender', relayParams(c));
    return c.json(OK);
  });

  // Answered from the main thread's record of the room's peers: a probe never waits on a worker.
  app.on(routes.describeRoom.method, routes.describeRoom.path, (c) =>
    c.json(deps.rooms.peersOf(param(c, 'room_id', RoomIdSchema))),
  );

  app.notFound((c) => c.json(new MediaNodeError(404, 'not_found', 'no such route').toEnvelope(), 404));

  app.onError((error, c) => {
    const failure = asMediaNodeError(error);
    const fields = { method: c.req.method, path: c.req.routePath, status: failure.status, code: failure.code };
    if (failure.code === 'internal_error')
      logger.error('control request failed', { ...fields, error: loggableError(error) });
    else if (failure.status >= 500) logger.warn('control request refused', { ...fields, reason: failure.message });
    else logger.info('control request refused', fields);
    // A 413 leaves the request body unread on the connection: close it rather than let the client
    // reuse it (its next request would meet the rest of this body).
    if (failure.status === 413) c.header('Connection', 'close');
    return c.json(failure.toEnvelope(), failure.status as 400);
  });

  return app;
}

async function parseBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch (error) {
    if (error instanceof MediaNodeError) throw error;
    throw new MediaNodeError(400, 'bad_request', 'the body must be JSON');
  }
  const result = schema.safeParse(body);
  if (!result.success) {
    throw new MediaNodeError(400, 'validation_failed', 'the body does not match the schema', {
      issues: result.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
    });
  }
  return result.data;
}

function param(c: Context, name: string, schema: z.ZodType<string>): string {
  const result = schema.safeParse(c.req.param(name));
  if (!result.success)
    throw new MediaNodeError(400, 'validation_failed', `${name} must be a 22-character base64url id`);
  return result.data;
}

function relayParams(c: Context): { roomId: string; relayId: string } {
  return { roomId: param(c, 'room_id', RoomIdSchema), relayId: param(c, 'relay_id', ParticipantIdSchema) };
}

/** The paths of the node-to-node routes, which only a media node's tokens may call. */
const NODE_TO_NODE_PATHS = NODE_TO_NODE_OPERATIONS.map(
  (operation) => new RegExp(`^${MEDIA_CONTROL_ROUTES[operation].path.replace(/:[a-z_]+/g, '[^/]+')}$`),
);

function isNodeToNodePath(path: string): boolean {
  return NODE_TO_NODE_PATHS.some((pattern) => pattern.test(path));
}

function peerParams(c: Context): { roomId: string; participantId: string } {
  return { roomId: param(c, 'room_id', RoomIdSchema), participantId: param(c, 'participant_id', ParticipantIdSchema) };
}
