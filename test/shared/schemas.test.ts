import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, parseEnvironment, SecretSchema } from '../../shared/src/config.ts';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { IceServerSchema } from '../../shared/src/ice.ts';
import { newId } from '../../shared/src/ids.ts';
import {
  AddIceCandidateRequestSchema,
  MediaEventSchema,
  PublishRequestSchema,
  SubscribeRequestSchema,
  SubscriberAnswerRequestSchema,
} from '../../shared/src/media-control.ts';
import { isTransportAllowed } from '../../shared/src/media-node-trust.ts';
import {
  CreateRoomRequestSchema,
  JoinRoomRequestSchema,
  JoinRoomResponseSchema,
  RoomDetailsSchema,
} from '../../shared/src/rest.ts';
import { ClientFrameSchema, FrameEnvelopeSchema, ServerFrameSchema } from '../../shared/src/signaling.ts';
import { TokenClaimsSchema } from '../../shared/src/token.ts';
import { EdgeEnvSchema } from '../../workers/src/env-schema.ts';

const id = () => newId();
const sdp = 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';
const iso = '2026-11-24T10:00:00.000Z';

describe('ids', () => {
  it('are 22-character base64url and unique', () => {
    const ids = new Set(Array.from({ length: 1000 }, id));
    expect(ids.size).toBe(1000);
    for (const value of ids) expect(value).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });
});

describe('REST bodies', () => {
  it('create room: defaults max_publishers to 10 and accepts the seed example', () => {
    expect(CreateRoomRequestSchema.parse({ name: 'Ma Réunion' })).toEqual({ name: 'Ma Réunion', max_publishers: 10 });
    expect(CreateRoomRequestSchema.parse({ name: 'Ma Réunion', max_publishers: 10 }).max_publishers).toBe(10);
  });

  it.each([
    ['empty name', { name: '' }],
    ['blank name', { name: '   ' }],
    ['129-char name', { name: 'x'.repeat(129) }],
    ['100 kB name', { name: 'x'.repeat(100_000) }],
    ['missing name', {}],
    ['numeric name', { name: 42 }],
    ['max_publishers -1', { name: 'a', max_publishers: -1 }],
    ['max_publishers 0', { name: 'a', max_publishers: 0 }],
    ['max_publishers "ten"', { name: 'a', max_publishers: 'ten' }],
    ['max_publishers 1e9', { name: 'a', max_publishers: 1e9 }],
    ['max_publishers 2.5', { name: 'a', max_publishers: 2.5 }],
    ['unknown field', { name: 'a', admin: true }],
  ])('create room rejects %s', (_label, body) => {
    expect(CreateRoomRequestSchema.safeParse(body).success).toBe(false);
  });

  it('join: display 1..64 characters', () => {
    expect(JoinRoomRequestSchema.parse({ display: 'Alice' })).toEqual({ display: 'Alice' });
    expect(JoinRoomRequestSchema.safeParse({}).success).toBe(false);
    expect(JoinRoomRequestSchema.safeParse({ display: '' }).success).toBe(false);
    expect(JoinRoomRequestSchema.safeParse({ display: 'x'.repeat(65) }).success).toBe(false);
    expect(JoinRoomRequestSchema.safeParse({ display: 'x'.repeat(5000) }).success).toBe(false);
    expect(JoinRoomRequestSchema.safeParse({ display: ['Alice'] }).success).toBe(false);
  });

  it('responses: join and room details', () => {
    const join = {
      token: 'a.b.c',
      participant_id: id(),
      room_id: id(),
      expires_at: iso,
      ws_url: 'ws://localhost:8080/ws?room_id=x',
      ice_servers: [{ urls: 'stun:127.0.0.1:3478' }, { urls: ['turn:127.0.0.1:3478'], username: 'u', credential: 'c' }],
    };
    expect(JoinRoomResponseSchema.parse(join)).toEqual(join);
    expect(JoinRoomResponseSchema.safeParse({ ...join, expires_at: 'tomorrow' }).success).toBe(false);
    expect(JoinRoomResponseSchema.safeParse({ ...join, room_id: '../etc/passwd' }).success).toBe(false);
    const room = { id: id(), name: 'r', max_publishers: 10, created_at: iso, expires_at: iso };
    expect(
      RoomDetailsSchema.parse({
        ...room,
        participants: 2,
        publishers: [{ id: id(), display: 'A', streams: [{ kind: 'audio', mid: '0', muted: true }] }],
      }),
    ).toBeTruthy();
    expect(RoomDetailsSchema.safeParse({ ...room, participants: -1, publishers: [] }).success).toBe(false);
  });

  it('ice servers take only stun/turn URLs', () => {
    expect(IceServerSchema.safeParse({ urls: 'https://evil.example' }).success).toBe(false);
    expect(IceServerSchema.safeParse({ urls: [] }).success).toBe(false);
  });

  it('error envelope', () => {
    expect(ErrorEnvelopeSchema.parse({ error: { code: 'not_found', message: 'no such room' } })).toBeTruthy();
    expect(ErrorEnvelopeSchema.safeParse({ error: { code: 'teapot', message: 'x' } }).success).toBe(false);
    expect(ErrorEnvelopeSchema.safeParse({ error: 'not_found' }).success).toBe(false);
  });
});

