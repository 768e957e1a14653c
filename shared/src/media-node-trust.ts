import { base64url } from 'jose';
import { z } from 'zod';
import type { MediaNodeRegistration } from './media-control.ts';

export { mediaNodeIdentity } from './media-node-identity.ts';

/** A registry entry lives this long after its last heartbeat (three missed beats and it is gone). */
export const MEDIA_NODE_REGISTRATION_TTL_SECONDS = 15;
/** An entry older than its TTL (plus clock skew) is a replay of an old heartbeat: ignored. */
const REGISTRATION_MAX_AGE_MS = (MEDIA_NODE_REGISTRATION_TTL_SECONDS + 5) * 1000;

/** What the node signs: every field, in a fixed order, after a label no other use of the secret shares. */
function registrationMessage(entry: Omit<MediaNodeRegistration, 'signature'>) {
  const fields = [entry.id, entry.url, entry.load, entry.capacity, entry.draining, entry.updated_at];
  return new TextEncoder().encode(`truegather media-node registration v1\n${JSON.stringify(fields)}`);
}

function hmacKey(secret: Uint8Array, usage: 'sign' | 'verify') {
  return crypto.subtle.importKey('raw', new Uint8Array(secret), { name: 'HMAC', hash: 'SHA-256' }, false, [usage]);
}

/** A registry entry signed with MEDIA_NODE_SECRET (HMAC-SHA256), so that a Redis writer cannot forge one. */
export async function signRegistration(
  entry: Omit<MediaNodeRegistration, 'signature'>,
  secret: Uint8Array,
): Promise<MediaNodeRegistration & { signature: string }> {
  const mac = await crypto.subtle.sign('HMAC', await hmacKey(secret, 'sign'), registrationMessage(entry));
  return { ...entry, signature: base64url.encode(new Uint8Array(mac)) };
}

export type RegistrationVerdict = 'trusted' | 'unsigned' | 'bad_signature' | 'stale' | 'insecure_url';

/**
 * Whether the edge may place rooms on a registry entry: signed with MEDIA_NODE_SECRET (HMAC verify,
 * constant time), fresh, and reachable over https unless its URL is on loopback or a private network
 * (or `allowHttp`).
 */
export async function checkRegistration(
  entry: MediaNodeRegistration,
  secret: Uint8Array,
  options: { allowHttp: boolean; now?: number },
): Promise<RegistrationVerdict> {
  if (entry.signature === undefined) return 'unsigned';
  let signature: Uint8Array<ArrayBuffer>;
  try {
    signature = new Uint8Array(base64url.decode(entry.signature));
  } catch {
    return 'bad_signature';
  }
  const valid = await crypto.subtle.verify(
    'HMAC',
    await hmacKey(secret, 'verify'),
    signature,
    registrationMessage(entry),
  );
  if (!valid) return 'bad_signature';
  if ((options.now ?? Date.now()) - Date.parse(entry.updated_at) > REGISTRATION_MAX_AGE_MS) return 'stale';
  if (!isTransportAllowed(entry.url, options.allowHttp)) return 'insecure_url';
  return 'trusted';
}

/**
 * The edge sends SDP and control tokens to a node: over the internet that needs https. Plain http is
 * accepted for loopback and private-network addresses (an IP literal in 127/8, 10/8, 172.16/12,
 * 192.168/16, 169.254/16, 100.64/10, ::1, fc00::/7, fe80::/10, or `localhost`), or anywhere when the
 * operator says so (MEDIA_NODE_ALLOW_HTTP). A host name is not resolved: it needs https or the flag.
 */
export function isTransportAllowed(url: string, allowHttp: boolean): boolean {
  const parsed = new URL(url);
  if (parsed.protocol === 'https:') return true;
  if (parsed.protocol !== 'http:') return false;
  return allowHttp || isLocalHost(parsed.hostname);
}

function isLocalHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  const v4 = z.ipv4().safeParse(host);
  if (v4.success) {
    const [a = 0, b = 0] = host.split('.').map(Number);
    return (
      a === 127 ||
      a === 10 ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 169 && b === 254) ||
      (a === 100 && b >= 64 && b <= 127)
    );
  }
  if (!z.ipv6().safeParse(host).success) return false;
  if (host === '::1') return true;
  // An IPv4-mapped address, as URL normalizes it (::ffff:7f00:1 for ::ffff:127.0.0.1).
  const mapped = host.match(/^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/);
  if (mapped?.[1] && mapped[2]) {
    const [high, low] = [Number.parseInt(mapped[1], 16), Number.parseInt(mapped[2], 16)];
    return isLocalHost(`${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`);
  }
  return /^f[cd]/.test(host) || /^fe[89ab]/.test(host);
}
