import type { RoomMirror, RoomRepository } from '../store/room-repository.ts';
import { DurableOutbox, type DurableOutboxOptions, type RetryState } from './durable-outbox.ts';

const OUTBOX_KEY = 'mirror-outbox';

/**
 * What the store has not seen yet, kept in the object's storage next to the state it describes.
 * `version` is new on every change, so that a change made while a write is in flight (even one that
 * wiped the room's storage meanwhile) is written again.
 */
interface Outbox extends RetryState {
  roomId: string;
  version: string;
  /** The room ended with its record gone: delete every key rather than write a mirror. */
  deleteRoom: boolean;
}

export interface StoreMirrorOptions extends DurableOutboxOptions {
  /** Called on every use: a store client must not be shared between two requests (see store/index.ts). */
  repository: () => RoomRepository;
  /** The live state as it is now: each write sends all of it, so a late write is never a stale one. */
  snapshot: () => RoomMirror;
}

/**
 * The store's copy of one room's live state, written from an outbox in the object's storage. A
 * change records the outbox entry in the same synchronous step as the change itself; the write to
 * the store follows, and a failed write stays in the outbox for the alarm to retry until it lands.
 * Readers outside the object therefore see the room as it was at most one write ago, and converge
 * after any store failure.
 */
export class StoreMirror extends DurableOutbox<Outbox, StoreMirrorOptions> {
  constructor(options: StoreMirrorOptions) {
    super(OUTBOX_KEY, options);
  }

  /** Records that the mirror of `roomId` is out of date, and writes it once the current step ends. */
  changed(roomId: string, options: { deleteRoom?: boolean } = {}): void {
    this.enqueue({
      roomId,
      version: crypto.randomUUID(),
      deleteRoom: options.deleteRoom ?? false,
      attempts: 0,
      retryAt: null,
    });
  }

  protected async drain(): Promise<void> {
    for (;;) {
      const outbox = this.entry();
      if (!outbox) return;
      try {
        const repository = this.options.repository();
        if (outbox.deleteRoom) await repository.deleteRoom(outbox.roomId);
        else await repository.writeMirror(outbox.roomId, this.options.snapshot());
      } catch (error) {
        await this.failed(error, 'store mirror write failed: the alarm retries it');
        return;
      }
      if (this.entry()?.version === outbox.version) this.replace(undefined);
    }
  }
}