describe('signaling frames', () => {
  const valid = [
    { type: 'join_room', request_id: '1', payload: { room_id: id(), display: 'Alice' } },
    { type: 'publish_offer', request_id: '2', payload: { sdp, kind: 'video' } },
    { type: 'publish_offer', payload: { sdp } },
    {
      type: 'trickle_ice',
      payload: { candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 5000 typ host', sdpMid: '0' } },
    },
    { type: 'trickle_ice', payload: { target: 'subscriber', candidate: null } },
    { type: 'subscribe', request_id: 'x', payload: { feeds: [id(), id()] } },
    { type: 'subscribe_answer', payload: { sdp } },
    { type: 'unsubscribe', payload: { feeds: [id()] } },
    { type: 'unpublish', payload: {} },
    { type: 'leave', request_id: '9', payload: {} },
  ];

  it.each(valid.map((frame) => [frame.type, frame]))('accepts %s', (_type, frame) => {
    expect(ClientFrameSchema.safeParse(frame).success).toBe(true);
  });

  it('defaults trickle_ice target to publisher and leave payload to {}', () => {
    const trickle = ClientFrameSchema.parse({ type: 'trickle_ice', payload: { candidate: null } });
    expect(trickle.type === 'trickle_ice' && trickle.payload.target).toBe('publisher');
    expect(ClientFrameSchema.parse({ type: 'leave' }).payload).toEqual({});
  });

  it.each([
    ['unknown type', { type: 'hack', payload: {} }],
    ['missing payload', { type: 'join_room' }],
    ['bad room id', { type: 'join_room', payload: { room_id: 'short', display: 'A' } }],
    ['oversize display', { type: 'join_room', payload: { room_id: id(), display: 'x'.repeat(65) } }],
    ['missing sdp', { type: 'publish_offer', payload: {} }],
    ['non-SDP', { type: 'publish_offer', payload: { sdp: 'hello' } }],
    ['SDP over 64 KiB', { type: 'publish_offer', payload: { sdp: `v=0\r\n${'a'.repeat(64 * 1024)}` } }],
    ['numeric sdp', { type: 'subscribe_answer', payload: { sdp: 12 } }],
    ['bad target', { type: 'trickle_ice', payload: { target: 'both', candidate: null } }],
    ['oversize candidate', { type: 'trickle_ice', payload: { candidate: { candidate: 'c'.repeat(2000) } } }],
    ['empty feeds', { type: 'subscribe', payload: { feeds: [] } }],
    ['101 feeds', { type: 'subscribe', payload: { feeds: Array.from({ length: 101 }, id) } }],
    ['feeds not ids', { type: 'unsubscribe', payload: { feeds: ['x'] } }],
    ['oversize request_id', { type: 'leave', request_id: 'r'.repeat(65), payload: {} }],
    ['numeric request_id', { type: 'leave', request_id: 7, payload: {} }],
    ['extra payload field', { type: 'unpublish', payload: { force: true } }],
  ])('rejects %s', (_label, frame) => {
    expect(ClientFrameSchema.safeParse(frame).success).toBe(false);
  });

  it('the envelope schema reads type and request_id of any frame', () => {
    expect(FrameEnvelopeSchema.parse({ type: 'hack', request_id: '3', payload: 1 })).toMatchObject({ request_id: '3' });
    expect(FrameEnvelopeSchema.safeParse({ payload: {} }).success).toBe(false);
  });

  it('server frames: replies and events', () => {
    const publisher = { id: id(), display: 'Alice', streams: [{ kind: 'video', mid: '0', codec: 'VP8' }] };
    const frames = [
      {
        type: 'joined',
        request_id: '1',
        payload: { participant_id: id(), room_id: id(), publishers: [publisher], ice_servers: [] },
      },
      { type: 'publish_answer', request_id: '2', payload: { sdp } },
      { type: 'subscribe_offer', payload: { sdp } },
      { type: 'ack', request_id: '3', payload: {} },
      { type: 'error', request_id: '4', payload: { code: 'room_full', message: 'full' } },
      { type: 'publisher_joined', payload: { publisher } },
      { type: 'publisher_left', payload: { publisher_id: id() } },
      { type: 'participant_joined', payload: { participant: { id: id(), display: 'Bob' } } },
      { type: 'participant_left', payload: { participant: { id: id(), display: 'Bob' } } },
      { type: 'trickle_ice', payload: { target: 'subscriber', candidate: null } },
    ];
    for (const frame of frames) expect(ServerFrameSchema.safeParse(frame).success).toBe(true);
    expect(ServerFrameSchema.safeParse({ type: 'error', payload: { code: 'nope', message: '' } }).success).toBe(false);
    expect(
      ServerFrameSchema.safeParse({
        type: 'publisher_joined',
        payload: { publisher: { ...publisher, streams: [{ kind: 'smell' }] } },
      }).success,
    ).toBe(false);
  });
});

describe('token claims', () => {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: 'truegather-edge',
    aud: 'truegather-client',
    sub: id(),
    room: id(),
    name: 'Alice',
    grants: { publish: true, subscribe: true, admin: false },
    jti: id(),
    iat: now,
    exp: now + 900,
  };

  it('accepts the contract claims; grants added since default for tokens that lack them', () => {
    expect(TokenClaimsSchema.parse(claims)).toEqual({
      ...claims,
      grants: { ...claims.grants, publish_data: true, hidden: false },
    });
  });

  it.each([
    ['wrong issuer', { iss: 'someone-else' }],
    ['wrong audience', { aud: 'media-node' }],
    ['missing grants', { grants: undefined }],
    ['extra grant', { grants: { publish: true, subscribe: true, admin: false, root: true } }],
    ['string exp', { exp: 'soon' }],
    ['bad room', { room: 'x' }],
  ])('rejects %s', (_label, patch) => {
    expect(TokenClaimsSchema.safeParse({ ...claims, ...patch }).success).toBe(false);
  });
});

