import crypto, { KeyObject } from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { classes, Message, methods, parseMessage, RTCPeerConnection } from 'werift';
import { LOOPBACK_PEER_CONFIG, waitFor } from '../support/werift-peers.ts';

/**
 * What an idle connection costs werift's ICE, as patched in patches/werift+*.patch: every connection
 * checks consent (RFC 7675) every 4–6 s in each direction, and each check signs and verifies STUN
 * messages. The patch puts every connection's checks on one clock per thread and imports each ICE
 * password once as a KeyObject; without it, each connection runs a timer of its own and every HMAC
 * imports its raw key again.
 */

type NominatedPair = { consentRequestsSent: number; responsesReceived: number };
const nominated = (pc: RTCPeerConnection) =>
  (pc.iceTransports[0] as unknown as { connection: { nominated?: NominatedPair } }).connection.nominated;

const peers: RTCPeerConnection[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(peers.splice(0).map((pc) => pc.close()));
});

async function connectedPair(): Promise<[RTCPeerConnection, RTCPeerConnection]> {
  const offerer = new RTCPeerConnection(LOOPBACK_PEER_CONFIG);
  const answerer = new RTCPeerConnection(LOOPBACK_PEER_CONFIG);
  peers.push(offerer, answerer);
  offerer.addTransceiver('audio', { direction: 'sendonly' });
  await offerer.setLocalDescription(await offerer.createOffer());
  await answerer.setRemoteDescription(offerer.localDescription!);
  await answerer.setLocalDescription(await answerer.createAnswer());
  await offerer.setRemoteDescription(answerer.localDescription!);
  await waitFor(() => offerer.connectionState === 'connected' && answerer.connectionState === 'connected', {
    message: 'the pair to connect',
  });
  return [offerer, answerer];
}

describe('werift ICE while idle (patches/werift+*.patch)', () => {
  it('runs the consent checks of every connection on one clock, not a timer per connection', async () => {
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout');
    const setIntervalSpy = vi.spyOn(globalThis, 'setInterval');
    const connections = [...(await connectedPair()), ...(await connectedPair()), ...(await connectedPair())];
    // Every connection checks consent, in both directions, and gets its answer.
    const answered = connections.map((pc) => nominated(pc)?.responsesReceived ?? 0);
    await waitFor(
      () =>
        connections.every(
          (pc, index) =>
            (nominated(pc)?.consentRequestsSent ?? 0) >= 1 && nominated(pc)!.responsesReceived > answered[index]!,
        ),
      { timeoutMs: 15_000, intervalMs: 100, message: 'an answered consent check on every connection' },
    );
    expect(connections.every((pc) => pc.connectionState === 'connected')).toBe(true);
    // Stock werift waits 4–6 s per connection and check with a timer of its own.
    const consentDelays = [...setTimeoutSpy.mock.calls, ...setIntervalSpy.mock.calls]
      .map((call) => call[1] ?? 0)
      .filter((ms) => ms >= 3_000 && ms <= 6_500);
    expect(consentDelays).toEqual([]);
  }, 30_000);

  it('queries no STUN server when none is configured (stock werift falls back to Google)', async () => {
    const pc = new RTCPeerConnection(LOOPBACK_PEER_CONFIG);
    peers.push(pc);
    pc.addTransceiver('audio', { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const connection = (pc.iceTransports[0] as unknown as { connection: { stunServer?: unknown } }).connection;
    expect(connection.stunServer).toBeUndefined();
    expect(pc.localDescription!.sdp).not.toMatch(/typ srflx/);
  });

  it('signs and verifies STUN messages with each password imported once, as RFC 5389 says', () => {
    const keyTypes: string[] = [];
    let imports = 0;
    const { createHmac, createSecretKey } = crypto;
    crypto.createHmac = ((algorithm: string, key: crypto.BinaryLike | KeyObject) => {
      keyTypes.push(key instanceof KeyObject ? 'KeyObject' : typeof key);
      return createHmac(algorithm, key);
    }) as typeof crypto.createHmac;
    crypto.createSecretKey = ((key: NodeJS.ArrayBufferView) => {
      imports++;
      return createSecretKey(key);
    }) as typeof crypto.createSecretKey;
    syncBuiltinESMExports();
    try {
      const password = Buffer.from(crypto.randomBytes(16).toString('hex'));
      for (let index = 0; index < 3; index++) {
        const request = new Message(methods.BINDING, classes.REQUEST);
        request.setAttribute('USERNAME', 'remote:local').addMessageIntegrity(password).addFingerprint();
        const bytes = request.bytes;
        // MESSAGE-INTEGRITY: HMAC-SHA1 over the message up to it, its length field counting it.
        const integrityAt = bytes.length - 8 - 24;
        const signed = Buffer.from(bytes.subarray(0, integrityAt));
        signed.writeUInt16BE(integrityAt - 20 + 24, 2);
        expect(request.getAttributeValue('MESSAGE-INTEGRITY')).toEqual(
          createHmac('sha1', password).update(signed).digest(),
        );
        expect(parseMessage(bytes, password)?.transactionId).toEqual(request.transactionId);
        expect(parseMessage(bytes, Buffer.from('not the password'))).toBeUndefined();
      }
    } finally {
      crypto.createHmac = createHmac;
      crypto.createSecretKey = createSecretKey;
      syncBuiltinESMExports();
    }
    expect(keyTypes.length).toBeGreaterThanOrEqual(6);
    expect(keyTypes.every((type) => type === 'KeyObject')).toBe(true);
    // One import for the password, one for the wrong one.
    expect(imports).toBe(2);
  });
});
