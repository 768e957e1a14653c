/** A minimal typed event emitter that runs in browsers and Node alike. */
export class TypedEmitter<Events extends Record<string, unknown>> {
  readonly #handlers = new Map<keyof Events, Set<(payload: never) => void>>();

  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof Events>(event: K, handler: (payload: Events[K]) => void): () => void {
    let set = this.#handlers.get(event);
    if (!set) {
      set = new Set();
      this.#handlers.set(event, set);
    }
    set.add(handler as (payload: never) => void);
    return () => set.delete(handler as (payload: never) => void);
  }

  /** Resolves with the next payload of `event`, or rejects after `timeoutMs`. */
  once<K extends keyof Events>(event: K, timeoutMs = 10_000): Promise<Events[K]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out waiting for ${String(event)}`));
      }, timeoutMs);
      const off = this.on(event, (payload) => {
        clearTimeout(timer);
        off();
        resolve(payload);
      });
    });
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const handler of this.#handlers.get(event) ?? []) (handler as (payload: Events[K]) => void)(payload);
  }
}
