import { z } from 'zod';
import { LIMITS } from './limits.ts';

const IceUrlSchema = z
  .string()
  .max(LIMITS.iceServerUrlMaxChars)
  .regex(/^(stun|stuns|turn|turns):/, 'must be a stun:, stuns:, turn: or turns: URL');

/** An RTCIceServer as browsers take it. TURN entries carry ephemeral REST-API credentials. */
export const IceServerSchema = z.object({
  urls: z.union([IceUrlSchema, z.array(IceUrlSchema).min(1).max(8)]),
  username: z.string().max(256).optional(),
  credential: z.string().max(256).optional(),
});
export type IceServer = z.infer<typeof IceServerSchema>;

export const IceServersSchema = z.array(IceServerSchema).max(8);

/** RTCIceCandidateInit as browsers produce it; `null` (end of candidates) is allowed where it is used. */
export const IceCandidateSchema = z.object({
  candidate: z.string().max(LIMITS.candidateMaxChars),
  sdpMid: z.string().max(64).nullable().optional(),
  sdpMLineIndex: z.number().int().min(0).max(1024).nullable().optional(),
  usernameFragment: z.string().max(256).nullable().optional(),
});
export type IceCandidate = z.infer<typeof IceCandidateSchema>;
