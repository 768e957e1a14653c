/**
 * Soak: CLIENTS WebSocket clients across ROOMS rooms for DURATION, on loopback, through the real stack
 * (wrangler dev, a media node, redis-server behind the local Upstash endpoint), with churn: members
 * leave and new ones join all along, a werift publisher publishes in every MEDIA_EVERY-th room and
 * members there subscribe to it with werift peers (and leave with them). It stops by itself and
 * reports, in bench/results/soak.json:
 *   - events delivered against events expected: each room runs one operation at a time, so every
 *     participant_joined / participant_left / publisher_joined / publisher_left that each member must
 *     receive is known; an event nobody expected counts as unexpected;
 *   - errors: error replies, failed requests, missing events (after a timeout), sockets that dropped;
 *   - memory once the clients are in, along the churn, and at its end: the media node's RSS and the
 *     Worker isolate's live JS heap (a heap snapshot over wrangler's inspector: every room's Durable
 *     Object lives there), each against a stated bound; workerd's RSS, reported per join but not
 *     bounded, since it grows by itself for a trivial Worker too (bench/workerd-memory.ts);
 *   - the machine's load average at the start and the end of the churn;
 *   - after everyone left and the rooms' TTL (short here): no room key in Redis, nothing in any room's
 *     Durable Object storage, no room on the media node.
 *
 *   npm run soak -- --clients 300 --rooms 30 --duration 300
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createClient } from 'redis';
import WebSocket from 'ws';
import { expectReply, SignalingConnection } from '../client/src/signaling-connection.ts';
import { freePort, generateSecret, startStack } from '../scripts/stack.ts';
import { startUpstashCompatServer } from '../scripts/upstash-compat-server.ts';
import { newId } from '../shared/src/ids.ts';
import { MEDIA_NODE_REGISTRY_KEY_PREFIX, MEDIA_NODE_REGISTRY_SET } from '../shared/src/media-control.ts';
import type { Room } from '../shared/src/rest.ts';
import type { ServerFrame } from '../shared/src/signaling.ts';
import { startRedisServer } from '../test/support/redis-server.ts';
import { TestPublisher, TestSubscriber, waitFor } from '../test/support/werift-peers.ts';
import { mintParticipantToken } from './participant-token.ts';
import { loadAverage, stackMemory } from './process-memory.ts';
import { workerHeap } from './worker-heap.ts';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '300' },
    rooms: { type: 'string', default: '30' },
    /** Seconds of churn. */
    duration: { type: 'string', default: '300' },
    /** Every n-th room has a werift publisher and werift subscribers. */
    'media-every': { type: 'string', default: '3' },
    /** ROOM_TTL_SECONDS and JWT_EXPIRY_SECONDS of the stack: how long until nothing may be left. */
    'room-ttl': { type: 'string', default: '60' },
    /** Allowed RSS growth of the media node between the start and the end of the churn. */
    'memory-bound-mb': { type: 'string', default: '150' },
    /** Allowed growth of the Worker isolate's live JS heap (every room's Durable Object lives there). */
    'heap-bound-mb': { type: 'string', default: '20' },
  },
});
const CLIENTS = Number(args.clients);
const ROOMS = Number(args.rooms);
const DURATION_MS = Number(args.duration) * 1000;
const MEDIA_EVERY = Number(args['media-every']);
const ROOM_TTL_SECONDS = Number(args['room-ttl']);
const MEMORY_BOUND_MB = Number(args['memory-bound-mb']);
const HEAP_BOUND_MB = Number(args['heap-bound-mb']);
const PER_ROOM = Math.max(2, Math.round(CLIENTS / ROOMS));
/** Subscribers with a werift peer per media room at a time. */
const SUBSCRIBERS_PER_MEDIA_ROOM = 2;
/** How long an expected event may take before it counts as missing. */
const EVENT_TIMEOUT_MS = 20_000;
/** Pause between a room's operations: with 30 rooms, ~30 operations a second in all. */
const OPERATION_PAUSE_MS = { min: 300, max: 1_500 };
/** The empty room lingers 60 s, its leave markers live a token's life, the alarm needs a round. */
const CLEANUP_TIMEOUT_MS = (ROOM_TTL_SECONDS * 2 + 180) * 1000;