describe('media-node control bodies', () => {
  it('accepts valid bodies and rejects oversize or missing fields', () => {
    expect(PublishRequestSchema.safeParse({ participant_id: id(), sdp }).success).toBe(true);
    expect(PublishRequestSchema.safeParse({ participant_id: id() }).success).toBe(false);
    expect(PublishRequestSchema.safeParse({ participant_id: id(), sdp: `v=0${'a'.repeat(70_000)}` }).success).toBe(
      false,
    );
    expect(SubscribeRequestSchema.safeParse({ feeds: [] }).success).toBe(true);
    expect(SubscribeRequestSchema.safeParse({ feeds: [id()] }).success).toBe(true);
    expect(SubscribeRequestSchema.safeParse({ feeds: ['nope'] }).success).toBe(false);
    expect(SubscriberAnswerRequestSchema.safeParse({ sdp: '' }).success).toBe(false);
    expect(AddIceCandidateRequestSchema.safeParse({ target: 'publisher', candidate: null }).success).toBe(true);
    expect(AddIceCandidateRequestSchema.safeParse({ candidate: null }).success).toBe(false);
  });

  it('media events are a closed union', () => {
    const base = { room_id: id(), participant_id: id() };
    expect(MediaEventSchema.safeParse({ type: 'publisher_ready', ...base, streams: [{ kind: 'audio' }] }).success).toBe(
      true,
    );
    expect(MediaEventSchema.safeParse({ type: 'subscriber_offer', ...base, sdp, feeds: [] }).success).toBe(true);
    expect(MediaEventSchema.safeParse({ type: 'reboot', ...base }).success).toBe(false);
    expect(MediaEventSchema.safeParse({ type: 'publisher_closed', ...base }).success).toBe(false);
  });

  it('a speaker report names participants with a level in 0..1, at most one per possible publisher', () => {
    const report = (speakers: unknown) =>
      MediaEventSchema.safeParse({ type: 'active_speakers', room_id: id(), speakers });
    expect(report([]).success).toBe(true);
    expect(report([{ participant_id: id(), level: 0.25 }]).success).toBe(true);
    expect(report([{ participant_id: id(), level: 1.5 }]).success).toBe(false);
    expect(report([{ participant_id: id(), level: -0.1 }]).success).toBe(false);
    expect(report([{ participant_id: 'nope', level: 0.5 }]).success).toBe(false);
    expect(report(Array.from({ length: 101 }, () => ({ participant_id: id(), level: 0.1 }))).success).toBe(false);
    const frame = { type: 'active_speakers', payload: { speakers: [{ participant_id: id(), level: 0.5 }] } };
    expect(ServerFrameSchema.safeParse(frame).success).toBe(true);
  });
});

