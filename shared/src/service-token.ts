import { base64url, jwtVerify, SignJWT } from 'jose';
import type { z } from 'zod';
import { MEDIA_TOKEN_MAX_LIFETIME_SECONDS, ServiceTokenClaimsSchema, TOKEN_ALGORITHM } from './token.ts';

/**
 * Short-lived HS256 tokens that the edge and the media node sign for each other with MEDIA_NODE_SECRET.
 * Each direction has its own audience, so a token captured in one direction is useless in the other.
 */
export async function signServiceToken(
  secret: Uint8Array,
  options: { issuer: string; audience: string; lifetimeSeconds?: number; claims?: Record<string, string> },
): Promise<string> {
  const lifetime = Math.min(options.lifetimeSeconds ?? 30, MEDIA_TOKEN_MAX_LIFETIME_SECONDS);
  return new SignJWT({ ...options.claims })
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
export async function verifyServiceToken<S extends typeof ServiceTokenClaimsSchema = typeof ServiceTokenClaimsSchema>(
  token: string,
  secret: Uint8Array,
  audience: string,
  issuer?: string,
  schema?: S,
): Promise<z.output<S>> {
  const { payload } = await jwtVerify(token, secret, {
    algorithms: [TOKEN_ALGORITHM],
    audience,
    ...(issuer === undefined ? {} : { issuer }),
    requiredClaims: ['exp', 'iat', 'iss'],
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
  });
  const claims = (schema ?? ServiceTokenClaimsSchema).parse(payload) as z.output<S>;
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

/** base64url SHA-256 of a body, as a media event token's `body_sha256` claim carries it. */
export async function bodyDigest(body: string): Promise<string> {
  return base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(body))));
}
