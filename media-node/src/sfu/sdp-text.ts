/**
 * The few line-level SDP edits werift does not do for us. SDP lines are split on CRLF (RFC 8866)
 * and LF alone, and always written back with CRLF.
 */

export { fingerprintOf } from '../../../shared/src/sdp-fingerprint.ts';

const lines = (sdp: string) => sdp.split(/\r?\n/).filter((line) => line.length > 0);
const join = (sdpLines: string[]) => `${sdpLines.join('\r\n')}\r\n`;

/**
 * Replaces the address of our host candidates with the announced (public) IP, as mediasoup's
 * `announcedAddress` does: behind NAT or in a container the local address is unreachable, while
 * the same port on the public address is forwarded to the socket.
 */
export function announceHostCandidates(sdp: string, announcedIp: string | undefined): string {
  if (!announcedIp) return sdp;
  return join(
    lines(sdp).map((line) => (line.startsWith('a=candidate:') ? announceCandidate(line, announcedIp) : line)),
  );
}

/** One `candidate:…` or `a=candidate:…` attribute with its host address replaced. */
export function announceCandidate(candidate: string, announcedIp: string | undefined): string {
  if (!announcedIp) return candidate;
  const fields = candidate.split(' ');
  // foundation component transport priority address port "typ" type …
  if (fields.length < 8 || fields[6] !== 'typ' || fields[7] !== 'host') return candidate;
  fields[4] = announcedIp;
  return fields.join(' ');
}

/**
 * A remote `.local` candidate is an mDNS name that only the browser's own LAN can resolve; werift
 * would try by multicast from the server. Such candidates are dropped: ICE still connects through
 * the browser's server-reflexive candidate or as a peer-reflexive one.
 */
export function isMdnsCandidate(candidate: string): boolean {
  const address = candidate.replace(/^a=/, '').split(' ')[4];
  return address?.toLowerCase().endsWith('.local') ?? false;
}

export function withoutMdnsCandidates(sdp: string): string {
  return join(lines(sdp).filter((line) => !(line.startsWith('a=candidate:') && isMdnsCandidate(line))));
}

/** The first ICE username fragment: an answerer keeps it unless the offer asked for an ICE restart. */
export function iceUfragOf(sdp: string): string | undefined {
  return lines(sdp)
    .find((line) => line.startsWith('a=ice-ufrag:'))
    ?.slice('a=ice-ufrag:'.length)
    .trim();
}

/** The MIDs of every m-section in order (an answer must list the offer's). */
export function midsOf(sdp: string): string[] {
  return lines(sdp)
    .filter((line) => line.startsWith('a=mid:'))
    .map((line) => line.slice('a=mid:'.length).trim());
}

/**
 * The most audio/video m-lines a publisher's offer may carry (the `streams` limit of the wire
 * contract): each becomes a track, and one more on every subscriber; a call needs three. Subscriber
 * answers are not capped: they mirror the node's own offers, which carry every wanted feed.
 */
export const MAX_MEDIA_SECTIONS = 8;

/**
 * Cheap structural checks before werift sees the text, so that garbage is a clean 400 rather than
 * whatever state a lenient parser leaves behind.
 */
export function sdpShapeProblem(
  sdp: string,
  expect: { media: boolean; maxMediaSections?: number },
): string | undefined {
  const sdpLines = lines(sdp);
  if (!sdpLines.every((line) => /^[a-z]=/.test(line))) return 'every line must be <type>=<value>';
  const mediaLines = sdpLines.filter((line) => line.startsWith('m='));
  const audioVideoLines = mediaLines.filter((line) => /^m=(audio|video) /.test(line)).length;
  if (expect.media && audioVideoLines === 0) return 'no audio or video m-line';
  if (expect.maxMediaSections !== undefined && audioVideoLines > expect.maxMediaSections) {
    return `more than ${expect.maxMediaSections} audio/video m-lines`;
  }
  if (mediaLines.length > 0) {
    if (!sdpLines.some((line) => line.startsWith('a=ice-ufrag:'))) return 'missing a=ice-ufrag';
    if (!sdpLines.some((line) => line.startsWith('a=fingerprint:'))) return 'missing a=fingerprint';
  }
  return undefined;
}

/** Simulcast layers a video m-line may offer (RFC 8853), as every browser SDK sends at most. */
export const MAX_SIMULCAST_LAYERS = 3;

/** RFC 8851 rid-id: alphanumerics, '-' and '_'; kept short, as browsers do. */
const RID_PATTERN = /^[A-Za-z0-9_-]{1,16}$/;

/** Each m-section's `a=rid:` lines (id, direction, restrictions). */
function ridLinesBySection(sdp: string): string[][][] {
  const sections: string[][][] = [];
  for (const line of lines(sdp)) {
    if (line.startsWith('m=')) sections.push([]);
    else if (line.startsWith('a=rid:') && sections.length > 0) {
      sections[sections.length - 1]!.push(line.slice('a=rid:'.length).trim().split(/\s+/));
    }
  }
  return sections;
}

/** What is wrong with an offer's simulcast description: too many layers, a bad or repeated rid, a rid not sent. */
export function simulcastProblem(sdp: string): string | undefined {
  for (const rids of ridLinesBySection(sdp)) {
    if (rids.length > MAX_SIMULCAST_LAYERS) return `more than ${MAX_SIMULCAST_LAYERS} simulcast layers in an m-line`;
    const seen = new Set<string>();
    for (const [id = '', direction] of rids) {
      if (!RID_PATTERN.test(id)) return 'a rid must be 1-16 letters, digits, - or _';
      if (direction !== 'send') return 'a publisher offer may only send its rids';
      if (seen.has(id)) return 'a rid appears twice in an m-line';
      seen.add(id);
    }
  }
  return undefined;
}

/**
 * `a=rid:<id> send` without restrictions (max-width=…, pt=…): werift reads everything after the id
 * as the direction, and the node chooses layers by what they really carry anyway.
 */
export function withPlainRidLines(sdp: string): string {
  return join(
    lines(sdp).map((line) => {
      if (!line.startsWith('a=rid:')) return line;
      const [id, direction] = line.slice('a=rid:'.length).trim().split(/\s+/);
      return `a=rid:${id} ${direction}`;
    }),
  );
}