const COUNTED = new Set(['participant_joined', 'participant_left', 'publisher_joined', 'publisher_left']);
type CountedFrame = Extract<
  ServerFrame,
  { type: 'participant_joined' | 'participant_left' | 'publisher_joined' | 'publisher_left' }
>;

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const resultsFile = join(root, 'bench', 'results', 'soak.json');
const durableObjectDir = join(root, '.wrangler', 'state', 'v3', 'do', 'truegather-edge-RoomCoordinator');

const totals = { expected: 0, delivered: 0, unexpected: 0, joins: 0, leaves: 0, publishes: 0, subscribes: 0 };
const errors: string[] = [];
const recordError = (what: string) => {
  errors.push(what);
  if (errors.length <= 20) console.error(`error: ${what}`);
};

/** Who a counted frame is about. */
function subjectOf(frame: CountedFrame): string {
  switch (frame.type) {
    case 'participant_joined':
    case 'participant_left':
      return frame.payload.participant.id;
    case 'publisher_joined':
      return frame.payload.publisher.id;
    case 'publisher_left':
      return frame.payload.publisher_id;
  }
}

/** `ws` with the client address wrangler's rate limiter keys on: one address per room, as for real users. */
function webSocketFrom(address: string): typeof globalThis.WebSocket {
  return class extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols, { headers: { 'CF-Connecting-IP': address } });
    }
  } as unknown as typeof globalThis.WebSocket;
}

/** One member of a room: the SDK's signaling connection, and the events it is owed. */
class Member {
  readonly id: string;
  readonly connection: SignalingConnection;
  subscriber: TestSubscriber | undefined;
  publisher: TestPublisher | undefined;
  #owed: { type: string; about: string; settle: () => void }[] = [];
  #leaving = false;

  constructor(id: string, url: string, token: string, address: string) {
    this.id = id;
    this.connection = new SignalingConnection({
      url,
      token,
      WebSocket: webSocketFrom(address),
      reconnect: { giveUpAfterMs: 0, initialDelayMs: 100, maxDelayMs: 100 },
    });
    this.connection.on('frame', (frame) => this.#onFrame(frame));
    this.connection.on('state', (state) => {
      if ((state === 'reconnecting' || state === 'closed') && !this.#leaving) recordError(`socket dropped (${state})`);
    });
  }

  /** Registers an event this member must receive; resolves when it does, or records it missing. */
  owe(type: CountedFrame['type'], about: string): Promise<void> {
    totals.expected++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#owed = this.#owed.filter((owed) => owed !== entry);
        recordError(`${type} not delivered within ${EVENT_TIMEOUT_MS} ms`);
        resolve();
      }, EVENT_TIMEOUT_MS);
      const entry = {
        type,
        about,
        settle: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.#owed.push(entry);
    });
  }

  #onFrame(frame: ServerFrame): void {
    if (frame.type === 'error') {
      recordError(`error frame: ${frame.payload.code}`);
      return;
    }
    if (frame.type === 'subscribe_offer' && this.subscriber) {
      // The node renegotiated (a feed ended): answer as the SDK would.
      void this.#answer(frame.payload.sdp);
      return;
    }
    if (!COUNTED.has(frame.type)) return;
    const counted = frame as CountedFrame;
    const about = subjectOf(counted);
    const index = this.#owed.findIndex((owed) => owed.type === counted.type && owed.about === about);
    if (index === -1) {
      totals.unexpected++;
      recordError(`unexpected ${counted.type}`);
      return;
    }
    totals.delivered++;
    const [owed] = this.#owed.splice(index, 1);
    owed?.settle();
  }

  async #answer(sdp: string): Promise<void> {
    try {
      const answer = (await this.subscriber?.answer(sdp)) ?? '';
      expectReply(await this.connection.request('subscribe_answer', { sdp: answer }), 'ack');
    } catch (error) {
      recordError(`renegotiation answer failed: ${(error as Error).message}`);
    }
  }

  async leave(): Promise<void> {
    this.#leaving = true;
    try {
      expectReply(await this.connection.request('leave', {}), 'ack');
    } catch (error) {
      recordError(`leave failed: ${(error as Error).message}`);
    }
    this.connection.close();
    await this.subscriber?.close();
    await this.publisher?.close();
  }
}

