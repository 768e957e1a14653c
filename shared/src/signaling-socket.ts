/**
 * Facts of the signaling WebSocket that both ends rely on. No zod here, so that the browser SDK
 * can import it.
 */

/**
 * The subprotocol that carries the token: `new WebSocket(url, ['truegather.v1', token])` keeps the
 * token out of URLs and access logs. The server selects it in its answer.
 */
export const SIGNALING_SUBPROTOCOL = 'truegather.v1';

/** Close codes the server sends. */
export const CLOSE_CODES = {
  /** The participant left, or the room closed. */
  normal: 1000,
  /** The socket stayed silent past the ping timeout. */
  goingAway: 1001,
  /** Rate limit exceeded, or no join_room in time. */
  policyViolation: 1008,
  /** A frame above the hard cap. */
  messageTooBig: 1009,
  /** A newer socket of the same participant took over (another tab): do not reconnect. */
  replaced: 4000,
  /** An admin removed the participant: its tokens are refused from now on. */
  removed: 4001,
} as const;

/** Closes after which a client must not reconnect: reconnecting would undo what the close meant. */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CLOSE_CODES.normal,
  CLOSE_CODES.policyViolation,
  CLOSE_CODES.replaced,
  CLOSE_CODES.removed,
]);
