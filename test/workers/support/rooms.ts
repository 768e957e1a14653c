import { env, SELF } from 'cloudflare:test';
import { SignJWT } from 'jose';
import { newId } from '../../../shared/src/ids.ts';
import {
  type CreatedRoom,
  CreatedRoomSchema,
  type JoinRoomResponse,
  type Room,
  type Stream,
} from '../../../shared/src/rest.ts';
import type { GrantsInput } from '../../../shared/src/token.ts';
import { issueParticipantToken } from '../../../workers/src/auth/participant-token.ts';
import { edgeConfig } from '../../../workers/src/config.ts';
import type { MediaNodeClient } from '../../../workers/src/media/media-node-client.ts';
import type { RoomCoordinator } from '../../../workers/src/room/room-coordinator.ts';
import { FakeMediaNode, fakeSdp } from './fake-media-node.ts';
import { BASE_URL, SignalingSocket, type TokenTransport } from './signaling-socket.ts';
import { mediaNodeFakes } from './test-worker.ts';

/** Creates a room through the REST API, as a client would. */
export async function createRoom(maxPublishers = 10): Promise<Room> {
  const response = await SELF.fetch(`${BASE_URL}/api/v1/rooms`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'signaling test', max_publishers: maxPublishers }),
  });
  if (response.status !== 201) throw new Error(`createRoom: ${response.status} ${await response.text()}`);
  return response.json();
}

/** Creates a room and keeps what its creator gets: the room's admin_token. */
export async function createAdminRoom(): Promise<CreatedRoom> {
  const response = await SELF.fetch(`${BASE_URL}/api/v1/rooms`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'moderated' }),
  });
  if (response.status !== 201) throw new Error(`createAdminRoom: ${response.status} ${await response.text()}`);
  return CreatedRoomSchema.parse(await response.json());
}

/** REST join: a token and participant id for `display`. */
export async function restJoin(roomId: string, display: string): Promise<JoinRoomResponse> {
  const response = await SELF.fetch(`${BASE_URL}/api/v1/rooms/${roomId}/join`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ display }),
  });
  if (response.status !== 200) throw new Error(`join: ${response.status} ${await response.text()}`);
  return response.json();
}

/** A correctly signed token with chosen grants (REST join always grants publish and subscribe). */
export async function tokenWithGrants(
  roomId: string,
  grants: GrantsInput,
): Promise<{ token: string; participantId: string }> {
  const participantId = newId();
  const issued = await issueParticipantToken(edgeConfig(env).jwt, {
    roomId,
    participantId,
    display: 'granted',
    grants,
  });
  return { token: issued.token, participantId };
}

/** Claims as the edge issues them, for hand-made bad tokens. */
function claimsFor(roomId: string, now = Math.floor(Date.now() / 1000)) {
  return {
    iss: 'truegather-edge',
    aud: 'truegather-client',
    sub: newId(),
    room: roomId,
    name: 'mallory',
    grants: { publish: true, subscribe: true, admin: false },
    jti: newId(),
    iat: now,
    exp: now + 600,
  };
}

/** Signed with a secret the edge does not know. */
export function forgedToken(roomId: string): Promise<string> {
  const secret = new TextEncoder().encode('not-the-edge-secret-but-32-bytes-long!!');
  return new SignJWT(claimsFor(roomId)).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(secret);
}

/** Signed with the edge's secret, but expired an hour ago. */
export function expiredToken(roomId: string): Promise<string> {
  const past = Math.floor(Date.now() / 1000) - 3600;
  return new SignJWT(claimsFor(roomId, past))
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .sign(edgeConfig(env).jwt.secret);
}

/** An unsecured JWT (`alg: none`, empty signature) with otherwise valid claims. */
export function unsignedToken(roomId: string): string {
  const encode = (value: unknown) =>
    btoa(JSON.stringify(value)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode(claimsFor(roomId))}.`;
}

export function roomStub(roomId: string): DurableObjectStub<RoomCoordinator> {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId)) as DurableObjectStub<RoomCoordinator>;
}

/** The URL a room's one fake media node stands for (see test-worker.ts). */
export const FAKE_NODE_URL = 'http://127.0.0.1:18081';

/** Gives the room a fake media node client (its coordinator is the test Worker's, see test-worker.ts). */
export function useMediaNode(roomId: string, client: MediaNodeClient): void {
  mediaNodeFakes.set(roomId, new Map([[FAKE_NODE_URL, client]]));
}

/** Gives the room several fake media nodes, by URL, in the order placement fills them. */
export function useMediaNodes(roomId: string, nodes: Record<string, MediaNodeClient>): void {
  mediaNodeFakes.set(roomId, new Map(Object.entries(nodes)));
}

export interface Member {
  socket: SignalingSocket;
  participantId: string;
  token: string;
  display: string;
}

/** REST join, open the socket, `join_room`: a participant in the room, its `joined` taken. */
export async function joinMember(roomId: string, display: string, via: TokenTransport = 'query'): Promise<Member> {
  const join = await restJoin(roomId, display);
  const socket = await SignalingSocket.open(roomId, join.token, via);
  await socket.expectReply('join_room', { room_id: roomId, display }, 'joined');
  return { socket, participantId: join.participant_id, token: join.token, display };
}

/** Participants the store lists for the room (the connected ones). */
export async function storedParticipants(roomId: string): Promise<number> {
  const response = await SELF.fetch(`${BASE_URL}/api/v1/rooms/${roomId}`);
  const details = (await response.json()) as { participants: number };
  return details.participants;
}

/**
 * A room (with an admin token) on a fake media node where Ann publishes `streams` and Bob, who
 * joined too, has seen her `publisher_joined`.
 */
export async function annPublishingToBob(streams: Stream[]) {
  const room = await createAdminRoom();
  const fake = new FakeMediaNode();
  useMediaNode(room.id, fake);
  const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
  await publishReady(room.id, ann, streams, [bob.socket]);
  return { room, fake, ann, bob };
}

/**
 * `member` publishes through the fake media node and the node reports it ready (`publisher_ready`
 * with `streams`): resolves once every watcher socket has seen its `publisher_joined`.
 */
export async function publishReady(
  roomId: string,
  member: Member,
  streams: Stream[],
  watchers: SignalingSocket[],
): Promise<void> {
  await member.socket.expectReply('publish_offer', { sdp: fakeSdp(`${member.display} offer`) }, 'publish_answer');
  await roomStub(roomId).handleMediaEvent({
    type: 'publisher_ready',
    room_id: roomId,
    participant_id: member.participantId,
    streams,
  });
  for (const watcher of watchers) {
    await watcher.nextOf('publisher_joined', (frame) => frame.payload.publisher.id === member.participantId);
  }
}
