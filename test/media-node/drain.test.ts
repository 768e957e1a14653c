import { afterAll, describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { mediaControlPath } from '../../shared/src/media-control.ts';
import { TestPublisher, waitFor } from '../support/werift-peers.ts';
import { MediaNodeProcess, publishThrough } from './harness.ts';

describe('media node SIGTERM drain', () => {
  const cleanup: (() => Promise<void>)[] = [];

  afterAll(async () => {
    for (const step of cleanup) await step();
  });

  it('refuses new rooms with 503 while its rooms go on, then exits 0 when they have ended', async () => {
    const node = await MediaNodeProcess.start();
    cleanup.push(() => node.stop());
    const roomId = newId();
    const publisher = await TestPublisher.create({ video: false });
    cleanup.push(() => publisher.close());
    await publishThrough(node, roomId, newId(), publisher);

    node.signal('SIGTERM');
    await waitFor(
      async () => ((await (await fetch(new URL('/health', node.url))).json()) as { draining: boolean }).draining,
      {
        message: 'the node to report draining',
      },
    );

    const refused = await TestPublisher.create({ video: false });
    cleanup.push(() => refused.close());
    const newRoom = await node.request('POST', mediaControlPath('publish', newId()), {
      participant_id: newId(),
      sdp: await refused.createOffer(),
    });
    expect(newRoom.status).toBe(503);
    expect(newRoom.body).toMatchObject({ error: { code: 'service_unavailable', details: { draining: true } } });

    // The room in progress is still served: a second publisher joins it.
    const latecomer = await TestPublisher.create({ video: false });
    cleanup.push(() => latecomer.close());
    await publishThrough(node, roomId, newId(), latecomer);

    const metrics = await (await fetch(new URL('/metrics', node.url))).text();
    expect(metrics).toContain('truegather_draining 1');

    // The edge ends the call; the node has nothing left and exits by itself.
    expect((await node.request('DELETE', mediaControlPath('closeRoom', roomId))).status).toBe(200);
    expect(await node.exited).toBe(0);
  });

  it('closes the remaining rooms and exits once MEDIA_DRAIN_TIMEOUT_SECONDS has passed', async () => {
    const node = await MediaNodeProcess.start({ MEDIA_DRAIN_TIMEOUT_SECONDS: '1' });
    cleanup.push(() => node.stop());
    const publisher = await TestPublisher.create({ video: false });
    cleanup.push(() => publisher.close());
    await publishThrough(node, newId(), newId(), publisher);

    const signalledAt = performance.now();
    node.signal('SIGTERM');
    expect(await node.exited).toBe(0);
    expect(performance.now() - signalledAt).toBeLessThan(8_000);
  });
});
