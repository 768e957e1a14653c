import type { SignalingSocket } from './signaling-socket.ts';

/**
 * A round trip on `socket` that the room answers with an error and no side effect. Frames to one
 * socket arrive in order, so once the reply is in, every frame sent to it before is in too: tests
 * use it before asserting that some event did NOT arrive.
 */
export async function roundTrip(socket: SignalingSocket): Promise<void> {
  const reply = await socket.request('unsubscribe', { feeds: ['AAAAAAAAAAAAAAAAAAAAAA'] });
  if (reply.type !== 'error') throw new Error(`barrier: unexpected ${reply.type}`);
}

/** Polls `check` until it returns a value (not a sleep: it stops as soon as the condition holds). */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
