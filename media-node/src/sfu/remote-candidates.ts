import type { RTCPeerConnection } from 'werift';
import type { IceCandidate } from '../../../shared/src/ice.ts';
import { MediaNodeError } from '../errors.ts';
import { isMdnsCandidate } from './sdp-text.ts';

/**
 * Adds a trickled browser candidate; `null` (or an empty candidate) ends the candidates. mDNS
 * candidates are skipped (see {@link isMdnsCandidate}). Before the remote description is set, werift
 * keeps candidates and applies them with it.
 */
export async function addRemoteCandidate(pc: RTCPeerConnection, candidate: IceCandidate | null): Promise<void> {
  if (candidate !== null && candidate.candidate !== '' && isMdnsCandidate(candidate.candidate)) return;
  try {
    await pc.addIceCandidate(
      candidate === null
        ? null
        : {
            candidate: candidate.candidate,
            sdpMid: candidate.sdpMid ?? undefined,
            sdpMLineIndex: candidate.sdpMLineIndex ?? undefined,
            usernameFragment: candidate.usernameFragment ?? undefined,
          },
    );
  } catch (error) {
    throw new MediaNodeError(
      400,
      'bad_request',
      `ICE candidate rejected: ${error instanceof Error ? error.message.slice(0, 200) : 'invalid'}`,
    );
  }
}
