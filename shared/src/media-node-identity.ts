/**
 * A media node is known by the URL the edge reaches its control API at: the room's pin, the `node`
 * claim of the control tokens the edge sends it, the `iss` of the event tokens it sends the edge and
 * its registry entry all name it this way, compared in this normal form. Apart from media-node-trust.ts
 * (zod, jose) so that a media worker that relays nothing loads neither.
 */
export function mediaNodeIdentity(url: string): string {
  return new URL(url).href;
}
