import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { newId } from '../../../shared/src/ids.ts';
import {
  type GrantsInput,
  GrantsSchema,
  TOKEN_ALGORITHM,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  type TokenClaims,
  TokenClaimsSchema,
} from '../../../shared/src/token.ts';
import type { EdgeConfig } from '../config.ts';
import { HttpError } from '../http/errors.ts';

export interface IssuedToken {
  token: string;
  claims: TokenClaims;
  expiresAt: Date;
}

/**
 * Signs the participant token of the contract: HS256, fixed iss/aud, exp = iat + JWT_EXPIRY_SECONDS
 * but never past the session's end (`auth_time` + MAX_SESSION_SECONDS). A refresh passes the
 * session's `auth_time` on; a join starts a new session.
 */
export async function issueParticipantToken(
  jwt: EdgeConfig['jwt'],
  subject: { roomId: string; participantId: string; display: string; grants: GrantsInput; sessionStartedAt?: number },
): Promise<IssuedToken> {
  const iat = Math.floor(Date.now() / 1000);
  const authTime = subject.sessionStartedAt ?? iat;
  const claims: TokenClaims = {
    iss: TOKEN_ISSUER,
    aud: TOKEN_AUDIENCE,
    sub: subject.participantId,
    room: subject.roomId,
    name: subject.display,
    grants: GrantsSchema.parse(subject.grants),
    jti: newId(),
    iat,
    exp: Math.min(iat + jwt.expirySeconds, authTime + jwt.maxSessionSeconds),
    auth_time: authTime,
  };
  const token = await new SignJWT({ ...claims })
    .setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: 'JWT' })
    .sign(jwt.secret);
  return { token, claims, expiresAt: new Date(claims.exp * 1000) };
}

/** Clock difference tolerated between the edge that issued a token and the one checking it. */
const ISSUED_AT_SKEW_SECONDS = 5;

/**
 * Verifies a participant token with the algorithm pinned to HS256 (so `alg: none` and RS/HS
 * confusion fail) and exp, iss and aud required. Any failure is a 401 `unauthorized`.
 */
export async function verifyParticipantToken(jwt: EdgeConfig['jwt'], token: string): Promise<TokenClaims> {
  try {
    const { payload } = await jwtVerify(token, jwt.secret, {
      algorithms: [TOKEN_ALGORITHM],
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      requiredClaims: ['exp', 'iat', 'sub', 'jti'],
    });
    const parsed = TokenClaimsSchema.safeParse(payload);
    if (!parsed.success) throw new HttpError(401, 'unauthorized', 'token claims are malformed');
    // jose checks iat only against a maximum age: a token "issued" in the future would outlive its
    // holder's leave (which refuses tokens issued before it) and every key rotation window.
    if (parsed.data.iat > Date.now() / 1000 + ISSUED_AT_SKEW_SECONDS) {
      throw new HttpError(401, 'unauthorized', 'token is invalid');
    }
    return parsed.data;
  } catch (error) {
    if (error instanceof HttpError) throw error;
    const expired = error instanceof joseErrors.JWTExpired;
    throw new HttpError(401, 'unauthorized', expired ? 'token has expired' : 'token is invalid');
  }
}
