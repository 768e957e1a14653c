/**
 * Signaling benchmark: starts its own `wrangler dev` (free port, generated secrets, no media node),
 * fills one room with N WebSocket clients and measures
 *   - join latency: `join_room` sent → `joined` received, per client;
 *   - fan-out latency: a probe client's `join_room` / `leave` sent → `participant_joined` /
 *     `participant_left` received by each of the N members (one clock: all clients live in this process).
 * Prints p50/p95 and writes bench/results/signaling.json.
 *
 *   npm run bench:signaling -- --clients 100 --rounds 20
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { startStack } from '../scripts/stack.ts';
import { newId } from '../shared/src/ids.ts';
import type { Room } from '../shared/src/rest.ts';
import type { ServerFrame } from '../shared/src/signaling.ts';
import { freePort } from '../test/support/ports.ts';
import { mintParticipantToken } from './participant-token.ts';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '20' },
  },
});
const CLIENTS = Number(args.clients);
const ROUNDS = Number(args.rounds);
const FRAME_TIMEOUT_MS = 15_000;
const resultsFile = join(dirname(fileURLToPath(import.meta.url)), 'results', 'signaling.json');

interface Target {
  edgeUrl: string;
  roomId: string;
  jwtSecret: string;
}

/** A signaling client that timestamps every frame on arrival. */
class Client {
  readonly ws: WebSocket;
  readonly participantId: string;
  #listeners = new Set<(frame: ServerFrame, at: number) => void>();

  private constructor(ws: WebSocket, participantId: string) {
    this.ws = ws;
    this.participantId = participantId;
    ws.on('message', (data) => {
      const at = performance.now();
      const frame = JSON.parse(String(data)) as ServerFrame;
      for (const listener of this.#listeners) listener(frame, at);
    });
  }

  static async connect(target: Target, display: string): Promise<Client> {
    const participantId = newId();
    const token = await mintParticipantToken(new TextEncoder().encode(target.jwtSecret), {
      roomId: target.roomId,
      participantId,
      display,
      lifetimeSeconds: 900,
    });
    const url = `${target.edgeUrl.replace(/^http/, 'ws')}/ws?room_id=${target.roomId}`;
    const ws = new WebSocket(url, ['truegather.v1', token]);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Client(ws, participantId);
  }

  /** Resolves with the arrival time of the first frame matching `predicate` from now on. */
  arrival(predicate: (frame: ServerFrame) => boolean): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listeners.delete(listener);
        reject(new Error(`no matching frame within ${FRAME_TIMEOUT_MS} ms`));
      }, FRAME_TIMEOUT_MS);
      const listener = (frame: ServerFrame, at: number) => {
        if (!predicate(frame)) return;
        clearTimeout(timer);
        this.#listeners.delete(listener);
        resolve(at);
      };
      this.#listeners.add(listener);
    });
  }

  /** Sends a request and resolves with [send time, reply arrival time]. */
  async request(type: string, payload: unknown, requestId: string): Promise<[number, number]> {
    const reply = this.arrival((frame) => frame.request_id === requestId);
    const sentAt = performance.now();
    this.ws.send(JSON.stringify({ type, request_id: requestId, payload }));
    const at = await reply;
    return [sentAt, at];
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', () => resolve());
      this.ws.close(1000);
    });
  }
}

interface Summary {
  samples: number;
  p50: number;
  p95: number;
  max: number;
}

function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
  const round = (value: number) => Math.round(value * 100) / 100;
  return { samples: sorted.length, p50: round(rank(50)), p95: round(rank(95)), max: round(sorted.at(-1) ?? 0) };
}

async function run(edgeUrl: string, jwtSecret: string) {
  const created = await fetch(`${edgeUrl}/api/v1/rooms`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'signaling bench' }),
  });
  if (created.status !== 201) throw new Error(`room creation failed: ${created.status}`);
  const room = (await created.json()) as Room;
  const target: Target = { edgeUrl, roomId: room.id, jwtSecret };

  const members: Client[] = [];
  const joinMs: number[] = [];
  for (let i = 0; i < CLIENTS; i += 1) {
    const client = await Client.connect(target, `member ${i}`);
    const [sentAt, at] = await client.request('join_room', { room_id: room.id, display: `member ${i}` }, 'join');
    joinMs.push(at - sentAt);
    members.push(client);
  }

  const fanoutMs: number[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    const probe = await Client.connect(target, `probe ${round}`);
    const aboutProbe = (type: 'participant_joined' | 'participant_left') => (frame: ServerFrame) =>
      frame.type === type && frame.payload.participant.id === probe.participantId;

    const joinedArrivals = members.map((member) => member.arrival(aboutProbe('participant_joined')));
    const [joinSentAt, joinedAt] = await probe.request('join_room', { room_id: room.id, display: 'probe' }, 'join');
    joinMs.push(joinedAt - joinSentAt);
    for (const at of await Promise.all(joinedArrivals)) fanoutMs.push(at - joinSentAt);

    const leftArrivals = members.map((member) => member.arrival(aboutProbe('participant_left')));
    const [leaveSentAt] = await probe.request('leave', {}, 'leave');
    for (const at of await Promise.all(leftArrivals)) fanoutMs.push(at - leaveSentAt);
    await probe.close();
  }

  await Promise.all(members.map((member) => member.close()));
  return { room: room.id, join: summarize(joinMs), fanout: summarize(fanoutMs) };
}

async function main(): Promise<void> {
  const [edgePort, mediaPort] = [await freePort(), await freePort()];
  console.log(`starting wrangler dev on 127.0.0.1:${edgePort} (${CLIENTS} clients, ${ROUNDS} rounds)…`);
  const stack = await startStack({
    edgeHost: '127.0.0.1',
    edgePort,
    mediaHost: '127.0.0.1',
    mediaPort,
    withMediaNode: false,
    // Room for the members and a probe.
    env: { LOG_LEVEL: 'warn', MAX_PARTICIPANTS: String(CLIENTS + 1) },
  });
  try {
    const started = performance.now();
    const result = await run(stack.edgeUrl, stack.secrets.jwtSecret);
    const report = {
      benchmark: 'signaling',
      date: new Date().toISOString(),
      clients: CLIENTS,
      rounds: ROUNDS,
      duration_s: Math.round((performance.now() - started) / 100) / 10,
      node: process.version,
      join_latency_ms: result.join,
      fanout_latency_ms: result.fanout,
    };
    console.log(`join latency    (join_room → joined, n=${result.join.samples}):`);
    console.log(`  p50 ${result.join.p50} ms   p95 ${result.join.p95} ms   max ${result.join.max} ms`);
    console.log(`fan-out latency (event → each of ${CLIENTS} members, n=${result.fanout.samples}):`);
    console.log(`  p50 ${result.fanout.p50} ms   p95 ${result.fanout.p95} ms   max ${result.fanout.max} ms`);
    mkdirSync(dirname(resultsFile), { recursive: true });
    writeFileSync(resultsFile, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`wrote ${resultsFile}`);
  } finally {
    await stack.stop();
  }
}

await main();
