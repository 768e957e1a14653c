/**
 * A per-connection token bucket kept in the socket's attachment: it refills from timestamps, so it
 * needs no timer and survives hibernation.
 */
export interface TokenBucket {
  tokens: number;
  updatedAt: number;
}

export interface RateLimit {
  /** Frames a client may send in a burst (a browser trickles ~10–20 ICE candidates at once). */
  burst: number;
  refillPerSecond: number;
  /** Consecutive refused frames after which the socket is closed with 1008. */
  refusalsBeforeClose: number;
}

export const SIGNALING_RATE_LIMIT: RateLimit = { burst: 40, refillPerSecond: 20, refusalsBeforeClose: 20 };

export function fullBucket(now: number, limit: RateLimit = SIGNALING_RATE_LIMIT): TokenBucket {
  return { tokens: limit.burst, updatedAt: now };
}

/** Takes one token if there is one; returns the updated bucket either way. */
export function takeToken(
  bucket: TokenBucket,
  now: number,
  limit: RateLimit = SIGNALING_RATE_LIMIT,
): { allowed: boolean; bucket: TokenBucket } {
  const elapsedSeconds = Math.max(0, now - bucket.updatedAt) / 1000;
  const tokens = Math.min(limit.burst, bucket.tokens + elapsedSeconds * limit.refillPerSecond);
  if (tokens < 1) return { allowed: false, bucket: { tokens, updatedAt: now } };
  return { allowed: true, bucket: { tokens: tokens - 1, updatedAt: now } };
}
