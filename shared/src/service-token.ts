import { jwtVerify, SignJWT } from 'jose';
import { MEDIA_TOKEN_MAX_LIFETIME_SECONDS, ServiceTokenClaimsSchema, TOKEN_ALGORITHM } from './token.ts';

/**
 * Short-lived HS256 tokens that the edge and the media node sign for each other with MEDIA_NODE_SECRET.
 * Each direction has its own audience, so a token captured in one direction is useless in the other.
 */
export async function signServiceToken(
  secret: Uint8Array,
  options: { issuer: string; audience: string; lifetimeSeconds?: number },
): Promise<string> {
  const lifetime = Math.min(options.lifetimeSeconds ?? 30, MEDIA_TOKEN_MAX_LIFETIME_SECONDS);
  return new SignJWT({})
    .setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: 'JWT' })
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt()
    .setExpirationTime(`${lifetime}s`)
    .sign(secret);
}

const CLOCK_TOLERANCE_SECONDS = 5;

/**
 * Verifies a service token: HS256 only, the expected audience (and issuer, when the verifier knows
 * it), `exp` required and no more than 60 s after `iat`, and `iat` not in the future (otherwise the
 * 60 s bound would not bound how long a token works). Throws on any failure; callers answer 401.
 */
export async function verifyServiceToken(token: string, secret: Uint8Array, audience: string, issuer?: string) {
  const { payload } = await jwtVerify(token, secret, {
    algorithms: [TOKEN_ALGORITHM],
    audience,
    ...(issuer === undefined ? {} : { issuer }),
    requiredClaims: ['exp', 'iat', 'iss'],
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
  });
  const claims = ServiceTokenClaimsSchema.parse(payload);
  if (claims.exp - claims.iat > MEDIA_TOKEN_MAX_LIFETIME_SECONDS) {
    throw new Error('service token lifetime exceeds 60 s');
  }
  if (claims.iat > Date.now() / 1000 + CLOCK_TOLERANCE_SECONDS) throw new Error('service token issued in the future');
  return claims;
}

/** The bearer token of an `Authorization` header, or undefined. */
export function bearerToken(header: string | null | undefined): string | undefined {
  const match = header?.match(/^Bearer\s+([^\s]+)$/i);
  return match?.[1];
}