/** A room's churn: one operation at a time, so that who must hear of it is exactly known. */
class RoomRun {
  readonly members = new Map<string, Member>();
  readonly #room: Room;
  readonly #index: number;
  readonly #edgeUrl: string;
  readonly #jwtSecret: Uint8Array;
  readonly #media: boolean;
  #publisher: Member | undefined;
  #joined = 0;

  constructor(room: Room, index: number, edgeUrl: string, jwtSecret: Uint8Array) {
    this.#room = room;
    this.#index = index;
    this.#edgeUrl = edgeUrl;
    this.#jwtSecret = jwtSecret;
    this.#media = MEDIA_EVERY > 0 && index % MEDIA_EVERY === 0;
  }

  get id(): string {
    return this.#room.id;
  }

  get subscribers(): number {
    return [...this.members.values()].filter((member) => member.subscriber).length;
  }

  async join(): Promise<Member> {
    const display = `soak ${this.#index}.${this.#joined++}`;
    const address = `10.${Math.floor(this.#index / 250)}.${this.#index % 250}.1`;
    const url = `${this.#edgeUrl.replace(/^http/, 'ws')}/ws?room_id=${this.#room.id}`;
    const id = newId();
    const token = await mintParticipantToken(this.#jwtSecret, {
      roomId: this.#room.id,
      participantId: id,
      display,
      lifetimeSeconds: ROOM_TTL_SECONDS,
    });
    const member = new Member(id, url, token, address);
    const owed = [...this.members.values()].map((other) => other.owe('participant_joined', member.id));
    await member.connection.open();
    expectReply(await member.connection.request('join_room', { room_id: this.#room.id, display }), 'joined');
    this.members.set(member.id, member);
    await Promise.all(owed);
    totals.joins++;
    return member;
  }

  async leave(member: Member): Promise<void> {
    this.members.delete(member.id);
    const others = [...this.members.values()];
    const owed = others.map((other) => other.owe('participant_left', member.id));
    if (member === this.#publisher) {
      owed.push(...others.map((other) => other.owe('publisher_left', member.id)));
      this.#publisher = undefined;
    }
    await member.leave();
    await Promise.all(owed);
    totals.leaves++;
  }

  async publish(member: Member): Promise<void> {
    member.publisher = await TestPublisher.create();
    const owed = [...this.members.values()]
      .filter((other) => other !== member)
      .map((other) => other.owe('publisher_joined', member.id));
    const answer = expectReply(
      await member.connection.request('publish_offer', { sdp: await member.publisher.createOffer() }),
      'publish_answer',
    );
    await member.publisher.setAnswer(answer.payload.sdp);
    this.#publisher = member;
    await Promise.all(owed);
    totals.publishes++;
  }

  async subscribe(member: Member, feed: string): Promise<void> {
    member.subscriber = new TestSubscriber();
    const offer = expectReply(await member.connection.request('subscribe', { feeds: [feed] }), 'subscribe_offer');
    const answer = await member.subscriber.answer(offer.payload.sdp);
    expectReply(await member.connection.request('subscribe_answer', { sdp: answer }), 'ack');
    await waitFor(() => (member.subscriber?.totalPackets() ?? 0) > 0, {
      timeoutMs: EVENT_TIMEOUT_MS,
      message: 'media at the subscriber',
    });
    totals.subscribes++;
  }

  async fill(): Promise<void> {
    while (this.members.size < PER_ROOM) await this.#attempt('join', () => this.join());
    if (this.#media) {
      const publisher = this.members.values().next().value;
      if (publisher) await this.#attempt('publish', () => this.publish(publisher));
    }
  }

  /** Churn until `until`: leave, join, subscribe, keeping the room around PER_ROOM members. */
  async churn(until: number): Promise<void> {
    while (Date.now() < until) {
      await pause();
      const candidates = [...this.members.values()].filter((member) => member !== this.#publisher);
      const pick = candidates[Math.floor(Math.random() * candidates.length)];
      const publisher = this.#publisher;
      if (publisher && pick && !pick.subscriber && this.subscribers < SUBSCRIBERS_PER_MEDIA_ROOM) {
        await this.#attempt('subscribe', () => this.subscribe(pick, publisher.id));
      } else if (this.members.size > PER_ROOM - 1 && pick && Math.random() < 0.5) {
        await this.#attempt('leave', () => this.leave(pick));
      } else if (this.members.size < PER_ROOM + 1) {
        await this.#attempt('join', () => this.join());
      }
    }
  }

  /** Everyone leaves, the publisher last. */
  async empty(): Promise<void> {
    const order = [...this.members.values()].sort(
      (a, b) => Number(a === this.#publisher) - Number(b === this.#publisher),
    );
    for (const member of order) await this.#attempt('leave', () => this.leave(member));
  }

  async #attempt(what: string, operation: () => Promise<unknown>): Promise<void> {
    try {
      await operation();
    } catch (error) {
      recordError(`${what} failed: ${(error as Error).message}`);
    }
  }
}

const pause = () =>
  new Promise((resolve) =>
    setTimeout(resolve, OPERATION_PAUSE_MS.min + Math.random() * (OPERATION_PAUSE_MS.max - OPERATION_PAUSE_MS.min)),
  );

/** The keys left in the Durable Object storage of each room (miniflare keeps one SQLite file per object, with its name). */
function durableObjectLeftovers(roomIds: Set<string>): { objects: number; keys: string[] } {
  let objects = 0;
  const keys: string[] = [];
  for (const file of readdirSync(durableObjectDir)) {
    if (!file.endsWith('.sqlite')) continue;
    const db = new DatabaseSync(join(durableObjectDir, file), { readOnly: true });
    try {
      const names = db.prepare('SELECT name FROM __miniflare_do_name').all();
      if (!names.some((row) => roomIds.has(String(row.name)))) continue;
      objects++;
      for (const row of db.prepare('SELECT key FROM _cf_KV').all()) keys.push(String(row.key).split(':')[0] ?? '');
    } catch {
      // An object that never stored anything has no tables.
    } finally {
      db.close();
    }
  }
  return { objects, keys };
}

async function main(): Promise<void> {
  console.log(
    `soak: ${PER_ROOM * ROOMS} clients in ${ROOMS} rooms for ${DURATION_MS / 1000} s, ROOM_TTL_SECONDS=${ROOM_TTL_SECONDS}`,
  );
  const redis = await startRedisServer();
  const upstashToken = generateSecret();
  const endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token: upstashToken, logLevel: 'error' });
  // KEYS is not among the commands the Upstash endpoint serves: ask redis-server itself.
  const direct = createClient({ url: redis.url });
  await direct.connect();
  const serverErrors: string[] = [];
  const [edgePort, mediaPort] = [await freePort(), await freePort()];
  const stack = await startStack({
    edgeHost: '127.0.0.1',
    edgePort,
    mediaHost: '127.0.0.1',
    mediaPort,
    env: {
      MEDIA_RTC_LISTEN_IP: '127.0.0.1',
      LOG_LEVEL: 'warn',
      ROOM_TTL_SECONDS: String(ROOM_TTL_SECONDS),
      JWT_EXPIRY_SECONDS: String(ROOM_TTL_SECONDS),
      UPSTASH_REDIS_REST_URL: endpoint.url,
      UPSTASH_REDIS_REST_TOKEN: upstashToken,
    },
    output: (line) => {
      if (/"level":"error"/.test(line)) serverErrors.push(line.slice(0, 300));
    },
  });
  const jwtSecret = new TextEncoder().encode(stack.secrets.jwtSecret);
  try {
    const rooms: RoomRun[] = [];
    for (let index = 0; index < ROOMS; index++) {
      const response = await fetch(`${stack.edgeUrl}/api/v1/rooms`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'CF-Connecting-IP': '10.255.0.1' },
        body: JSON.stringify({ name: `soak ${index}`, max_publishers: 2 }),
      });
      if (response.status !== 201) throw new Error(`room creation failed: ${response.status}`);
      rooms.push(new RoomRun((await response.json()) as Room, index, stack.edgeUrl, jwtSecret));
    }
    await Promise.all(rooms.map((room) => room.fill()));
    const clientsAtStart = rooms.reduce((sum, room) => sum + room.members.size, 0);
    const heapAtStart = await workerHeap(stack.edgeInspectorPort);
    const memoryAtStart = stackMemory(edgePort);
    const loadAtStart = loadAverage();
    console.log(
      `${clientsAtStart} clients in; memory ${JSON.stringify({ ...memoryAtStart, ...heapAtStart })}; churning…`,
    );