describe('config parsing', () => {
  const schema = z.object({ JWT_SECRET: SecretSchema, PORT: z.coerce.number().int().default(8080) });

  it('names the bad variable', () => {
    expect(() => parseEnvironment(schema, { JWT_SECRET: 'short' })).toThrow(/JWT_SECRET: must be at least 32 bytes/);
    try {
      parseEnvironment(schema, { PORT: 'eighty' });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).variables).toEqual(['JWT_SECRET', 'PORT']);
    }
  });

  it('treats empty strings as unset', () => {
    expect(() => parseEnvironment(schema, { JWT_SECRET: '' })).toThrow(/JWT_SECRET: is required/);
    expect(parseEnvironment(schema, { JWT_SECRET: 'x'.repeat(32), PORT: '' }).PORT).toBe(8080);
  });
});

describe('transport to a media node', () => {
  const edgeEnv = (extra: Record<string, string>) => ({
    JWT_SECRET: 'j'.repeat(32),
    MEDIA_NODE_SECRET: 'm'.repeat(32),
    ...extra,
  });

  it('refuses MEDIA_NODE_URL over http to a public address unless MEDIA_NODE_ALLOW_HTTP', () => {
    expect(() => parseEnvironment(EdgeEnvSchema, edgeEnv({ MEDIA_NODE_URL: 'http://203.0.113.7:8081' }))).toThrow(
      /MEDIA_NODE_URL: must be https/,
    );
    const allowed = edgeEnv({ MEDIA_NODE_URL: 'http://203.0.113.7:8081', MEDIA_NODE_ALLOW_HTTP: 'true' });
    expect(parseEnvironment(EdgeEnvSchema, allowed).MEDIA_NODE_ALLOW_HTTP).toBe(true);
    for (const url of ['https://media.example', 'http://127.0.0.1:8081', 'http://10.0.0.5:8081']) {
      expect(parseEnvironment(EdgeEnvSchema, edgeEnv({ MEDIA_NODE_URL: url })).MEDIA_NODE_URL).toEqual([url]);
    }
  });

  it('takes several static media nodes in MEDIA_NODE_URL, separated by commas, each checked', () => {
    const two = edgeEnv({ MEDIA_NODE_URL: 'http://127.0.0.1:8081, http://127.0.0.1:8082' });
    expect(parseEnvironment(EdgeEnvSchema, two).MEDIA_NODE_URL).toEqual([
      'http://127.0.0.1:8081',
      'http://127.0.0.1:8082',
    ]);
    const oneInsecure = edgeEnv({ MEDIA_NODE_URL: 'http://127.0.0.1:8081,http://203.0.113.7:8081' });
    expect(() => parseEnvironment(EdgeEnvSchema, oneInsecure)).toThrow(/MEDIA_NODE_URL: must be https/);
    for (const bad of [',', 'http://127.0.0.1:8081,not a url', 'ftp://127.0.0.1']) {
      expect(() => parseEnvironment(EdgeEnvSchema, edgeEnv({ MEDIA_NODE_URL: bad }))).toThrow(/MEDIA_NODE_URL/);
    }
  });

  it.each([
    ['http://127.0.0.1:8081', true],
    ['http://localhost:8081', true],
    ['http://172.16.0.1', true],
    ['http://172.32.0.1', false],
    ['http://192.168.1.2', true],
    ['http://[::1]:8081', true],
    ['http://[fd00::5]', true],
    ['http://[::ffff:127.0.0.1]', true],
    ['http://[::ffff:8.8.8.8]', false],
    ['http://[2001:db8::1]', false],
    ['http://8.8.8.8', false],
    ['http://media.internal', false],
    ['https://8.8.8.8', true],
    ['ftp://127.0.0.1', false],
  ])('%s is allowed without the flag: %s', (url, allowed) => {
    expect(isTransportAllowed(url, false)).toBe(allowed);
  });
});
