import { afterEach, describe, expect, it, vi } from 'vitest';
import { ntpTime, ntpTime2Sec, ntpTimeToEpochMs, SourceDescriptionChunk, SourceDescriptionItem } from 'werift';

/**
 * werift's own sender reports (the node's legs through TURN or TCP, and werift's send path) carry its
 * ntpTime(). Stock werift took the seconds' decimal digits for the NTP fraction and read them back as
 * milliseconds, and left the null octet that ends an SDES item list out when the items ended on a 32-bit
 * boundary (while its parser counts it). As patched in patches/werift+*.patch: RFC 3550 §4 and §6.5.
 */
afterEach(() => vi.restoreAllMocks());

/** Unix milliseconds from 1900-01-01 (the NTP era's start) to 1970-01-01. */
const NTP_EPOCH_MS = -Date.UTC(1900, 0, 1);

describe('werift NTP time and SDES (patches/werift+*.patch)', () => {
  it('gives the fraction of a second as a fraction of 2^32, and reads it back', () => {
    // Half a second past a whole second of Unix time.
    const wholeSecondMs = Math.ceil(performance.timeOrigin / 1000) * 1000 + 2_000;
    vi.spyOn(performance, 'now').mockReturnValue(wholeSecondMs + 500 - performance.timeOrigin);
    const ntp = ntpTime();
    expect(ntp & 0xffff_ffffn).toBe(0x8000_0000n);
    expect(ntp >> 32n).toBe(BigInt((wholeSecondMs + NTP_EPOCH_MS) / 1000));
    expect(ntpTimeToEpochMs(ntp)).toBeCloseTo(wholeSecondMs + 500, 3);
  });

  it('converts an NTP timestamp to seconds with its fraction', () => {
    // 2001-09-09T01:46:40.25Z.
    expect(ntpTime2Sec(0xbf454880_40000000n)).toBe(0xbf454880 + 0.25);
    expect(ntpTimeToEpochMs(0xbf454880_40000000n)).toBe(1_000_000_000_250);
  });

  it('ends an SDES item list with a null octet, also when the items end on a 32-bit boundary', () => {
    for (const text of ['a', 'ab', 'abc', 'abcdef']) {
      const chunk = new SourceDescriptionChunk({ source: 1, items: [new SourceDescriptionItem({ type: 1, text })] });
      const bytes = chunk.serialize();
      expect(bytes.length % 4).toBe(0);
      expect(bytes.length).toBe(chunk.length);
      expect(bytes[4 + 2 + text.length]).toBe(0);
      expect(SourceDescriptionChunk.deSerialize(bytes).items.map((item) => item.text)).toEqual([text]);
    }
  });
});
