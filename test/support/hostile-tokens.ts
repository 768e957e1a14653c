import { generateKeyPair, SignJWT } from 'jose';

/**
 * Tokens an attacker could present, built from the claims a legitimate token carries: each is wrong
 * in exactly one way. Shared by the edge (participant tokens, JWT_SECRET) and the media node
 * (service tokens, MEDIA_NODE_SECRET) suites, which must refuse every one of them.
 */
export interface TokenFacts {
  /** The secret the verifier holds. */
  secret: Uint8Array;
  /** Claims of a valid token, without iat/exp/nbf (set here). */
  claims: Record<string, unknown>;
  /** An audience the verifier must not accept (e.g. the other direction's). */
  wrongAudience: string;
  wrongIssuer: string;
  /** How long a valid token lives. */
  lifetimeSeconds: number;
}

const base64url = (bytes: Uint8Array | string) => {
  const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
  let binary = '';
  for (const byte of data) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};

/** header.payload signed with HMAC-SHA256 and `secret`, whatever `alg` the header claims. */
async function hmacSigned(header: Record<string, unknown>, payload: Record<string, unknown>, secret: Uint8Array) {
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  const key = await crypto.subtle.importKey(
    'raw',
    secret as Uint8Array<ArrayBuffer>,
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  const signature = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(signingInput)));
  return `${signingInput}.${base64url(signature)}`;
}

/** Every hostile variant, labelled. All are refused with 401 by a correct verifier. */
export async function hostileTokens(facts: TokenFacts): Promise<[string, string][]> {
  const now = Math.floor(Date.now() / 1000);
  const valid = { ...facts.claims, iat: now, exp: now + facts.lifetimeSeconds };
  const hs256 = (claims: Record<string, unknown>, secret = facts.secret, alg = 'HS256') =>
    new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).sign(secret);
  const attackerRsa = await generateKeyPair('RS256', { extractable: true });
  return [
    ['alg none', `${base64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${base64url(JSON.stringify(valid))}.`],
    ['alg none carrying a valid HS256 signature', await hmacSigned({ alg: 'none', typ: 'JWT' }, valid, facts.secret)],
    [
      'HS256 with the wrong secret',
      await hs256(valid, new TextEncoder().encode('attacker-secret-also-32-bytes-long!!')),
    ],
    [
      'RS256 signed with the attacker’s own key',
      await new SignJWT(valid).setProtectedHeader({ alg: 'RS256', typ: 'JWT' }).sign(attackerRsa.privateKey),
    ],
    // RS/HS confusion the other way: the header names an asymmetric algorithm, the signature is an HMAC.
    [
      'header RS256 over an HMAC signature with the real secret',
      await hmacSigned({ alg: 'RS256', typ: 'JWT' }, valid, facts.secret),
    ],
    ['HS512 with the real secret (algorithm not pinned)', await hs256(valid, facts.secret, 'HS512')],
    ['expired', await hs256({ ...valid, iat: now - 2 * facts.lifetimeSeconds - 60, exp: now - 60 })],
    [
      'not yet valid (nbf in an hour)',
      await hs256({ ...valid, nbf: now + 3600, exp: now + 3600 + facts.lifetimeSeconds }),
    ],
    [
      'issued in the future (iat in an hour)',
      await hs256({ ...valid, iat: now + 3600, exp: now + 3600 + facts.lifetimeSeconds }),
    ],
    ['without exp', await hs256({ ...facts.claims, iat: now })],
    ['for the wrong audience', await hs256({ ...valid, aud: facts.wrongAudience })],
    ['from the wrong issuer', await hs256({ ...valid, iss: facts.wrongIssuer })],
    ['with a tampered payload', await tamper(await hs256(valid))],
  ];
}

/** The same signature over a payload with one claim changed (`exp` a day later). */
async function tamper(token: string): Promise<string> {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const claims = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/'))) as { exp: number };
  claims.exp += 86_400;
  return `${header}.${base64url(JSON.stringify(claims))}.${signature}`;
}
