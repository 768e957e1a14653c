import type { Logger } from '../../../shared/src/log.ts';
import type { RoomMirror, RoomRepository } from '../store/room-repository.ts';

const OUTBOX_KEY = 'mirror-outbox';

/** The first retry after a failed mirror write, doubled per failure up to the maximum. */
const MIRROR_RETRY_MIN_MS = 1_000;
const MIRROR_RETRY_MAX_MS = 30_000;

/**
 * What the store has not seen yet, kept in the object's storage next to the state it describes.
 * `version` is new on every change, so that a change made while a write is in flight (even one that
 * wiped the room's storage meanwhile) is written again.
 */
interface Outbox {
  roomId: string;
  version: string;
  /** The room ended with its record gone: delete every key rather than write a mirror. */
  deleteRoom: boolean;
  attempts: number;
  /** When the alarm retries, after a failed write; null while no write has failed. */
  retryAt: number | null;
}

export interface StoreMirrorOptions {
  kv: SyncKvStorage;
  /** Called on every use: a store client must not be shared between two requests (see store/index.ts). */
  repository: () => RoomRepository;
  /** The live state as it is now: each write sends all of it, so a late write is never a stale one. */
  snapshot: () => RoomMirror;
  /** Makes sure the alarm fires at `at` (a failed write is retried from the alarm). */
  retryAt: (at: number) => Promise<void>;
  logger: () => Logger;
}

/**
 * The store's copy of one room's live state, written from an outbox in the object's storage. A
 * change records the outbox entry in the same synchronous step as the change itself; the write to
 * the store follows, and a failed write stays in the outbox for the alarm to retry until it lands.
 * Readers outside the object therefore see the room as it was at most one write ago, and converge
 * after any store failure.
 */
export class StoreMirror {
  readonly #options: StoreMirrorOptions;
  #flushing: Promise<void> | undefined;

  constructor(options: StoreMirrorOptions) {
    this.#options = options;
  }

  /** Records that the mirror of `roomId` is out of date, and writes it once the current step ends. */
  changed(roomId: string, options: { deleteRoom?: boolean } = {}): void {
    this.#options.kv.put(OUTBOX_KEY, {
      roomId,
      version: crypto.randomUUID(),
      deleteRoom: options.deleteRoom ?? false,
      attempts: 0,
      retryAt: null,
    } satisfies Outbox);
    // After the current synchronous step: the changes it makes together are written together.
    void Promise.resolve().then(() => this.flush());
  }

  get pending(): boolean {
    return this.#outbox() !== undefined;
  }

  /** When a failed write is due for its retry. */
  get retryAt(): number | null {
    return this.#outbox()?.retryAt ?? null;
  }

  /** Writes until the outbox is empty or the store fails. One flush at a time; never throws. */
  flush(): Promise<void> {
    this.#flushing ??= this.#drain().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #drain(): Promise<void> {
    for (;;) {
      const outbox = this.#outbox();
      if (!outbox) return;
      try {
        const repository = this.#options.repository();
        if (outbox.deleteRoom) await repository.deleteRoom(outbox.roomId);
        else await repository.writeMirror(outbox.roomId, this.#options.snapshot());
      } catch (error) {
        await this.#failed(error);
        return;
      }
      if (this.#outbox()?.version === outbox.version) this.#options.kv.delete(OUTBOX_KEY);
    }
  }

  async #failed(error: unknown): Promise<void> {
    const outbox = this.#outbox();
    if (!outbox) return;
    const attempts = outbox.attempts + 1;
    const retryAt = Date.now() + Math.min(MIRROR_RETRY_MIN_MS * 2 ** (attempts - 1), MIRROR_RETRY_MAX_MS);
    this.#options.kv.put(OUTBOX_KEY, { ...outbox, attempts, retryAt } satisfies Outbox);
    this.#options
      .logger()
      .warn('store mirror write failed: the alarm retries it', { attempts, error: (error as Error)?.name });
    await this.#options.retryAt(retryAt);
  }

  #outbox(): Outbox | undefined {
    return this.#options.kv.get<Outbox>(OUTBOX_KEY);
  }
}
