import { z } from 'zod';
import { ParticipantIdSchema, RoomIdSchema } from '../../../shared/src/ids.ts';
import { GrantsSchema } from '../../../shared/src/token.ts';

/**
 * The verified identity the Worker hands to the room's Durable Object with a WebSocket upgrade. The
 * Worker builds the forwarded request from scratch, so a client can never supply this header itself.
 */
export const IDENTITY_HEADER = 'X-TrueGather-Identity';

export const ConnectionIdentitySchema = z.object({
  roomId: RoomIdSchema,
  participantId: ParticipantIdSchema,
  grants: GrantsSchema,
  /** The token's `iat` (seconds): a token issued before the participant left cannot bring it back. */
  issuedAt: z.number().int(),
});
export type ConnectionIdentity = z.infer<typeof ConnectionIdentitySchema>;

/** Header values must be Latin-1, so the JSON is percent-encoded. */
export function encodeIdentity(identity: ConnectionIdentity): string {
  return encodeURIComponent(JSON.stringify(identity));
}

export function decodeIdentity(header: string | null): ConnectionIdentity | null {
  if (!header) return null;
  try {
    const parsed = ConnectionIdentitySchema.safeParse(JSON.parse(decodeURIComponent(header)));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