    const churnStartedAt = Date.now();
    const joinsAtStart = totals.joins;
    const samples = [{ t_s: 0, joins: 0, ...memoryAtStart }];
    const progress = setInterval(() => {
      const live = rooms.reduce((sum, room) => sum + room.members.size, 0);
      const sample = {
        t_s: Math.round((Date.now() - churnStartedAt) / 1000),
        joins: totals.joins - joinsAtStart,
        ...stackMemory(edgePort),
      };
      samples.push(sample);
      console.log(
        `  ${sample.t_s} s: ${live} clients, ${totals.delivered}/${totals.expected} events, ${errors.length} errors, memory ${JSON.stringify(sample)}`,
      );
    }, 30_000);
    await Promise.all(rooms.map((room) => room.churn(churnStartedAt + DURATION_MS)));
    clearInterval(progress);
    const memoryAtEnd = stackMemory(edgePort);
    const heapAtEnd = await workerHeap(stack.edgeInspectorPort);
    const loadAtEnd = loadAverage();
    const churnJoins = totals.joins - joinsAtStart;
    const clientsAtEnd = rooms.reduce((sum, room) => sum + room.members.size, 0);
    console.log(`churn over; memory ${JSON.stringify(memoryAtEnd)}; everyone leaves…`);
    await Promise.all(rooms.map((room) => room.empty()));
    const leftAt = Date.now();

