/**
 * Whose memory grows under WebSocket churn in `wrangler dev`: the same churn (join, leave, rejoin:
 * ROOMS rooms of PER_ROOM members, one operation per room at a time, as in the soak) against the
 * edge and against a trivial Worker whose Durable Object accepts hibernatable WebSockets and answers
 * join and leave. For each it reports workerd's RSS per process (the runtime of the Worker, and
 * wrangler's dev proxy) along the churn, and the live JS heap of the Worker's isolate at its start
 * and end (a heap snapshot over wrangler's inspector). Writes bench/results/workerd-memory.json.
 *
 *   npm run bench:workerd-memory -- --duration 300
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { freePort, generateSecret, launch, startStack, terminate } from '../scripts/stack.ts';
import { startUpstashCompatServer } from '../scripts/upstash-compat-server.ts';
import { newId } from '../shared/src/ids.ts';
import { SIGNALING_SUBPROTOCOL } from '../shared/src/signaling-socket.ts';
import { startRedisServer } from '../test/support/redis-server.ts';
import { waitFor } from '../test/support/werift-peers.ts';
import { mintParticipantToken } from './participant-token.ts';
import { loadAverage, stackMemory } from './process-memory.ts';
import { workerHeap } from './worker-heap.ts';

const { values: args } = parseArgs({
  options: {
    /** Seconds of churn against each Worker. */
    duration: { type: 'string', default: '300' },
    rooms: { type: 'string', default: '30' },
    'per-room': { type: 'string', default: '10' },
  },
});
const DURATION_MS = Number(args.duration) * 1000;
const ROOMS = Number(args.rooms);
const PER_ROOM = Number(args['per-room']);
const SAMPLE_EVERY_MS = 15_000;

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const resultsFile = join(root, 'bench', 'results', 'workerd-memory.json');

/** The least a signaling room does: hibernatable sockets, join and leave answered and broadcast. */
const TRIVIAL_WORKER = `
import { DurableObject } from 'cloudflare:workers';
export class Room extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('ping', 'pong'));
  }
  async fetch() {
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0], headers: { 'sec-websocket-protocol': '${SIGNALING_SUBPROTOCOL}' } });
  }
  async webSocketMessage(ws, message) {
    const frame = JSON.parse(message);
    const send = (socket, type, payload, request_id) => socket.send(JSON.stringify({ type, request_id, payload }));
    const others = this.ctx.getWebSockets().filter((socket) => socket !== ws);
    if (frame.type === 'join_room') {
      for (const other of others) send(other, 'participant_joined', {});
      send(ws, 'joined', {}, frame.request_id);
    } else if (frame.type === 'leave') {
      send(ws, 'ack', {}, frame.request_id);
      for (const other of others) send(other, 'participant_left', {});
      ws.close(1000, 'left');
    }
  }
  async webSocketClose(ws) { ws.close(1000, 'closed'); }
}
export default {
  fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname !== '/ws') return new Response('ok');
    return env.ROOMS.get(env.ROOMS.idFromName(url.searchParams.get('room_id'))).fetch(request);
  },
};
`;

interface Target {
  url: string;
  port: number;
  inspectorPort: number;
  roomIds(): Promise<string[]>;
  token(roomId: string, participantId: string): Promise<string>;
  stop(): Promise<void>;
}

async function startTrivialWorker(): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'trivial-worker-'));
  writeFileSync(join(dir, 'worker.js'), TRIVIAL_WORKER);
  writeFileSync(
    join(dir, 'wrangler.toml'),
    [
      'name = "trivial"',
      'main = "worker.js"',
      'compatibility_date = "2026-11-01"',
      '[[durable_objects.bindings]]',
      'name = "ROOMS"',
      'class_name = "Room"',
      '[[migrations]]',
      'tag = "v1"',
      'new_sqlite_classes = ["Room"]',
    ].join('\n'),
  );
  const [port, inspectorPort] = [await freePort(), await freePort()];
  const child = launch(
    process.execPath,
    [
      join(root, 'node_modules/wrangler/bin/wrangler.js'),
      'dev',
      '--config',
      join(dir, 'wrangler.toml'),
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--inspector-port',
      String(inspectorPort),
      '--show-interactive-dev-session=false',
      '--log-level',
      'warn',
    ],
    { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
    undefined,
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(url).catch(() => undefined))?.ok, { timeoutMs: 60_000, message: url });
  return {
    url,
    port,
    inspectorPort,
    roomIds: async () => Array.from({ length: ROOMS }, () => newId()),
    token: async () => 'unchecked',
    stop: () => terminate(child),
  };
}

