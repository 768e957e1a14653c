import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { expectReply, SignalingError } from '../../client/src/signaling-connection.ts';
import { type RunningStack, startStack } from '../../scripts/stack.ts';
import { createRoom, joinParticipant, restJoin } from '../support/e2e-stack.ts';
import { freePort } from '../support/ports.ts';
import { TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';

/**
 * Hostile input that only the real stack can show: raw bytes on a real socket (`wrangler dev`), and
 * the logs of a whole call — every line the edge and the media node print, at LOG_LEVEL=debug —
 * which contain no SDP, no token and no display or room name.
 */
let stack: RunningStack;
const logs: string[] = [];
/** The node's /health and /metrics on a listener of their own, as an operator would run it. */
let operatorPort: number;

beforeAll(async () => {
  operatorPort = await freePort();
  stack = await startStack({
    edgeHost: '127.0.0.1',
    edgePort: await freePort(),
    mediaHost: '127.0.0.1',
    mediaPort: await freePort(),
    env: {
      MEDIA_RTC_LISTEN_IP: '127.0.0.1',
      MEDIA_WORKERS: '1',
      LOG_LEVEL: 'debug',
      MEDIA_OPERATOR_PORT: String(operatorPort),
    },
    output: (line) => logs.push(line),
  });
}, 120_000);

describe('the media node in the stack with an operator listener', () => {
  it('serves /health there and not on the control address, which the edge still drives', async () => {
    expect((await fetch(`http://127.0.0.1:${operatorPort}/health`)).status).toBe(200);
    expect((await fetch(`${stack.mediaUrl}/health`)).status).toBe(404);
  });
});

afterAll(async () => {
  await stack?.stop();
});

describe('raw bytes on a real signaling socket', () => {
  it('a text frame that is not UTF-8 is refused, and the room goes on for the others', async () => {
    const room = await createRoom(stack, 'bytes');
    const bystander = await joinParticipant(stack, room.id, 'Bystander');
    const join = await restJoin(stack, room.id, 'Mallory');
    const socket = new WebSocket(join.ws_url, ['truegather.v1', join.token]);
    const received: string[] = [];
    socket.on('message', (data) => received.push(String(data)));
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    // `{"x":"` + bytes that are not UTF-8 + `"}`, sent as a TEXT frame (ws does not validate what it sends).
    socket.send(Buffer.concat([Buffer.from('{"x":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]), {
      binary: false,
    });
    // The runtime fails the connection (1007, RFC 6455) or the room refuses the frame: either way no crash.
    const outcome = await Promise.race([
      closed.then((code) => `closed ${code}`),
      waitFor(() => received.find((text) => text.includes('"error"')), { timeoutMs: 10_000, message: 'a refusal' }),
    ]);
    expect(outcome).toMatch(/closed 1007|invalid_json/);
    socket.terminate();
    // The bystander's room still answers.
    const failure = await bystander.connection.request('unpublish', {}).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(SignalingError);
    expect((failure as SignalingError).code).toBe('not_publishing');
    bystander.connection.close();
  });
});

describe('logs of a whole call', () => {
  it('holds no SDP, token or personal name', async () => {
    const secrets: string[] = [];
    const roomName = 'Quarterly Zanzibar Retro';
    const room = await createRoom(stack, roomName);
    secrets.push(roomName);

    const alice = await joinParticipant(stack, room.id, 'Zephyrine Quillfeather');
    const bob = await joinParticipant(stack, room.id, 'Marmaduke Oddsbody');
    secrets.push('Zephyrine Quillfeather', 'Marmaduke Oddsbody', alice.join.token, bob.join.token);

    // Alice publishes, Bob subscribes: offers, answers and their ICE credentials go through both.
    const publisher = await TestPublisher.create();
    const offer = await publisher.createOffer();
    const answer = expectReply(await alice.connection.request('publish_offer', { sdp: offer }), 'publish_answer');
    await publisher.setAnswer(answer.payload.sdp);
    await waitFor(() => bob.frames.find((frame) => frame.type === 'publisher_joined'), {
      timeoutMs: 15_000,
      message: 'publisher_joined',
    });
    const subscriber = new TestSubscriber();
    const subscribeOffer = expectReply(
      await bob.connection.request('subscribe', { feeds: [alice.id] }),
      'subscribe_offer',
    );
    const subscriberAnswer = await subscriber.answer(subscribeOffer.payload.sdp);
    expectReply(await bob.connection.request('subscribe_answer', { sdp: subscriberAnswer }), 'ack');
    await waitFor(() => subscriber.packets('video') > 0, { timeoutMs: 15_000, message: 'first video packets' });
    for (const sdp of [offer, answer.payload.sdp, subscribeOffer.payload.sdp, subscriberAnswer]) {
      for (const attribute of ['ice-ufrag', 'ice-pwd', 'fingerprint']) {
        const value = sdp.match(new RegExp(`a=${attribute}:([^\\r\\n]+)`))?.[1];
        if (value) secrets.push(value);
      }
    }

    // A bad SDP (werift's error text quotes SDP lines), a trickled candidate, a token refresh, leaves.
    const badSdp =
      'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=Zanzibar-bad-offer\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nthis is not sdp\r\n';
    secrets.push('Zanzibar-bad-offer');
    await expect(bob.connection.request('publish_offer', { sdp: badSdp })).rejects.toBeInstanceOf(SignalingError);
    const candidate = 'candidate:4242 1 udp 2130706431 127.0.0.1 61999 typ host';
    secrets.push('61999 typ host');
    await alice.connection
      .request('trickle_ice', { target: 'publisher', candidate: { candidate, sdpMid: '0' } })
      .catch((error: unknown) => error);
    const refreshed = (await (
      await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}/token`, {
        method: 'POST',
        headers: { authorization: `Bearer ${alice.join.token}` },
      })
    ).json()) as { token: string };
    secrets.push(refreshed.token);
    expectReply(await alice.connection.request('leave', {}), 'ack');
    const left = await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}/leave`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bob.join.token}` },
    });
    expect(left.status).toBe(200);
    // A refused token is logged as refused, not quoted.
    const refused = await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}/token`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bob.join.token}` },
    });
    expect(refused.status).toBe(401);

    await publisher.close();
    await subscriber.close();
    alice.connection.close();
    bob.connection.close();

    // The capture is real: both processes logged the call.
    await waitFor(() => logs.some((line) => line.startsWith('[edge]') && line.includes('participant left via REST')), {
      timeoutMs: 10_000,
      message: 'the edge to log the REST leave',
    });
    expect(logs.some((line) => line.startsWith('[media-node]') && line.includes(room.id))).toBe(true);

    const text = logs.join('\n');
    for (const secret of secrets) {
      // Tokens are checked by their signature too: a log that cut the token short would still leak it.
      const parts = secret.startsWith('eyJ') ? [secret, secret.split('.')[2]!] : [secret];
      for (const part of parts) expect(text.includes(part), `logs contain ${part.slice(0, 24)}…`).toBe(false);
    }
    expect(text).not.toMatch(/a=fingerprint|a=ice-pwd|m=video \d/);
  });
});
