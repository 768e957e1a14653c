import { describe, expect, it } from 'vitest';
import { advertisesLoopbackByDefault, parseMediaNodeConfig } from '../../media-node/src/config.ts';
import { badSdp, loggableError } from '../../media-node/src/errors.ts';
import { PortAllocator, workerPortSlice } from '../../media-node/src/sfu/port-allocator.ts';
import {
  announceHostCandidates,
  fingerprintOf,
  isMdnsCandidate,
  MAX_MEDIA_SECTIONS,
  midsOf,
  sdpShapeProblem,
  withoutMdnsCandidates,
} from '../../media-node/src/sfu/sdp-text.ts';
import { ConfigError } from '../../shared/src/config.ts';

const SECRET = 'y'.repeat(32);

describe('SDP line edits', () => {
  const sdp = [
    'v=0',
    'o=- 1 1 IN IP4 0.0.0.0',
    's=-',
    't=0 0',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111',
    'a=candidate:1 1 udp 2116026367 10.0.0.5 40000 typ host generation 0',
    'a=candidate:2 1 udp 1686052607 198.51.100.7 40000 typ srflx raddr 10.0.0.5 rport 40000',
    'a=candidate:3 1 udp 2116026367 4c1b0d8e-93a3-4f49-b0f0-8c0a0f4d3d2a.local 50000 typ host',
    'a=ice-ufrag:abcd',
    'a=fingerprint:sha-256 AB:CD',
    'a=mid:0',
    '',
  ].join('\r\n');

  it('announces the public IP on host candidates only', () => {
    const announced = announceHostCandidates(sdp, '203.0.113.9');
    expect(announced).toContain('a=candidate:1 1 udp 2116026367 203.0.113.9 40000 typ host');
    expect(announced).toContain('198.51.100.7 40000 typ srflx');
    expect(announceHostCandidates(sdp, undefined)).toBe(sdp);
  });

  it('drops mDNS candidates, reads fingerprints and mids, and checks the shape', () => {
    expect(isMdnsCandidate('candidate:3 1 udp 1 abc.local 5 typ host')).toBe(true);
    expect(withoutMdnsCandidates(sdp)).not.toContain('.local');
    expect(fingerprintOf(sdp)).toBe('sha-256 ab:cd');
    expect(midsOf(sdp)).toEqual(['0']);
    expect(sdpShapeProblem(sdp, { media: true })).toBeUndefined();
    expect(sdpShapeProblem('v=0\r\nnot a line\r\n', { media: false })).toBe('every line must be <type>=<value>');
    expect(sdpShapeProblem('v=0\r\ns=-\r\n', { media: true })).toBe('no audio or video m-line');
  });

  it('refuses more than 8 audio/video m-lines in a publisher offer only', () => {
    const withSections = (count: number) =>
      [
        'v=0',
        'o=- 1 1 IN IP4 0.0.0.0',
        's=-',
        't=0 0',
        'a=ice-ufrag:abcd',
        'a=fingerprint:sha-256 AB:CD',
        ...Array.from({ length: count }, (_, mid) => [`m=video 9 UDP/TLS/RTP/SAVPF 96`, `a=mid:${mid}`]).flat(),
        '',
      ].join('\r\n');
    const publisherOffer = { media: true, maxMediaSections: MAX_MEDIA_SECTIONS };
    expect(sdpShapeProblem(withSections(MAX_MEDIA_SECTIONS), publisherOffer)).toBeUndefined();
    expect(sdpShapeProblem(withSections(MAX_MEDIA_SECTIONS + 1), publisherOffer)).toBe(
      'more than 8 audio/video m-lines',
    );
    // A subscriber's answer mirrors the node's offer: many feeds, many m-lines.
    expect(sdpShapeProblem(withSections(12), { media: false })).toBeUndefined();
  });
});

describe('errors in logs', () => {
  it('keeps class and code and drops messages, which can quote SDP or candidates', () => {
    const parseError = new Error('invalid line a=candidate:1 1 udp 2116026367 10.0.0.5 40000 typ host');
    expect(loggableError(parseError)).toBe('Error');
    expect(loggableError(badSdp('m=video 9 UDP/TLS/RTP/SAVPF 96: unsupported'))).toBe('MediaNodeError bad_sdp');
    const systemError = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:443'), { code: 'ECONNREFUSED' });
    expect(loggableError(systemError)).toBe('Error ECONNREFUSED');
    expect(loggableError(new TypeError('v=0\r\no=- 1 1'))).toBe('TypeError');
    const odd = Object.assign(new Error('x'), { name: 'a=fingerprint:sha-256 AB', code: 'm=audio 9' });
    expect(loggableError(odd)).toBe('Error');
    expect(loggableError('a=candidate:1 1 udp')).toBe('string');
    expect(loggableError(undefined)).toBe('undefined');
  });

  it('keeps the message of a configuration error, which names variables only', () => {
    try {
      parseMediaNodeConfig({ MEDIA_NODE_SECRET: 'short' });
      expect.unreachable();
    } catch (error) {
      expect(loggableError(error)).toContain('MEDIA_NODE_SECRET');
      expect(loggableError(error)).not.toContain('short');
    }
  });
});

