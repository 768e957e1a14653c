import { jwtVerify, SignJWT } from 'jose';
import { newId } from '../../../shared/src/ids.ts';
import {
  ADMIN_TOKEN_AUDIENCE,
  type AdminTokenClaims,
  AdminTokenClaimsSchema,
  TOKEN_ALGORITHM,
  TOKEN_ISSUER,
} from '../../../shared/src/token.ts';
import type { EdgeConfig } from '../config.ts';

/** Signs the admin token of a room just created (HS256, its own audience, no expiry: see AdminTokenClaimsSchema). */
export function issueAdminToken(jwt: EdgeConfig['jwt'], roomId: string): Promise<string> {
  const claims: AdminTokenClaims = {
    iss: TOKEN_ISSUER,
    aud: ADMIN_TOKEN_AUDIENCE,
    room: roomId,
    jti: newId(),
    iat: Math.floor(Date.now() / 1000),
  };
  return new SignJWT({ ...claims }).setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: 'JWT' }).sign(jwt.secret);
}

/** The claims of a valid admin token (algorithm pinned, issuer and audience required), or null. */
export async function verifyAdminToken(jwt: EdgeConfig['jwt'], token: string): Promise<AdminTokenClaims | null> {
  try {
    const { payload } = await jwtVerify(token, jwt.secret, {
      algorithms: [TOKEN_ALGORITHM],
      issuer: TOKEN_ISSUER,
      audience: ADMIN_TOKEN_AUDIENCE,
      requiredClaims: ['iat', 'jti'],
    });
    const parsed = AdminTokenClaimsSchema.safeParse(payload);
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