    // Nothing may be left once the rooms' TTL and their tokens' life have passed.
    console.log('waiting until nothing is left (or the cleanup timeout)…');
    const roomKeys = async () => (await direct.keys('room:*')).length;
    const mediaRooms = async () =>
      ((await (await fetch(`${stack.mediaUrl}/health`)).json()) as { rooms: number }).rooms;
    const roomIds = new Set(rooms.map((room) => room.id));
    let leftovers = { redisRoomKeys: -1, objects: durableObjectLeftovers(roomIds), nodeRooms: -1 };
    try {
      await waitFor(
        async () => {
          leftovers = {
            redisRoomKeys: await roomKeys(),
            objects: durableObjectLeftovers(roomIds),
            nodeRooms: await mediaRooms(),
          };
          return leftovers.redisRoomKeys === 0 && leftovers.objects.keys.length === 0 && leftovers.nodeRooms === 0;
        },
        { timeoutMs: CLEANUP_TIMEOUT_MS, intervalMs: 5_000, message: 'nothing left' },
      );
    } catch {
      recordError(`leftovers after ${CLEANUP_TIMEOUT_MS / 1000} s: ${JSON.stringify(leftovers)}`);
    }
    const cleanSeconds = Math.round((Date.now() - leftAt) / 1000);
    const otherKeys = (await direct.keys('*')).filter(
      (key) => key !== MEDIA_NODE_REGISTRY_SET && !key.startsWith(MEDIA_NODE_REGISTRY_KEY_PREFIX),
    );

