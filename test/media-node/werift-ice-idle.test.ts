import crypto, { KeyObject } from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CandidatePair, classes, Message, methods, parseMessage, RTCPeerConnection } from 'werift';
import { connectPeers, LOOPBACK_PEER_CONFIG, waitFor } from '../support/werift-peers.ts';

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
  await connectPeers(offerer, answerer);
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

  it('aborts nothing when a consent check was answered: the next check has no request left to cancel', async () => {
    const [offerer] = await connectedPair();
    const abort = vi.spyOn(AbortController.prototype, 'abort');
    const answered = nominated(offerer)?.responsesReceived ?? 0;
    // Two more answered checks: stock werift aborts the first one's (settled) request when it sends
    // the second, building a DOMException with a stack trace each time.
    await waitFor(() => (nominated(offerer)?.responsesReceived ?? 0) >= answered + 2, {
      timeoutMs: 20_000,
      intervalMs: 100,
      message: 'two more answered consent checks',
    });
    expect(offerer.connectionState).toBe('connected');
    expect(abort).not.toHaveBeenCalled();
  }, 30_000);

  it('remembers the latest incoming check ids of a pair (to spot retransmissions), not every one it ever got', () => {
    const pair = new CandidatePair(
      {} as ConstructorParameters<typeof CandidatePair>[0],
      {} as ConstructorParameters<typeof CandidatePair>[1],
      false,
    );
    const ids = (pair as unknown as { requestTransactionIds: Set<string> }).requestTransactionIds;
    // A day of the peer's consent checks (one per ~5 s) on one connection.
    for (let check = 0; check < 17_280; check++) {
      expect(pair.noteIncomingRequest(`check-${check}`)).toBe(false);
    }
    expect(ids.size).toBeLessThanOrEqual(32);
    // A retransmission of a recent check is still recognized as one.
    expect(pair.noteIncomingRequest('check-17279')).toBe(true);
    expect(pair.noteIncomingRequest('check-17250')).toBe(true);
    expect(pair.retransmissionsReceived).toBe(2);
  });

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
  it('reads and writes XOR-MAPPED-ADDRESS as RFC 5389 §15.2 says, in one copy rather than a Buffer per byte', () => {
    const concat = vi.spyOn(Buffer, 'concat');
    /** The attribute's value as sent, and Buffer.concat calls for one response written and read back. */
    const roundTrip = (address: [string, number]) => {
      concat.mockClear();
      const response = new Message(methods.BINDING, classes.RESPONSE);
      response.setAttribute('XOR-MAPPED-ADDRESS', address);
      const parsed = parseMessage(response.bytes);
      expect(parsed?.getAttributeValue('XOR-MAPPED-ADDRESS')).toEqual(address);
      const bytes = response.bytes;
      const value = bytes.subarray(20 + 4, 20 + 4 + bytes.readUInt16BE(20 + 2));
      return { value, transactionId: response.transactionId, concats: concat.mock.calls.length };
    };
    const v4 = roundTrip(['192.0.2.1', 32_853]);
    // Port XOR the cookie's high 16 bits, IPv4 address XOR the cookie (0x2112a442).
    expect(v4.value.toString('hex')).toBe(
      `0001${(32_853 ^ 0x2112).toString(16)}${((0xc0000201 ^ 0x2112a442) >>> 0).toString(16)}`,
    );
    const v6 = roundTrip(['2001:db8:1234:5678:11:2233:4455:6677', 32_853]);
    const address = Buffer.from('20010db8123456780011223344556677', 'hex');
    const pad = Buffer.concat([Buffer.from('2112a442', 'hex'), v6.transactionId]);
    for (let index = 0; index < 16; index++) address[index]! ^= pad[index]!;
    expect(v6.value.toString('hex')).toBe(`0002${(32_853 ^ 0x2112).toString(16)}${address.toString('hex')}`);
    // Stock werift concatenates once per address byte: 12 more for an IPv6 address than for IPv4.
    expect(v6.concats).toBe(v4.concats);
  });
});
