import { DurableObject } from 'cloudflare:workers';
import type { Room } from '../../../shared/src/rest.ts';
import type { Env } from '../env.ts';
import type { Expiry } from './room-records.ts';
import type { RoomMirror } from './room-repository.ts';

type RoomRow = {
  id: string;
  name: string;
  max_publishers: number;
  created_at: string;
  expires_at: string;
  expires_at_ms: number;
};

/**
 * The embedded room store: one instance per room (`idFromName(roomId)`), holding that room and the
 * mirror of its live state (participants, publishers) in the instance's SQLite database. A Durable
 * Object runs one call at a time and SQLite calls are synchronous, so every method is atomic.
 *
 * Expiry: every write moves `expires_at` forward; reads treat an expired room as gone, and an alarm
 * wipes the instance's storage once the room has really expired.
 */
export class EmbeddedStore extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Tables exist only once a room was created here, so looking up a random id stores nothing. */
  private hasSchema: boolean;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.hasSchema =
      this.sql
        .exec<{ n: number }>("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'room'")
        .one().n > 0;
  }

  async createRoom(room: Room, expiry: Expiry): Promise<void> {
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS room (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, max_publishers INTEGER NOT NULL,
        created_at TEXT NOT NULL, expires_at TEXT NOT NULL, expires_at_ms INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS participants (id TEXT PRIMARY KEY, display TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS publishers (id TEXT PRIMARY KEY, display TEXT NOT NULL, streams TEXT NOT NULL);
    `);
    this.hasSchema = true;
    this.sql.exec(
      'INSERT INTO room (id, name, max_publishers, created_at, expires_at, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)',
      room.id,
      room.name,
      room.max_publishers,
      room.created_at,
      expiry.iso,
      expiry.ms,
    );
    await this.ctx.storage.setAlarm(expiry.ms);
  }

  getRoom(): Room | null {
    const row = this.liveRoom();
    if (!row) return null;
    return {
      id: row.id,
      name: row.name,
      max_publishers: row.max_publishers,
      created_at: row.created_at,
      expires_at: row.expires_at,
    };
  }

  touchRoom(expiry: Expiry): boolean {
    return this.writeIfLive(expiry, () => {});
  }

  async deleteRoom(): Promise<void> {
    await this.wipe();
  }

  /** Replaces the mirror in one transaction; a room that is gone keeps no mirror rows. */
  writeMirror(mirror: RoomMirror, expiry: Expiry): boolean {
    if (!this.hasSchema) return false;
    this.ctx.storage.transactionSync(() => {
      this.sql.exec('DELETE FROM participants');
      this.sql.exec('DELETE FROM publishers');
    });
    return this.writeIfLive(expiry, () => {
      for (const participant of mirror.participants) {
        this.sql.exec('INSERT INTO participants (id, display) VALUES (?, ?)', participant.id, participant.display);
      }
      for (const publisher of mirror.publishers) {
        this.sql.exec(
          'INSERT INTO publishers (id, display, streams) VALUES (?, ?, ?)',
          publisher.id,
          publisher.display,
          JSON.stringify(publisher.streams),
        );
      }
    });
  }

  /** A round trip through the Durable Object runtime and its storage, for /health. */
  ping(): number {
    return this.sql.exec<{ one: number }>('SELECT 1 AS one').one().one;
  }

  /** Deletes the room once it has expired; when activity extended it, waits for the new expiry. */
  override async alarm(): Promise<void> {
    const row = this.roomRow();
    if (row && row.expires_at_ms > Date.now()) {
      await this.ctx.storage.setAlarm(row.expires_at_ms);
      return;
    }
    await this.wipe();
  }

  private roomRow(): RoomRow | undefined {
    if (!this.hasSchema) return undefined;
    return this.sql.exec<RoomRow>('SELECT * FROM room').toArray()[0];
  }

  private liveRoom(): RoomRow | undefined {
    const row = this.roomRow();
    return row && row.expires_at_ms > Date.now() ? row : undefined;
  }

  /** Runs a write on a live room and moves its expiry forward (the alarm catches up when it fires). */
  private writeIfLive(expiry: Expiry, write: () => void): boolean {
    if (!this.liveRoom()) return false;
    this.ctx.storage.transactionSync(() => {
      write();
      this.sql.exec('UPDATE room SET expires_at = ?, expires_at_ms = ?', expiry.iso, expiry.ms);
    });
    return true;
  }

  private async wipe(): Promise<void> {
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.hasSchema = false;
  }
}
