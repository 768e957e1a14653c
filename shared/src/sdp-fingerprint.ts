/**
 * The DTLS fingerprint of an SDP (`a=fingerprint:`), lower-cased: which DTLS endpoint, so which
 * peer connection, produced it. A new one means a new peer connection, not a renegotiation: the
 * media node and the SDK both decide on it. No zod here, so that the browser SDK can import it.
 */
export function fingerprintOf(sdp: string): string | undefined {
  return sdp
    .split(/\r?\n/)
    .find((line) => line.startsWith('a=fingerprint:'))
    ?.slice('a=fingerprint:'.length)
    .trim()
    .toLowerCase();
}
