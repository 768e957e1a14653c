import { createSecretKey, KeyObject } from 'node:crypto';
import type { RTCPeerConnection } from 'werift';

/**
 * werift hands its SRTP session keys to `createCipheriv` / `createHmac` as Buffers on every packet,
 * and Node imports a raw key anew each time: ~9 µs of the ~13 µs an AES-GCM packet costs here. The
 * same calls take a KeyObject, imported once. This swaps the keys of a connected peer connection's
 * SRTP and SRTCP ciphers for KeyObjects (werift 0.25 internals, hence the shape checks: a werift that
 * changes them keeps working at the stock speed, and the unit test says so).
 */
const CIPHER_KEY_FIELDS = ['srtpSessionKey', 'srtcpSessionKey', 'srtpSessionAuthTag', 'srtcpSessionAuthTag'] as const;

type Cipher = Partial<Record<(typeof CIPHER_KEY_FIELDS)[number], unknown>>;

/** Returns how many cipher contexts now use KeyObjects (4 per DTLS transport: SRTP/SRTCP × local/remote). */
export function useKeyObjectsForSrtp(pc: RTCPeerConnection): number {
  let converted = 0;
  for (const transport of pc.dtlsTransports) {
    for (const session of [transport.srtp, transport.srtcp]) {
      for (const context of [session?.localContext, session?.remoteContext]) {
        const cipher = context?.cipher as Cipher | undefined;
        if (cipher && convertKeys(cipher)) converted++;
      }
    }
  }
  return converted;
}

function convertKeys(cipher: Cipher): boolean {
  let changed = false;
  for (const field of CIPHER_KEY_FIELDS) {
    const key = cipher[field];
    if (Buffer.isBuffer(key)) {
      cipher[field] = createSecretKey(key);
      changed = true;
    }
  }
  return changed || cipher.srtpSessionKey instanceof KeyObject;
}