describe('RTC port blocks', () => {
  it('splits the range between workers and never hands out a port twice', () => {
    expect(workerPortSlice({ min: 40_000, max: 40_099 }, 1, 2)).toEqual({ min: 40_050, max: 40_099 });
    const ports = new PortAllocator({ min: 40_000, max: 40_009 }, 2);
    expect(ports.capacity).toBe(5);
    const blocks = Array.from({ length: 5 }, () => ports.acquire()!);
    expect(new Set(blocks.flatMap((block) => block.range)).size).toBe(10);
    expect(ports.acquire()).toBeUndefined();
    ports.release(blocks[2]!);
    expect(ports.acquire()?.range).toEqual(blocks[2]!.range);
  });
});

describe('media node configuration', () => {
  it('parses the defaults and a full environment', () => {
    const config = parseMediaNodeConfig({
      MEDIA_NODE_SECRET: SECRET,
      MEDIA_ANNOUNCED_IP: '203.0.113.9',
      MEDIA_RTC_LISTEN_IP: '10.0.0.5',
      MEDIA_RTC_MIN_PORT: '50000',
      MEDIA_RTC_MAX_PORT: '50999',
      STUN_SERVER: 'stun:stun.example.org:3478',
      UPSTASH_REDIS_REST_URL: 'https://example.upstash.io',
      UPSTASH_REDIS_REST_TOKEN: 'token',
    });
    expect(config).toMatchObject({
      port: 8081,
      announcedIp: '203.0.113.9',
      rtcListenIp: '10.0.0.5',
      rtcPortRange: { min: 50_000, max: 50_999 },
      connectTimeoutSeconds: 30,
      workerBusyUtilization: 0.7,
      roomAffinity: 200,
      dynacast: false,
      ice: { stunUrl: 'stun:stun.example.org:3478' },
      upstash: { url: 'https://example.upstash.io', token: 'token' },
    });
    expect(config.workers).toBeGreaterThanOrEqual(1);
  });

  it('knows when the registry would advertise a loopback URL (MEDIA_HOST=0.0.0.0, no MEDIA_PUBLIC_URL)', () => {
    const config = (env: Record<string, string>) => parseMediaNodeConfig({ MEDIA_NODE_SECRET: SECRET, ...env });
    expect(advertisesLoopbackByDefault(config({}))).toBe(true);
    expect(advertisesLoopbackByDefault(config({ MEDIA_HOST: '::' }))).toBe(true);
    expect(advertisesLoopbackByDefault(config({ MEDIA_PUBLIC_URL: 'http://media-1.internal:8081' }))).toBe(false);
    expect(advertisesLoopbackByDefault(config({ MEDIA_HOST: '10.0.0.5' }))).toBe(false);
  });

  it('turns dynacast on with MEDIA_DYNACAST=true only', () => {
    const dynacast = (value: string) =>
      parseMediaNodeConfig({ MEDIA_NODE_SECRET: SECRET, MEDIA_DYNACAST: value }).dynacast;
    expect(dynacast('true')).toBe(true);
    expect(dynacast('false')).toBe(false);
  });

  it.each([
    [{ MEDIA_NODE_SECRET: 'short' }, 'MEDIA_NODE_SECRET'],
    [{ MEDIA_NODE_SECRET: SECRET, MEDIA_RTC_MIN_PORT: '5000', MEDIA_RTC_MAX_PORT: '5000' }, 'MEDIA_RTC_MIN_PORT'],
    [{ MEDIA_NODE_SECRET: SECRET, MEDIA_RTC_LISTEN_IP: '0.0.0.0' }, 'MEDIA_RTC_LISTEN_IP'],
    [{ MEDIA_NODE_SECRET: SECRET, UPSTASH_REDIS_REST_URL: 'https://x.upstash.io' }, 'UPSTASH_REDIS_REST_TOKEN'],
    [{ MEDIA_NODE_SECRET: SECRET, MEDIA_DYNACAST: 'sometimes' }, 'MEDIA_DYNACAST'],
    // A fraction of one event loop: 0 would make every worker busy, above 1 none ever is.
    [{ MEDIA_NODE_SECRET: SECRET, MEDIA_WORKER_BUSY_UTILIZATION: '0' }, 'MEDIA_WORKER_BUSY_UTILIZATION'],
    [{ MEDIA_NODE_SECRET: SECRET, MEDIA_WORKER_BUSY_UTILIZATION: '70' }, 'MEDIA_WORKER_BUSY_UTILIZATION'],
  ])('refuses %j', (env, variable) => {
    expect(() => parseMediaNodeConfig(env)).toThrow(ConfigError);
    try {
      parseMediaNodeConfig(env);
    } catch (error) {
      expect((error as ConfigError).variables).toContain(variable);
    }
  });
});