    const growth = Object.fromEntries(
      Object.entries(memoryAtEnd).map(([name, mb]) => [name, mb - memoryAtStart[name as keyof typeof memoryAtStart]]),
    ) as typeof memoryAtEnd;
    const heapGrowthMb = Math.round((heapAtEnd.live_mb - heapAtStart.live_mb) * 10) / 10;
    // workerd's RSS is not ours to bound: it grows by itself per WebSocket connection, for a trivial
    // Worker and Durable Object too, outside every isolate's heap (bench/workerd-memory.ts, README).
    // What our code keeps is the isolate's live heap, and the media node's memory.
    const withinBound = growth.media_node_mb <= MEMORY_BOUND_MB && heapGrowthMb <= HEAP_BOUND_MB;
    const report = {
      benchmark: 'soak',
      date: new Date().toISOString(),
      node: process.version,
      clients: clientsAtStart,
      clients_at_end_of_churn: clientsAtEnd,
      rooms: ROOMS,
      media_rooms: rooms.filter((_, index) => MEDIA_EVERY > 0 && index % MEDIA_EVERY === 0).length,
      duration_s: DURATION_MS / 1000,
      room_ttl_s: ROOM_TTL_SECONDS,
      operations: {
        joins: totals.joins,
        leaves: totals.leaves,
        publishes: totals.publishes,
        subscribes: totals.subscribes,
      },
      events: { expected: totals.expected, delivered: totals.delivered, unexpected: totals.unexpected },
      errors: errors.length,
      error_samples: errors.slice(0, 20),
      server_error_logs: serverErrors.length,
      server_error_samples: serverErrors.slice(0, 10),
      load_average: { start: loadAtStart, end: loadAtEnd },
      memory_mb: {
        start: memoryAtStart,
        end: memoryAtEnd,
        growth,
        media_node_bound_mb: MEMORY_BOUND_MB,
        worker_js_heap: {
          start_mb: heapAtStart.live_mb,
          end_mb: heapAtEnd.live_mb,
          growth_mb: heapGrowthMb,
          bound_mb: HEAP_BOUND_MB,
        },
        workerd_rss_kb_per_join: Math.round((growth.workerd_mb * 1024) / Math.max(1, churnJoins)),
        within_bound: withinBound,
        samples,
      },
      after_ttl: {
        seconds_until_clean: cleanSeconds,
        redis_room_keys: leftovers.redisRoomKeys,
        redis_other_keys: otherKeys.length,
        durable_objects_checked: leftovers.objects.objects,
        durable_object_keys_left: leftovers.objects.keys.length,
        media_node_rooms: leftovers.nodeRooms,
      },
    };
    const passed =
      totals.expected === totals.delivered &&
      totals.unexpected === 0 &&
      errors.length === 0 &&
      serverErrors.length === 0 &&
      withinBound &&
      otherKeys.length === 0;
    console.log(JSON.stringify(report, null, 2));
    mkdirSync(dirname(resultsFile), { recursive: true });
    writeFileSync(resultsFile, `${JSON.stringify({ ...report, passed }, null, 2)}\n`);
    console.log(`${passed ? 'PASSED' : 'FAILED'}; wrote ${resultsFile}`);
    process.exitCode = passed ? 0 : 1;
  } finally {
    await stack.stop();
    await endpoint.close();
    await direct.quit();
    await redis.stop();
  }
}

await main();
