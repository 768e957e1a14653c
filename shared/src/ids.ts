import { z } from 'zod';

/**
 * Ids are 128 random bits in base64url (22 characters): unguessable, URL-safe, fixed format.
 * A room id is a capability to find the room, so it must not be enumerable.
 */
export const ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;

export const RoomIdSchema = z.string().regex(ID_PATTERN, 'must be a 22-character base64url id');
export const ParticipantIdSchema = z.string().regex(ID_PATTERN, 'must be a 22-character base64url id');

export type RoomId = z.infer<typeof RoomIdSchema>;
export type ParticipantId = z.infer<typeof ParticipantIdSchema>;

/** A new random id in the format above, from the Web Crypto API (available in Workers and Node). */
export function newId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
