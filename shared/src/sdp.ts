import { z } from 'zod';
import { LIMITS, utf8Length } from './limits.ts';

/** An SDP blob of at most `maxBytes`, at least shaped like SDP (starts with `v=0`). */
function sdpOfAtMost(maxBytes: number) {
  return z
    .string()
    .min(1)
    .refine((sdp) => utf8Length(sdp) <= maxBytes, { message: `SDP is larger than ${maxBytes / 1024} KiB` })
    .refine((sdp) => sdp.startsWith('v=0'), { message: 'SDP must start with v=0' });
}

/** An SDP blob: non-empty, ≤ 64 KiB, and at least shaped like SDP (starts with `v=0`). */
export const SdpSchema = sdpOfAtMost(LIMITS.sdpMaxBytes);

/** A relay's SDP (node to node): one m-line per layer of every relayed track, ≤ 256 KiB. */
export const RelaySdpSchema = sdpOfAtMost(LIMITS.relaySdpMaxBytes);
