import type { ChildProcess } from 'node:child_process';
import { expectReply, SignalingConnection } from '../../client/src/signaling-connection.ts';
import { launchMediaNode, type RunningStack, type StackOptions, startStack } from '../../scripts/stack.ts';
import type { CreatedRoom, JoinRoomResponse } from '../../shared/src/rest.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { freePort, freePortRun } from './ports.ts';
import { TestPublisher, type TestPublisherOptions, TestSubscriber, waitFor } from './werift-peers.ts';

/**
 * The real stack on free loopback ports, for end-to-end tests: `wrangler dev` plus media nodes (one
 * unless `mediaNodes` says more) that gather ICE candidates on 127.0.0.1 only, with one worker thread.
 */
export async function startLoopbackStack(
  env: Record<string, string> = {},
  options: Pick<StackOptions, 'withMediaNode' | 'superviseMediaNode' | 'output' | 'mediaNodes'> = {},
): Promise<RunningStack> {
  const [edgePort, mediaPort] = [await freePort(), await freePortRun(options.mediaNodes ?? 1)];
  return startStack({
    edgeHost: '127.0.0.1',
    edgePort,
    mediaHost: '127.0.0.1',
    mediaPort,
    env: { MEDIA_RTC_LISTEN_IP: '127.0.0.1', MEDIA_WORKERS: '1', LOG_LEVEL: 'warn', ...env },
    ...options,
  });
}

/**
 * One more media node beside the stack's, on loopback `port`, as the stack's own runs (the stack's
 * MEDIA_NODE_SECRET and edge, one worker) and registered in the Upstash registry behind `upstash`;
 * `env` adds to or overrides that. The caller waits for it (health or registry entry) and terminates it.
 */
export function launchRegisteredMediaNode(
  stack: RunningStack,
  options: { id: string; port: number; upstash: { url: string; token: string }; env?: Record<string, string> },
): ChildProcess {
  const env = {
    UPSTASH_REDIS_REST_URL: options.upstash.url,
    UPSTASH_REDIS_REST_TOKEN: options.upstash.token,
    MEDIA_NODE_ID: options.id,
    MEDIA_HOST: '127.0.0.1',
    MEDIA_PORT: String(options.port),
    MEDIA_NODE_SECRET: stack.secrets.mediaNodeSecret,
    EDGE_URL: stack.edgeUrl,
    MEDIA_RTC_LISTEN_IP: '127.0.0.1',
    MEDIA_WORKERS: '1',
    LOG_LEVEL: 'warn',
    ...options.env,
  };
  return launchMediaNode(env, undefined);
}

async function post<T>(url: string, body: unknown): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`POST ${url} → ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

export function createRoom(stack: RunningStack, name = 'e2e'): Promise<CreatedRoom> {
  return post<CreatedRoom>(`${stack.edgeUrl}/api/v1/rooms`, { name });
}

export function restJoin(stack: RunningStack, roomId: string, display: string): Promise<JoinRoomResponse> {
  return post<JoinRoomResponse>(`${stack.edgeUrl}/api/v1/rooms/${roomId}/join`, { display });
}

/** A participant that joined over REST, opened signaling with the SDK's connection and sent join_room. */
export async function joinParticipant(stack: RunningStack, roomId: string, display: string) {
  const join = await restJoin(stack, roomId, display);
  const connection = new SignalingConnection({ url: join.ws_url, token: join.token });
  const frames: ServerFrame[] = [];
  connection.on('frame', (frame) => frames.push(frame));
  await connection.open();
  const joined = expectReply(await connection.request('join_room', { room_id: roomId, display }), 'joined');
  return { id: join.participant_id, join, connection, joined, frames };
}

export type JoinedParticipant = Awaited<ReturnType<typeof joinParticipant>>;

/** The frames `participant` got from index `from` on (a mark taken as `participant.frames.length`). */
export const framesSince = (participant: JoinedParticipant, from: number): ServerFrame[] =>
  participant.frames.slice(from);
/** Whether `participant` got `publisher_left` for `publisherId` since the mark `from`. */
export const gotPublisherLeft = (participant: JoinedParticipant, from: number, publisherId: string) =>
  framesSince(participant, from).some(
    (frame) => frame.type === 'publisher_left' && frame.payload.publisher_id === publisherId,
  );
/** Whether any of `frames` is a `publisher_joined`. */
export const hasPublisherJoined = (frames: ServerFrame[]) => frames.some((frame) => frame.type === 'publisher_joined');

/**
 * Publishes from a new werift peer and applies the answer. A refusal while the room moves between
 * media nodes is tried again (as the SDK does) for up to `retryForMs`; with 0, it is thrown.
 */
export async function publishFrom(
  participant: JoinedParticipant,
  retryForMs = 0,
  options: TestPublisherOptions = {},
): Promise<TestPublisher> {
  const attempt = async () => {
    const publisher = await TestPublisher.create(options);
    try {
      const answer = expectReply(
        await participant.connection.request('publish_offer', { sdp: await publisher.createOffer() }),
        'publish_answer',
      );
      await publisher.setAnswer(answer.payload.sdp);
      return publisher;
    } catch (error) {
      await publisher.close();
      throw error;
    }
  };
  if (retryForMs === 0) return attempt();
  return waitFor(() => attempt().catch(() => undefined), {
    timeoutMs: retryForMs,
    intervalMs: 500,
    message: 'a publish_offer answered',
  });
}

/** Subscribes to `feed` from a new werift peer and waits for video from it. */
export async function receiveFrom(participant: JoinedParticipant, feed: string): Promise<TestSubscriber> {
  const subscriber = new TestSubscriber();
  const offer = expectReply(await participant.connection.request('subscribe', { feeds: [feed] }), 'subscribe_offer');
  expectReply(
    await participant.connection.request('subscribe_answer', { sdp: await subscriber.answer(offer.payload.sdp) }),
    'ack',
  );
  await waitFor(() => subscriber.packets('video') > 0, { timeoutMs: 20_000, message: 'video from the publisher' });
  return subscriber;
}
