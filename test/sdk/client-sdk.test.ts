import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoomAdminError } from '../../client/src/room-admin.ts';
import { SignalingError } from '../../client/src/signaling-connection.ts';
import { TrueGatherClient } from '../../client/src/truegather-client.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import { createRoom, startLoopbackStack } from '../support/e2e-stack.ts';

/**
 * The browser SDK's room features in Node (its signaling and REST need no WebRTC) against the real
 * edge under `wrangler dev`: data messages, mute under the lock rules, and the admin methods. This
 * directory compiles with the DOM library beside Node's (test/sdk/tsconfig.json), as the SDK needs.
 */

let stack: RunningStack;

beforeAll(async () => {
  stack = await startLoopbackStack({}, { withMediaNode: false });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('the client SDK against the real edge', () => {
  it('sends data, mutes under the lock rules, and administers the room with the admin grant', async () => {
    const room = await createRoom(stack, 'sdk');
    const options = { baseUrl: stack.edgeUrl, roomId: room.id, autoSubscribe: false };
    const host = new TrueGatherClient({
      ...options,
      display: 'Host',
      grants: { admin: true },
      adminCredential: room.admin_token,
    });
    const guest = new TrueGatherClient({ ...options, display: 'Guest' });
    await host.join();
    await guest.join();

    const received = guest.once('data');
    await host.sendData('hello', { topic: 'chat' });
    expect(await received).toEqual({ from: host.participantId, data: 'hello', topic: 'chat' });
    const direct = host.once('data');
    await guest.sendData('{"ok":true}', { to: [host.participantId] });
    expect(await direct).toEqual({ from: guest.participantId, data: '{"ok":true}' });

    expect((await host.admin.listParticipants()).map((p) => p.display)).toEqual(['Host', 'Guest']);
    const locked = guest.once('track_muted');
    await host.admin.muteParticipant(guest.participantId, 'audio');
    expect(await locked).toEqual({
      publisherId: guest.participantId,
      kind: 'audio',
      muted: true,
      by: 'admin',
      locked: true,
    });
    await expect(guest.unmute('audio')).rejects.toMatchObject({ code: 'forbidden' });
    await host.admin.muteParticipant(guest.participantId, 'audio', false);
    const unmuted = host.once('track_muted');
    await guest.unmute('audio');
    expect(await unmuted).toEqual({
      publisherId: guest.participantId,
      kind: 'audio',
      muted: false,
      by: 'self',
      locked: false,
    });

    const grantsUpdated = guest.once('grants_updated');
    await host.admin.updateParticipant(guest.participantId, { publish_data: false });
    expect((await grantsUpdated).grants).toMatchObject({ publish_data: false, publish: true });
    await expect(guest.sendData('x')).rejects.toBeInstanceOf(SignalingError);
    // The guest has no admin grant: its admin calls are refused.
    await expect(guest.admin.listParticipants()).rejects.toMatchObject({ status: 403, code: 'forbidden' });

    const guestClosed = guest.once('state');
    await host.admin.removeParticipant(guest.participantId);
    expect(await guestClosed).toBe('closed');
    const hostClosed = host.once('state');
    await host.admin.deleteRoom();
    expect(await hostClosed).toBe('closed');
    await expect(host.admin.listParticipants()).rejects.toBeInstanceOf(RoomAdminError);
  }, 60_000);
});