/** The edge as the soak runs it (Redis behind the Upstash endpoint), without a media node. */
async function startEdge(): Promise<Target> {
  const redis = await startRedisServer();
  const upstashToken = generateSecret();
  const endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token: upstashToken, logLevel: 'error' });
  const port = await freePort();
  const stack = await startStack({
    edgeHost: '127.0.0.1',
    edgePort: port,
    mediaHost: '127.0.0.1',
    mediaPort: await freePort(),
    withMediaNode: false,
    env: {
      LOG_LEVEL: 'warn',
      ROOM_TTL_SECONDS: '60',
      JWT_EXPIRY_SECONDS: '60',
      UPSTASH_REDIS_REST_URL: endpoint.url,
      UPSTASH_REDIS_REST_TOKEN: upstashToken,
    },
  });
  const secret = new TextEncoder().encode(stack.secrets.jwtSecret);
  return {
    url: stack.edgeUrl,
    port,
    inspectorPort: stack.edgeInspectorPort,
    async roomIds() {
      const ids: string[] = [];
      for (let index = 0; index < ROOMS; index++) {
        const response = await fetch(`${stack.edgeUrl}/api/v1/rooms`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'CF-Connecting-IP': '10.255.0.1' },
          body: JSON.stringify({ name: `churn ${index}`, max_publishers: 2 }),
        });
        if (response.status !== 201) throw new Error(`room creation failed: ${response.status}`);
        ids.push(((await response.json()) as { id: string }).id);
      }
      return ids;
    },
    token: (roomId, participantId) =>
      mintParticipantToken(secret, { roomId, participantId, display: 'churn', lifetimeSeconds: 60 }),
    async stop() {
      await stack.stop();
      await endpoint.close();
      await redis.stop();
    },
  };
}

/** One member: a signaling socket that joins, keeps alive, and leaves. */
class Member {
  readonly #socket: WebSocket;
  readonly #replies = new Map<string, (type: string) => void>();
  #nextId = 1;
  #keepalive: NodeJS.Timeout | undefined;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.on('message', (data) => {
      const text = String(data);
      if (text === 'pong') return;
      const frame = JSON.parse(text) as { type: string; request_id?: string };
      const settle = frame.request_id === undefined ? undefined : this.#replies.get(frame.request_id);
      settle?.(frame.type);
    });
  }

  static async join(url: string, token: string, roomId: string, address: string): Promise<Member> {
    const socket = new WebSocket(url, [SIGNALING_SUBPROTOCOL, token], { headers: { 'CF-Connecting-IP': address } });
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
      socket.once('unexpected-response', (_request, response) => reject(new Error(`upgrade ${response.statusCode}`)));
    });
    const member = new Member(socket);
    member.#keepalive = setInterval(() => socket.send('ping'), 25_000);
    const reply = await member.#request('join_room', { room_id: roomId, display: 'churn' });
    if (reply !== 'joined') throw new Error(`join_room answered ${reply}`);
    return member;
  }

  async leave(): Promise<void> {
    try {
      const reply = await this.#request('leave', {});
      if (reply !== 'ack') throw new Error(`leave answered ${reply}`);
    } finally {
      clearInterval(this.#keepalive);
      this.#socket.close(1000);
    }
  }

  #request(type: string, payload: object): Promise<string> {
    const requestId = String(this.#nextId++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${type}`)), 20_000);
      this.#replies.set(requestId, (replyType) => {
        clearTimeout(timer);
        this.#replies.delete(requestId);
        resolve(replyType);
      });
      this.#socket.send(JSON.stringify({ type, request_id: requestId, payload }));
    });
  }
}

