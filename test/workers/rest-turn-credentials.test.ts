import { describe, expect, it } from 'vitest';
import { iceServersFor, turnRestCredentials } from '../../workers/src/auth/turn-credentials.ts';

/** TURN REST API credentials, checked against a vector computed with openssl. */

const secret = 'turn-shared-secret-for-tests-0123456789';
const participantId = 'Wp0aJtUCoydMwjEonSAcBg';
const now = 1_700_000_000_000;

describe('turnRestCredentials', () => {
  it('signs `<expiry>:<participant>` with HMAC-SHA1 in base64', async () => {
    // printf '1700003600:Wp0aJtUCoydMwjEonSAcBg' | openssl dgst -sha1 -hmac "$secret" -binary | base64
    expect(await turnRestCredentials(secret, participantId, 3600, now)).toEqual({
      username: '1700003600:Wp0aJtUCoydMwjEonSAcBg',
      credential: 'zFRmFB67KXo7jHyATsxc8BMjWq8=',
    });
  });
});

describe('iceServersFor', () => {
  it('is empty when nothing is configured', async () => {
    expect(await iceServersFor({}, participantId, now)).toEqual([]);
  });

  it('lists STUN, and TURN without credentials when no secret is set', async () => {
    const ice = { stunUrl: 'stun:stun.example.org', turn: { url: 'turns:turn.example.org:443', ttlSeconds: 60 } };
    expect(await iceServersFor(ice, participantId, now)).toEqual([
      { urls: 'stun:stun.example.org' },
      { urls: 'turns:turn.example.org:443' },
    ]);
  });

  it('mints TURN credentials with the configured TTL', async () => {
    const ice = { turn: { url: 'turn:turn.example.org', secret, ttlSeconds: 3600 } };
    expect(await iceServersFor(ice, participantId, now)).toEqual([
      {
        urls: 'turn:turn.example.org',
        username: '1700003600:Wp0aJtUCoydMwjEonSAcBg',
        credential: 'zFRmFB67KXo7jHyATsxc8BMjWq8=',
      },
    ]);
  });
});
