/**
 * A token bucket that refills from timestamps, so it needs no timer and survives hibernation: a
 * participant's frame allowance (in its socket's attachment, and in storage between sockets) and its
 * upgrade allowance (in storage).
 */
export interface TokenBucket {
  tokens: number;
  updatedAt: number;
}

export interface BucketLimit {
  burst: number;
  refillPerSecond: number;
}

export interface RateLimit extends BucketLimit {
  /** Frames a client may send in a burst (a browser trickles ~10–20 ICE candidates at once). */
  burst: number;
  /** Consecutive refused frames after which the socket is closed with 1008. */
  refusalsBeforeClose: number;
}

export const SIGNALING_RATE_LIMIT: RateLimit = { burst: 40, refillPerSecond: 20, refusalsBeforeClose: 20 };

/**
 * Frames of one participant waiting behind its earlier ones (which may await the media node for
 * seconds): beyond this they are refused with `rate_limited` rather than queued in memory.
 */
export const MAX_QUEUED_FRAMES = 32;

/**
 * Socket upgrades of one participant (one token): a burst of 10, then one every 6 s. A client that
 * reconnects with backoff never meets it; one that reconnects in a loop gets 429.
 */
export const UPGRADE_RATE_LIMIT: BucketLimit = { burst: 10, refillPerSecond: 1 / 6 };

/** Sockets one participant may hold open at once, counting replaced ones whose peer has not completed the close. */
export const MAX_SOCKETS_PER_PARTICIPANT = 3;

export function fullBucket(now: number, limit: BucketLimit = SIGNALING_RATE_LIMIT): TokenBucket {
  return { tokens: limit.burst, updatedAt: now };
}

/** Takes one token if there is one; returns the updated bucket either way. */
export function takeToken(
  bucket: TokenBucket,
  now: number,
  limit: BucketLimit = SIGNALING_RATE_LIMIT,
): { allowed: boolean; bucket: TokenBucket } {
  const elapsedSeconds = Math.max(0, now - bucket.updatedAt) / 1000;
  const tokens = Math.min(limit.burst, bucket.tokens + elapsedSeconds * limit.refillPerSecond);
  if (tokens < 1) return { allowed: false, bucket: { tokens, updatedAt: now } };
  return { allowed: true, bucket: { tokens: tokens - 1, updatedAt: now } };
}