async function churn(name: string, target: Target) {
  const roomIds = await target.roomIds();
  const wsUrl = `${target.url.replace(/^http/, 'ws')}/ws`;
  let joins = 0;
  let errors = 0;
  const join = async (roomId: string, index: number) => {
    const participantId = newId();
    const token = await target.token(roomId, participantId);
    const member = await Member.join(`${wsUrl}?room_id=${roomId}`, token, roomId, `10.0.${index}.1`);
    joins++;
    return member;
  };
  const rooms = await Promise.all(
    roomIds.map(async (roomId, index) => {
      const members: Member[] = [];
      for (let count = 0; count < PER_ROOM; count++) members.push(await join(roomId, index));
      return members;
    }),
  );
  const heapAtStart = await workerHeap(target.inspectorPort);
  const startedAt = Date.now();
  const joinsAtStart = joins;
  const samples = [{ t_s: 0, joins: 0, ...stackMemory(target.port) }];
  const sampler = setInterval(() => {
    samples.push({
      t_s: Math.round((Date.now() - startedAt) / 1000),
      joins: joins - joinsAtStart,
      ...stackMemory(target.port),
    });
    console.log(`  ${name}: ${JSON.stringify(samples.at(-1))}`);
  }, SAMPLE_EVERY_MS);
  await Promise.all(
    roomIds.map(async (roomId, index) => {
      const members = rooms[index] ?? [];
      while (Date.now() - startedAt < DURATION_MS) {
        await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 1200));
        try {
          if (members.length > PER_ROOM - 1 && Math.random() < 0.5) {
            const [member] = members.splice(Math.floor(Math.random() * members.length), 1);
            await member?.leave();
          } else if (members.length < PER_ROOM + 1) {
            members.push(await join(roomId, index));
          }
        } catch (error) {
          errors++;
          if (errors <= 10) console.error(`  ${name}: ${(error as Error).message}`);
        }
      }
    }),
  );
  clearInterval(sampler);
  const end = {
    t_s: Math.round((Date.now() - startedAt) / 1000),
    joins: joins - joinsAtStart,
    ...stackMemory(target.port),
  };
  samples.push(end);
  const heapAtEnd = await workerHeap(target.inspectorPort);
  await Promise.all(rooms.flat().map((member) => member.leave().catch(() => undefined)));
  const start = samples[0]!;
  const perJoinKb = (key: 'workerd_runtime_mb' | 'wrangler_proxy_mb') =>
    Math.round(((end[key] - start[key]) * 1024) / Math.max(1, end.joins));
  return {
    joins: end.joins,
    errors,
    worker_js_heap_mb: { start: heapAtStart.live_mb, end: heapAtEnd.live_mb },
    rss_growth_mb: {
      workerd_runtime: end.workerd_runtime_mb - start.workerd_runtime_mb,
      wrangler_proxy: end.wrangler_proxy_mb - start.wrangler_proxy_mb,
    },
    rss_growth_kb_per_join: {
      workerd_runtime: perJoinKb('workerd_runtime_mb'),
      wrangler_proxy: perJoinKb('wrangler_proxy_mb'),
    },
    samples,
  };
}

async function run(name: string, start: () => Promise<Target>) {
  console.log(`${name}: ${ROOMS * PER_ROOM} members in ${ROOMS} rooms, churning for ${DURATION_MS / 1000} s…`);
  const target = await start();
  try {
    return await churn(name, target);
  } finally {
    await target.stop();
  }
}

const loadAtStart = loadAverage();
const edge = await run('edge', startEdge);
const trivial = await run('trivial Worker + Durable Object', startTrivialWorker);
const report = {
  benchmark: 'workerd-memory',
  date: new Date().toISOString(),
  node: process.version,
  rooms: ROOMS,
  members_per_room: PER_ROOM,
  duration_s: DURATION_MS / 1000,
  load_average: { start: loadAtStart, end: loadAverage() },
  edge,
  trivial_worker: trivial,
};
console.log(
  JSON.stringify(
    { ...report, edge: { ...edge, samples: undefined }, trivial_worker: { ...trivial, samples: undefined } },
    null,
    2,
  ),
);
mkdirSync(dirname(resultsFile), { recursive: true });
writeFileSync(resultsFile, `${JSON.stringify(report, null, 2)}\n`);
console.log(`wrote ${resultsFile}`);
