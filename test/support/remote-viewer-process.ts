import { createInterface } from 'node:readline';
import { TestSubscriber } from './werift-peers.ts';

/**
 * The process of a {@link RemoteViewer}: a werift viewer on the address given as its argument,
 * driven over stdio in JSON lines. It answers `{type: 'offer', sdp}` with `{type: 'answer', sdp}` and
 * reports each VP8 keyframe it receives as `{type: 'keyframe', width, height}`.
 */
const address = process.argv[2];
if (!address) throw new Error('usage: remote-viewer-process.ts <local address>');
const send = (message: unknown) => process.stdout.write(`${JSON.stringify(message)}\n`);
const subscriber = new TestSubscriber({
  ice: { iceAdditionalHostAddresses: [address], iceInterfaceAddresses: { udp4: address } },
  onKeyframe: (size) => send({ type: 'keyframe', ...size }),
});
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const message = JSON.parse(line) as { type: 'offer'; sdp: string };
  subscriber.answer(message.sdp).then(
    (sdp) => send({ type: 'answer', sdp }),
    (error: unknown) => send({ type: 'error', message: String(error) }),
  );
});
// The parent closing stdin (or going away) ends the viewer.
lines.on('close', () => {
  subscriber.close().finally(() => process.exit(0));
});
