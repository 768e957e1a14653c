import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply, SignalingConnection } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import {
  type JoinRoomResponse,
  RoomService,
  TrueGatherApiError,
  type WebhookEvent,
  WebhookReceiver,
  WebhookVerificationError,
} from '../../server-sdk/src/index.ts';
import { startLoopbackStack } from '../support/e2e-stack.ts';
import { WebhookEndpoint } from '../support/webhook-endpoint.ts';
import { waitFor } from '../support/werift-peers.ts';

/**
 * `@truegather/server` against the real edge under `wrangler dev` (with an API_KEY, and webhooks to a
 * local receiver that verifies them with the SDK's WebhookReceiver): an app server creates a room,
 * mints tokens with grants, moderates the participants that connected with them, and ends the room.
 */

const API_KEY = randomBytes(24).toString('base64url');
const WEBHOOK_SECRET = `whsec_${randomBytes(32).toString('base64')}`;

/** The app's webhook endpoint: raw body and headers of every request, verified by the SDK. */
class AppServer extends WebhookEndpoint {
  readonly events: WebhookEvent[] = [];
  readonly requests: { body: string; headers: IncomingHttpHeaders }[] = [];
  readonly #receiver = new WebhookReceiver(WEBHOOK_SECRET);

  protected answer(body: string, headers: IncomingHttpHeaders): number {
    this.requests.push({ body, headers });
    try {
      this.events.push(this.#receiver.receive(body, headers));
      return 204;
    } catch {
      return 400;
    }
  }
}

/** Opens signaling with a token the app server minted, as the browser would, and joins. */
async function connect(join: JoinRoomResponse, display: string) {
  const connection = new SignalingConnection({ url: join.ws_url, token: join.token });
  await connection.open();
  expectReply(await connection.request('join_room', { room_id: join.room_id, display }), 'joined');
  return { id: join.participant_id, connection };
}

let stack: RunningStack;
const app = new AppServer();

beforeAll(async () => {
  const webhookUrl = await app.listen();
  stack = await startLoopbackStack({ API_KEY, WEBHOOK_URL: webhookUrl, WEBHOOK_SECRET }, { withMediaNode: false });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await app.close();
});

describe('the server SDK against the real edge', () => {
  it('creates a room, joins with grants, lists, mutes, re-grants, removes and deletes', async () => {
    const service = new RoomService({ baseUrl: stack.edgeUrl, apiKey: API_KEY });
    const anonymous = new RoomService({ baseUrl: stack.edgeUrl });
    await expect(anonymous.createRoom({ name: 'no key' })).rejects.toMatchObject({
      status: 401,
      code: 'unauthorized',
    });

    const room = await service.createRoom({ name: 'Server SDK', max_publishers: 4 });
    expect(room).toMatchObject({ name: 'Server SDK', max_publishers: 4 });
    expect(room.admin_token).toMatch(/^eyJ/);
    expect(await anonymous.getRoom(room.id)).toMatchObject({ id: room.id, participants: 0, publishers: [] });

    // Grants need an admin credential: the room's admin_token works without the API key.
    await expect(anonymous.joinRoom(room.id, { display: 'Bot', grants: { hidden: true } })).rejects.toThrow(TypeError);
    const refused = await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}/join`, {
      method: 'POST',
      body: JSON.stringify({ display: 'Bot', grants: { hidden: true } }),
    });
    expect(refused.status).toBe(403);
    const botJoin = await anonymous.joinRoom(
      room.id,
      { display: 'Recorder', grants: { hidden: true, publish: false } },
      { credential: room.admin_token },
    );
    const guestJoin = await service.joinRoom(room.id, { display: 'Guest' });
    const bot = await connect(botJoin, 'Recorder');
    const guest = await connect(guestJoin, 'Guest');

    const listed = await service.listParticipants(room.id);
    expect(listed.map(({ id, display, grants }) => ({ id, display, grants }))).toEqual([
      {
        id: bot.id,
        display: 'Recorder',
        grants: expect.objectContaining({ hidden: true, publish: false, subscribe: true }),
      },
      {
        id: guest.id,
        display: 'Guest',
        grants: expect.objectContaining({ hidden: false, publish: true, publish_data: true }),
      },
    ]);
    // The same call with the room's admin_token, and with a plain participant token (refused).
    expect(await anonymous.listParticipants(room.id, { credential: room.admin_token })).toHaveLength(2);
    await expect(anonymous.listParticipants(room.id, { credential: guestJoin.token })).rejects.toMatchObject({
      status: 403,
      code: 'forbidden',
    });

    const muted = guest.connection.once('frame');
    const afterMute = await service.muteParticipant(room.id, guest.id, { kind: 'audio', muted: true });
    expect(afterMute.id).toBe(guest.id);
    expect(await muted).toMatchObject({
      type: 'track_muted',
      payload: { publisher_id: guest.id, kind: 'audio', muted: true, by: 'admin' },
    });
    const regranted = await service.updateParticipant(room.id, guest.id, { publish_data: false });
    expect(regranted.grants).toMatchObject({ publish_data: false, publish: true });
    await expect(guest.connection.request('send_data', { data: 'hi' })).rejects.toMatchObject({ code: 'forbidden' });

    const removed = guest.connection.once('closed');
    await service.removeParticipant(room.id, guest.id);
    expect(await removed).toEqual({ code: 4001, reason: 'removed' });
    expect((await service.listParticipants(room.id)).map((participant) => participant.id)).toEqual([bot.id]);
    await expect(service.removeParticipant(room.id, guest.id)).rejects.toBeInstanceOf(TrueGatherApiError);

    const ended = bot.connection.once('closed');
    await service.deleteRoom(room.id);
    expect(await ended).toEqual({ code: 1000, reason: 'room closed' });
    await expect(service.getRoom(room.id)).rejects.toMatchObject({ status: 404, code: 'not_found' });
  }, 60_000);

  it('verifies the edge’s webhooks, and refuses a forged or altered one', async () => {
    const service = new RoomService({ baseUrl: stack.edgeUrl, apiKey: API_KEY });
    const room = await service.createRoom({ name: 'Hooks' });
    const join = await service.joinRoom(room.id, { display: 'Alice' });
    const alice = await connect(join, 'Alice');
    const joined = await waitFor(
      () => app.events.find((event) => event.type === 'participant.joined' && event.data.participant?.id === alice.id),
      { timeoutMs: 15_000, message: 'participant.joined at the app server' },
    );
    expect(joined.data).toMatchObject({ room_id: room.id, participant: { id: alice.id, display: 'Alice' } });
    expect(joined.data.seq).toBeGreaterThanOrEqual(1);

    const delivered = app.requests.find((request) => request.body.includes(alice.id))!;
    const receiver = new WebhookReceiver(WEBHOOK_SECRET);
    expect(receiver.receive(delivered.body, delivered.headers)).toEqual(JSON.parse(delivered.body));
    // A fetch Headers object works the same.
    const asHeaders = new Headers(delivered.headers as Record<string, string>);
    expect(receiver.receive(delivered.body, asHeaders).type).toBe(joined.type);

    const altered = delivered.body.replace('"Alice"', '"Mallory"');
    expect(() => receiver.receive(altered, delivered.headers)).toThrow(WebhookVerificationError);
    const otherSecret = new WebhookReceiver(`whsec_${randomBytes(32).toString('base64')}`);
    expect(() => otherSecret.receive(delivered.body, delivered.headers)).toThrow(WebhookVerificationError);
    expect(() => receiver.receive(delivered.body, { ...delivered.headers, 'webhook-signature': undefined })).toThrow(
      WebhookVerificationError,
    );
    await alice.connection.request('leave', {});
  }, 60_000);
});
