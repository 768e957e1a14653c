import type { RefreshTokenResponse } from '../../shared/src/rest.ts';

/** Options of a `TokenKeeper`. */
export interface TokenKeeperOptions {
  /** The edge's base URL, e.g. `http://localhost:8080`. */
  baseUrl: string;
  /** The room the token is for. */
  roomId: string;
  /** The participant token to keep fresh. */
  token: string;
  /** When `token` expires (`expires_at` of the join or the last refresh). */
  expiresAt: Date;
  /** Called with each fresh token (the signaling connection reconnects with it). */
  onToken: (token: string) => void;
  /** Called when a refresh fails (it is retried while the current token is still valid). */
  onError?: (error: Error) => void;
  /** The `fetch` used for refreshes (default: the global one). */
  fetch?: typeof fetch;
}

/** Retry a failed refresh this often, while the current token is still valid. */
const RETRY_MS = 5_000;

/**
 * Keeps a participant token fresh: it is refreshed (`POST /api/v1/rooms/:id/token`) when two thirds
 * of its life have passed, so a reconnect late in a long call still carries a valid token.
 */
export class TokenKeeper {
  #token: string;
  #expiresAt: Date;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  readonly #options: TokenKeeperOptions;

  constructor(options: TokenKeeperOptions) {
    this.#options = options;
    this.#token = options.token;
    this.#expiresAt = options.expiresAt;
  }

  /** The current token (the freshest one). */
  get token(): string {
    return this.#token;
  }

  /** Schedules the refresh at two thirds of the token's remaining life. */
  start(): void {
    this.#schedule(Math.max(1_000, ((this.#expiresAt.getTime() - Date.now()) * 2) / 3));
  }

  /** Stops refreshing (the participant left or was removed). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#refresh(), delayMs);
  }

  async #refresh(): Promise<void> {
    const fetchImpl = this.#options.fetch ?? fetch;
    try {
      const response = await fetchImpl(
        `${this.#options.baseUrl}/api/v1/rooms/${encodeURIComponent(this.#options.roomId)}/token`,
        { method: 'POST', headers: { authorization: `Bearer ${this.#token}` } },
      );
      if (!response.ok) throw new Error(`token refresh failed: HTTP ${response.status}`);
      const body = (await response.json()) as RefreshTokenResponse;
      if (this.#stopped) return;
      this.#token = body.token;
      this.#expiresAt = new Date(body.expires_at);
      this.#options.onToken(body.token);
      this.start();
    } catch (error) {
      this.#options.onError?.(error instanceof Error ? error : new Error(String(error)));
      const remaining = this.#expiresAt.getTime() - Date.now();
      if (remaining > 0) this.#schedule(Math.min(RETRY_MS, remaining / 2));
    }
  }
}
