import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { classes, Message, methods, parseMessage } from 'werift';

/**
 * werift serializes a STUN message three times (for MESSAGE-INTEGRITY, for FINGERPRINT, to send it),
 * and an idle connection still exchanges a consent check every 4–6 s in each direction (RFC 7675).
 * As patched in patches/werift+*.patch, each serialization writes into one buffer (stock werift
 * concatenated buffers per attribute), and the FINGERPRINT CRC reads its tables without an iterator.
 */
afterEach(() => vi.restoreAllMocks());

const password = Buffer.from('an ICE password of 22+');
const STUN_FINGERPRINT_XOR = 0x5354554e;

function consentCheck(): Message {
  const request = new Message(methods.BINDING, classes.REQUEST);
  // USERNAME of an odd length: its value is padded to 4 bytes.
  request
    .setAttribute('USERNAME', 'abcd:efg')
    .setAttribute('PRIORITY', 1_853_817_087)
    .setAttribute('ICE-CONTROLLED', 0x0102_0304_0506_0708n)
    .setAttribute('XOR-MAPPED-ADDRESS', ['192.0.2.7', 40_000]);
  return request;
}

describe('werift STUN serialization (patches/werift+*.patch)', () => {
  it('writes header, transaction id and padded attributes as RFC 8489 lays them out, in one buffer', () => {
    const message = consentCheck();
    const concat = vi.spyOn(Buffer, 'concat');
    const bytes = message.bytes;
    // Only the XOR-MAPPED-ADDRESS packer's own concatenation is left (stock werift: six more).
    expect(concat.mock.calls.length).toBeLessThanOrEqual(1);
    concat.mockRestore();

    expect(bytes.readUInt16BE(0)).toBe(methods.BINDING | classes.REQUEST);
    expect(bytes.readUInt16BE(2)).toBe(bytes.length - 20);
    expect(bytes.readUInt32BE(4)).toBe(0x2112a442);
    expect(bytes.subarray(8, 20)).toEqual(message.transactionId);
    // USERNAME (type 0x0006, 8 bytes, no padding), then PRIORITY (0x0024) at 20 + 4 + 8.
    expect(bytes.readUInt16BE(20)).toBe(0x0006);
    expect(bytes.readUInt16BE(22)).toBe(8);
    expect(bytes.subarray(24, 32).toString()).toBe('abcd:efg');
    expect(bytes.readUInt16BE(32)).toBe(0x0024);
    expect(bytes.readUInt32BE(36)).toBe(1_853_817_087);
    expect(bytes.length % 4).toBe(0);

    const parsed = parseMessage(bytes);
    expect(parsed?.getAttributeValue('USERNAME')).toBe('abcd:efg');
    expect(parsed?.getAttributeValue('ICE-CONTROLLED')).toBe(0x0102_0304_0506_0708n);
    expect(parsed?.getAttributeValue('XOR-MAPPED-ADDRESS')).toEqual(['192.0.2.7', 40_000]);
  });

  it('pads an attribute of odd length with zeros', () => {
    const message = new Message(methods.BINDING, classes.REQUEST).setAttribute('USERNAME', 'abc:de');
    const bytes = message.bytes;
    expect(bytes.readUInt16BE(22)).toBe(6);
    expect([...bytes.subarray(30, 32)]).toEqual([0, 0]);
    expect(bytes.length).toBe(32);
  });

  it('signs and fingerprints so that the peer verifies both', () => {
    const message = consentCheck().addMessageIntegrity(password).addFingerprint();
    const bytes = message.bytes;
    expect(parseMessage(bytes, password)?.transactionId).toEqual(message.transactionId);
    expect(parseMessage(bytes, Buffer.from('another password'))).toBeUndefined();
    // FINGERPRINT: CRC-32 of everything before it (with the length covering it) XOR 0x5354554e.
    const fingerprint = bytes.readUInt32BE(bytes.length - 4);
    expect(fingerprint).toBe((crc32(bytes.subarray(0, bytes.length - 8)) ^ STUN_FINGERPRINT_XOR) >>> 0);
  });
});
