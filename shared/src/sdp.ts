import { z } from 'zod';
import { LIMITS, utf8Length } from './limits.ts';

/** An SDP blob: non-empty, ≤ 64 KiB, and at least shaped like SDP (starts with `v=0`). */
export const SdpSchema = z
  .string()
  .min(1)
  .refine((sdp) => utf8Length(sdp) <= LIMITS.sdpMaxBytes, { message: 'SDP is larger than 64 KiB' })
  .refine((sdp) => sdp.startsWith('v=0'), { message: 'SDP must start with v=0' });
