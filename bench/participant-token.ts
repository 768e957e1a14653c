import { SignJWT } from 'jose';
import { newId } from '../shared/src/ids.ts';
import { TOKEN_ALGORITHM, TOKEN_AUDIENCE, TOKEN_ISSUER, type TokenClaims } from '../shared/src/token.ts';

/**
 * A participant token as REST join issues it (shared/src/token.ts claims), signed with the secret the
 * benchmark's stack generated: REST join is rate limited per client (100/min), and the benchmarks
 * measure signaling, not token issuance.
 */
export function mintParticipantToken(
  secret: Uint8Array,
  subject: { roomId: string; participantId: string; display: string; lifetimeSeconds: number },
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: TokenClaims = {
    iss: TOKEN_ISSUER,
    aud: TOKEN_AUDIENCE,
    sub: subject.participantId,
    room: subject.roomId,
    name: subject.display,
    grants: { publish: true, subscribe: true, admin: false, publish_data: true, hidden: false },
    jti: newId(),
    iat: now,
    exp: now + subject.lifetimeSeconds,
  };
  return new SignJWT({ ...claims }).setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: 'JWT' }).sign(secret);
}
