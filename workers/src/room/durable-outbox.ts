import type { Logger } from '../../../shared/src/log.ts';

/** The first retry after a failed hand-over, doubled per failure up to the maximum. */
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

/** What an outbox entry records about its failed hand-overs. */
export interface RetryState {
  attempts: number;
  /** When the alarm retries, after a failed hand-over; null while none has failed. */
  retryAt: number | null;
}

export interface DurableOutboxOptions {
  kv: SyncKvStorage;
  /** Makes sure the alarm fires at `at` (a failed hand-over is retried from the alarm). */
  retryAt: (at: number) => Promise<void>;
  logger: () => Logger;
}

/**
 * Something the room owes a destination outside it, kept in the room's storage until the destination
 * has it: recorded in the same synchronous step as the change it reports, handed over right after
 * that step, and retried from the room's alarm (1, 2, 4 … 30 s) while the destination fails. The
 * store mirror and the webhook outbox are both one; each says how its entry is handed over.
 */
export abstract class DurableOutbox<Entry extends RetryState, Options extends DurableOutboxOptions> {
  protected readonly options: Options;
  readonly #key: string;
  #flushing: Promise<void> | undefined;

  constructor(key: string, options: Options) {
    this.#key = key;
    this.options = options;
  }

  /** When a failed hand-over is due for its retry. */
  get retryAt(): number | null {
    return this.entry()?.retryAt ?? null;
  }

  /** Hands over until the outbox is empty or the destination fails. One flush at a time; never throws. */
  flush(): Promise<void> {
    this.#flushing ??= this.drain().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  /** Hands the stored entry over until none is left, calling `failed` and returning when it fails. */
  protected abstract drain(): Promise<void>;

  protected entry(): Entry | undefined {
    return this.options.kv.get<Entry>(this.#key);
  }

  /** Stores the entry; it is handed over once the current synchronous step ends, with whatever else that step records. */
  protected enqueue(entry: Entry): void {
    this.options.kv.put(this.#key, entry);
    void Promise.resolve().then(() => this.flush());
  }

  protected replace(entry: Entry | undefined): void {
    if (entry) this.options.kv.put(this.#key, entry);
    else this.options.kv.delete(this.#key);
  }

  /** Counts a failed hand-over of what is stored now (it may have grown meanwhile) and asks the alarm to retry. */
  protected async failed(error: unknown, message: string): Promise<void> {
    const entry = this.entry();
    if (!entry) return;
    const attempts = entry.attempts + 1;
    const retryAt = Date.now() + Math.min(RETRY_MIN_MS * 2 ** (attempts - 1), RETRY_MAX_MS);
    this.options.kv.put(this.#key, { ...entry, attempts, retryAt });
    this.options.logger().warn(message, { attempts, error: error instanceof Error ? error.name : typeof error });
    await this.options.retryAt(retryAt);
  }
}
