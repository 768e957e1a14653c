import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { MediaNodeError } from '../../media-node/src/errors.ts';
import { createForwardingStats } from '../../media-node/src/sfu/forwarding-stats.ts';
import { createPeerConnection } from '../../media-node/src/sfu/peer-connection.ts';
import { PortAllocator } from '../../media-node/src/sfu/port-allocator.ts';
import { Publisher } from '../../media-node/src/sfu/publisher.ts';
import { createLogger } from '../../shared/src/log.ts';
import { PeerSet, TestPublisher } from '../support/werift-peers.ts';

/**
 * RTC ports held by another process: several media nodes on one host (a draining node and its
 * successor, parallel test stacks) share MEDIA_RTC_MIN_PORT..MAX, and ephemeral ports of any
 * process can fall inside it.
 */

const peers = new PeerSet();
const held: Socket[] = [];

afterEach(async () => {
  await peers.closeAll();
  for (const socket of held.splice(0)) socket.close();
});

function bind(port: number): Promise<Socket | undefined> {
  const socket = createSocket('udp4');
  return new Promise((resolve) => {
    socket.once('error', () => {
      socket.close();
      resolve(undefined);
    });
    socket.bind(port, '127.0.0.1', () => resolve(socket));
  });
}

/** Two consecutive UDP ports on loopback, bound here (as another process's sockets would be). */
async function holdTwoPorts(): Promise<[number, number]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const low = 20_000 + 2 * Math.floor(Math.random() * 5_000);
    const sockets = [await bind(low), await bind(low + 1)];
    if (sockets.every(Boolean)) {
      held.push(...(sockets as Socket[]));
      return [low, low + 1];
    }
    for (const socket of sockets) socket?.close();
  }
  throw new Error('no two consecutive free ports');
}

describe('RTC ports held by another process', () => {
  it('nodes sharing a range start handing out blocks at different places, so they do not fight over the first', () => {
    const firstBlocks = Array.from({ length: 20 }, () => new PortAllocator({ min: 40_000, max: 49_999 }, 2).acquire());
    expect(firstBlocks.every((block) => block !== undefined)).toBe(true);
    expect(new Set(firstBlocks.map((block) => block!.index)).size).toBeGreaterThan(1);
  });

  it('a publisher whose whole port block is taken fails as the node’s fault (503), not as a bad offer', async () => {
    const block = await holdTwoPorts();
    const publisher = new Publisher({
      participantId: 'alice',
      peerConnection: createPeerConnection({ hostAddresses: ['127.0.0.1'], listenIp: '127.0.0.1' }, 'ingress', block),
      announcedIp: undefined,
      stats: createForwardingStats(),
      logger: createLogger('error'),
      connectTimeoutMs: 30_000,
      onReleased: () => {},
    });
    const closed = new Promise<string>((resolve) => publisher.once('closed', (reason) => resolve(reason)));
    const browser = peers.track(await TestPublisher.create());
    const failure = await publisher.negotiate(await browser.createOffer()).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(MediaNodeError);
    expect(failure).toMatchObject({ status: 503, code: 'service_unavailable' });
    expect(await closed).toBe('peer connection failed');
  });
});
