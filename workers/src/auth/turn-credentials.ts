import type { IceServer } from '../../../shared/src/ice.ts';
import type { EdgeConfig } from '../config.ts';

const encoder = new TextEncoder();

export interface TurnCredentials {
  username: string;
  credential: string;
}

/**
 * Ephemeral TURN credentials in the TURN REST API convention (coturn's `use-auth-secret`):
 * username `<expiry unix seconds>:<participant id>`, credential base64(HMAC-SHA1(secret, username)).
 * The TURN server recomputes the HMAC with the shared secret and refuses expired usernames.
 */
export async function turnRestCredentials(
  secret: string,
  participantId: string,
  ttlSeconds: number,
  now = Date.now(),
): Promise<TurnCredentials> {
  const expiry = Math.floor(now / 1000) + ttlSeconds;
  const username = `${expiry}:${participantId}`;
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-1' }, false, [
    'sign',
  ]);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, encoder.encode(username)));
  return { username, credential: btoa(String.fromCharCode(...mac)) };
}

/** The ICE servers a participant gets: STUN_SERVER, and TURN_SERVER with credentials minted for it. */
export async function iceServersFor(
  ice: EdgeConfig['ice'],
  participantId: string,
  now = Date.now(),
): Promise<IceServer[]> {
  const servers: IceServer[] = [];
  if (ice.stunUrl) servers.push({ urls: ice.stunUrl });
  if (ice.turn) {
    const { url, secret, ttlSeconds } = ice.turn;
    servers.push(
      secret ? { urls: url, ...(await turnRestCredentials(secret, participantId, ttlSeconds, now)) } : { urls: url },
    );
  }
  return servers;
}
