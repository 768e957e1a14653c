import { expectReply, SignalingConnection } from '../../client/src/signaling-connection.ts';
import { type RunningStack, type StackOptions, startStack } from '../../scripts/stack.ts';
import type { JoinRoomResponse, Room } from '../../shared/src/rest.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { freePort } from './ports.ts';

/**
 * The real stack on free loopback ports, for end-to-end tests: `wrangler dev` plus a media node that
 * gathers ICE candidates on 127.0.0.1 only, with one worker thread.
 */
export async function startLoopbackStack(
  env: Record<string, string> = {},
  options: Pick<StackOptions, 'withMediaNode' | 'superviseMediaNode' | 'output'> = {},
): Promise<RunningStack> {
  const [edgePort, mediaPort] = [await freePort(), await freePort()];
  return startStack({
    edgeHost: '127.0.0.1',
    edgePort,
    mediaHost: '127.0.0.1',
    mediaPort,
    env: { MEDIA_RTC_LISTEN_IP: '127.0.0.1', MEDIA_WORKERS: '1', LOG_LEVEL: 'warn', ...env },
    ...options,
  });
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

export function createRoom(stack: RunningStack, name = 'e2e'): Promise<Room> {
  return post<Room>(`${stack.edgeUrl}/api/v1/rooms`, { name });
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
