import { z } from 'zod';
import { ParticipantIdSchema, RoomIdSchema } from './ids.ts';
import { LIMITS } from './limits.ts';

/**
 * Fixed issuer and audience of participant tokens; verification requires both. The edge is also the
 * issuer of the control tokens it signs for media nodes.
 */
export const TOKEN_ISSUER = 'truegather-edge';
export const TOKEN_AUDIENCE = 'truegather-client';
export const TOKEN_ALGORITHM = 'HS256';

export const GrantsSchema = z.strictObject({
  publish: z.boolean(),
  subscribe: z.boolean(),
  admin: z.boolean(),
  /** `send_data`; tokens issued before the grant existed carry none, and keep the default. */
  publish_data: z.boolean().default(true),
  /** Not listed to the others (no participant_joined/left, not in `joined`): recorders and bots. */
  hidden: z.boolean().default(false),
});
export type Grants = z.infer<typeof GrantsSchema>;
/** Grants as written in a request or a token: those left out take their defaults. */
export type GrantsInput = z.input<typeof GrantsSchema>;

/** Claims of the participant token that `join` issues and the WebSocket and `leave` require. */
export const TokenClaimsSchema = z.object({
  iss: z.literal(TOKEN_ISSUER),
  aud: z.union([z.literal(TOKEN_AUDIENCE), z.array(z.string()).refine((a) => a.includes(TOKEN_AUDIENCE))]),
  sub: ParticipantIdSchema,
  room: RoomIdSchema,
  name: z.string().min(1).max(LIMITS.displayMaxChars),
  grants: GrantsSchema,
  jti: z.string().min(1).max(64),
  iat: z.number().int(),
  exp: z.number().int(),
  /** When the session began (the first join); refreshes keep it, and stop at MAX_SESSION_SECONDS. */
  auth_time: z.number().int().optional(),
});
export type TokenClaims = z.infer<typeof TokenClaimsSchema>;

/**
 * The room's admin token, returned by room creation: its own audience, so that it is never taken for
 * a participant token (nor one for it). It has no expiry of its own: it is good for as long as the
 * room it names exists (room ids are never reused).
 */
export const ADMIN_TOKEN_AUDIENCE = 'truegather-room-admin';

export const AdminTokenClaimsSchema = z.object({
  iss: z.literal(TOKEN_ISSUER),
  aud: z.literal(ADMIN_TOKEN_AUDIENCE),
  room: RoomIdSchema,
  jti: z.string().min(1).max(64),
  iat: z.number().int(),
});
export type AdminTokenClaims = z.infer<typeof AdminTokenClaimsSchema>;

/** Claims of the short-lived tokens the edge and the media node sign for each other. */
export const MEDIA_NODE_AUDIENCE = 'media-node';
export const EDGE_AUDIENCE = 'truegather-edge-internal';
export const MEDIA_TOKEN_MAX_LIFETIME_SECONDS = 60;

export const ServiceTokenClaimsSchema = z.object({
  /** The edge (TOKEN_ISSUER), or a media node by its identity (its control URL, media-node-trust.ts). */
  iss: z.string().min(1).max(2048),
  aud: z.union([z.string(), z.array(z.string())]),
  iat: z.number().int(),
  exp: z.number().int(),
});
export type ServiceTokenClaims = z.infer<typeof ServiceTokenClaimsSchema>;

/** Edge → node: `node` names the node it was minted for, which refuses tokens minted for another. */
export const ControlTokenClaimsSchema = ServiceTokenClaimsSchema.extend({ node: z.string().min(1).max(2048) });

/**
 * Node → edge (`/internal/media-events`): bound to one room and one body (base64url SHA-256 of the
 * exact bytes sent), and used once (`jti`, remembered by the room until the token expires).
 */
export const MediaEventTokenClaimsSchema = ServiceTokenClaimsSchema.extend({
  room: RoomIdSchema,
  jti: z.string().min(16).max(64),
  body_sha256: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
});
export type MediaEventTokenClaims = z.infer<typeof MediaEventTokenClaimsSchema>;
