import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EdgeEventSender } from '../../media-node/src/edge-events.ts';
import { newId } from '../../shared/src/ids.ts';
import { createLogger } from '../../shared/src/log.ts';
import { EDGE_MEDIA_EVENTS_PATH, type MediaEvent } from '../../shared/src/media-control.ts';
import { bearerToken, bodyDigest, verifyServiceToken } from '../../shared/src/service-token.ts';
import { EDGE_AUDIENCE, type MediaEventTokenClaims, MediaEventTokenClaimsSchema } from '../../shared/src/token.ts';

const secret = new TextEncoder().encode('x'.repeat(32));
const NODE = 'http://10.0.0.5:8081/';

/** An edge stand-in whose answer per request is chosen by the test. */
async function startEdge(answer: (event: MediaEvent, attempt: number) => number) {
  const received: MediaEvent[] = [];
  const claims: MediaEventTokenClaims[] = [];
  const attempts = new Map<string, number>();
  const server: Server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString();
    const event = JSON.parse(body) as MediaEvent;
    const token = bearerToken(request.headers.authorization) ?? '';
    const verified = await verifyServiceToken(token, secret, EDGE_AUDIENCE, NODE, MediaEventTokenClaimsSchema);
    // Bound to this body and this room, as the edge requires.
    expect(verified.body_sha256).toBe(await bodyDigest(body));
    expect(verified.room).toBe(event.room_id);
    claims.push(verified);
    expect(request.url).toBe(EDGE_MEDIA_EVENTS_PATH);
    const key = JSON.stringify(event);
    const attempt = (attempts.get(key) ?? 0) + 1;
    attempts.set(key, attempt);
    const status = answer(event, attempt);
    if (status < 300) received.push(event);
    response.writeHead(status).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    claims,
    attempts,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A sender as the node makes one, to `edgeUrl`, pausing `retryDelaysMs` before its retries. */
const senderTo = (edgeUrl: string, retryDelaysMs: number[]) =>
  new EdgeEventSender({ edgeUrl, secret, identity: () => NODE, logger: createLogger('error'), retryDelaysMs });

const closedEvent = (roomId: string, reason: string): MediaEvent => ({
  type: 'publisher_closed',
  room_id: roomId,
  participant_id: newId(),
  reason,
});

describe('events to the edge', () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  it('a speaker report waiting behind a slow delivery is superseded by the newer one; other events stay', async () => {
    // The first delivery fails once (so the rest queue behind its retry).
    const edge = await startEdge((event, attempt) => (event.type === 'publisher_closed' && attempt === 1 ? 503 : 204));
    stops.push(edge.close);
    const sender = senderTo(edge.url, [50]);
    const roomId = newId();
    const report = (level: number): MediaEvent => ({
      type: 'active_speakers',
      room_id: roomId,
      speakers: [{ participant_id: newId(), level }],
    });
    sender.send(closedEvent(roomId, 'first'));
    sender.send(report(0.1));
    sender.send(closedEvent(roomId, 'between'));
    sender.send(report(0.2));
    sender.send(report(0.3));
    await sender.flush(5_000);
    const delivered = edge.received.map((event) =>
      event.type === 'active_speakers' ? event.speakers[0]!.level : (event as { reason: string }).reason,
    );
    expect(delivered).toEqual(['first', 'between', 0.3]);
  });

  it('delivers each room in order with a service token for the edge audience, retrying failures', async () => {
    // The first attempt of every event fails with 503: each is retried, order is kept.
    const edge = await startEdge((_, attempt) => (attempt === 1 ? 503 : 204));
    stops.push(edge.close);
    const sender = senderTo(edge.url, [10, 10]);
    const roomId = newId();
    const events = ['one', 'two', 'three'].map((reason) => closedEvent(roomId, reason));
    for (const event of events) sender.send(event);
    await sender.flush(5_000);
    expect(edge.received.map((event) => (event as { reason: string }).reason)).toEqual(['one', 'two', 'three']);
    // Every request (retries too) carries a token used once: the edge refuses a jti it has seen.
    const jtis = edge.claims.map((claim) => claim.jti);
    expect(jtis).toHaveLength(6);
    expect(new Set(jtis).size).toBe(6);
  });

  it('gives up on a 4xx at once and after the last retry otherwise, without blocking the caller', async () => {
    const edge = await startEdge((event) => ((event as { reason: string }).reason === 'bad' ? 400 : 500));
    stops.push(edge.close);
    const sender = senderTo(edge.url, [10, 10]);
    const started = performance.now();
    sender.send(closedEvent(newId(), 'bad'));
    sender.send(closedEvent(newId(), 'down'));
    expect(performance.now() - started).toBeLessThan(50);
    await sender.flush(5_000);
    const attempts = [...edge.attempts.entries()].map(([key, count]) => [JSON.parse(key).reason, count]);
    expect(Object.fromEntries(attempts)).toEqual({ bad: 1, down: 3 });
  });

  it('keeps going when the edge is unreachable', async () => {
    const sender = senderTo('http://127.0.0.1:9', [5]);
    sender.send(closedEvent(newId(), 'lost'));
    const started = performance.now();
    await sender.flush(3_000);
    // flush resolved because the queue ran dry (connection refused, one retry), not by its timeout.
    expect(performance.now() - started).toBeLessThan(2_500);
  });
});
