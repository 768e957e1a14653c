import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { mediaControlPath } from '../../shared/src/media-control.ts';
import { MediaNodeProcess } from './harness.ts';

/**
 * MEDIA_OPERATOR_PORT moves /health and /metrics off the control API's listener (reachable by the
 * edge, often from outside) to one of their own, on loopback unless MEDIA_OPERATOR_HOST says otherwise.
 */
describe('media node operator endpoints on their own listener', () => {
  let node: MediaNodeProcess;
  let operatorUrl: URL;

  beforeAll(async () => {
    node = await MediaNodeProcess.start({ MEDIA_HOST: '127.0.0.1', MEDIA_OPERATOR_PORT: '0' });
    const listening = node.logs
      .map((line) => {
        try {
          return JSON.parse(line) as { message?: string; operator_url?: string };
        } catch {
          return undefined;
        }
      })
      .find((line) => line?.message === 'media node listening');
    operatorUrl = new URL(listening!.operator_url!);
  });

  afterAll(async () => {
    await node?.stop();
  });

  it('serves /health and /metrics on the operator listener, bound to loopback by default', async () => {
    expect(operatorUrl.hostname).toBe('127.0.0.1');
    expect(operatorUrl.port).not.toBe(new URL(node.url).port);
    const health = await fetch(new URL('/health', operatorUrl));
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', node_id: node.nodeId, rooms: 0 });
    const metrics = await fetch(new URL('/metrics', operatorUrl));
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('truegather_rooms');
  });

  it('no longer serves them on the control API listener', async () => {
    for (const path of ['/health', '/metrics']) {
      const response = await fetch(new URL(path, node.url));
      expect(response.status, path).toBe(404);
      expect(await response.text()).not.toContain('truegather_');
    }
  });

  it('does not serve the control API on the operator listener', async () => {
    const token = await node.token();
    const response = await fetch(new URL(mediaControlPath('closeRoom', newId()), operatorUrl), {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(404);
    // …while the control listener still answers it.
    expect((await node.request('DELETE', mediaControlPath('closeRoom', newId()))).status).not.toBe(404);
  });

  it('refuses an operator port equal to the control port, naming the variable', () => {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const result = spawnSync(process.execPath, ['media-node/src/main.ts'], {
      cwd: root,
      env: {
        PATH: process.env.PATH,
        MEDIA_NODE_SECRET: randomBytes(32).toString('base64url'),
        MEDIA_PORT: '18081',
        MEDIA_OPERATOR_PORT: '18081',
        MEDIA_RTC_LISTEN_IP: '127.0.0.1',
      },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(result.status).toBe(1);
    expect(`${result.stdout}${result.stderr}`).toMatch(/MEDIA_OPERATOR_PORT/);
  });
});
