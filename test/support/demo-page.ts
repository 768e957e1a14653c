import type { Page } from 'playwright-core';
import { expect } from 'vitest';
import type { UpdateSubscription } from '../../shared/src/signaling.ts';

/**
 * Driving the demo page (workers/public, client/demo) in headless Chromium: its camera, its join, and
 * what its SDK client (`window.truegather`) receives and sends. Functions passed to `page.evaluate`
 * are typed structurally: this code compiles without the DOM library.
 */

/** An init script replacing the page's camera request: `video: false` (audio only) or a size. */
export function cameraOverride(video: false | { width: number; height: number }): string {
  return `(() => {
    const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (constraints) =>
      original({ ...constraints, video: ${JSON.stringify(video)} });
  })();`;
}

/** Creates a room from the page's lobby (the page becomes its host) and returns the invite link. */
export async function createRoomOnDemo(page: Page, edgeUrl: string): Promise<string> {
  await page.goto(`${edgeUrl}/`);
  await page.getByTestId('create-form').getByRole('button').click();
  await page.waitForFunction(`document.querySelector('input[name=room]').value.includes('room=')`);
  return page.getByTestId('join-form').locator('input[name=room]').inputValue();
}

/** Joins from the invite link; a join the page reports as failed fails the test with the page's message. */
export async function joinOnDemo(page: Page, link: string, display: string): Promise<void> {
  await page.goto(link);
  await page.locator('input[name=display]').fill(display);
  await page.getByTestId('join-form').getByRole('button').click();
  const joined = page.getByTestId('tile-local').or(page.getByTestId('lobby-error').filter({ hasText: /\S/ }));
  await joined.first().waitFor({ timeout: 60_000 });
  expect(await page.getByTestId('lobby-error').textContent()).toBe('');
}

export interface InboundVideo {
  framesDecoded: number;
  frameWidth: number;
  audioPackets: number;
}

/** The page's inbound media (one publisher's video), through the SDK's getStats(). */
export async function inboundVideo(page: Page): Promise<InboundVideo> {
  type Stat = { type: string; kind?: string; framesDecoded?: number; frameWidth?: number; packetsReceived?: number };
  type Client = { getStats(): Promise<{ subscriber?: { forEach(visit: (stat: Stat) => void): void } }> };
  return page.evaluate(async () => {
    const client = (globalThis as unknown as { truegather?: Client }).truegather;
    const report = (await client?.getStats())?.subscriber;
    const media = { framesDecoded: 0, frameWidth: 0, audioPackets: 0 };
    report?.forEach((stat) => {
      if (stat.type !== 'inbound-rtp') return;
      if (stat.kind === 'video') {
        media.framesDecoded += stat.framesDecoded ?? 0;
        media.frameWidth = Math.max(media.frameWidth, stat.frameWidth ?? 0);
      }
      if (stat.kind === 'audio') media.audioPackets += stat.packetsReceived ?? 0;
    });
    return media;
  });
}

/** Which of the page's published video layers (by rid) its SDK has turned on, e.g. `{q: true, h: false}`. */
export async function layersOn(page: Page): Promise<Record<string, boolean>> {
  type Stat = { type: string; kind?: string; rid?: string; active?: boolean };
  type Client = { getStats(): Promise<{ publisher?: { forEach(visit: (stat: Stat) => void): void } }> };
  return page.evaluate(async () => {
    const client = (globalThis as unknown as { truegather?: Client }).truegather;
    const on: Record<string, boolean> = {};
    (await client?.getStats())?.publisher?.forEach((stat) => {
      if (stat.type === 'outbound-rtp' && stat.kind === 'video' && stat.rid) on[stat.rid] = stat.active !== false;
    });
    return on;
  });
}

/**
 * The widths of the page's published video layers that are being sent (on, with bytes sent and a
 * frame size), smallest first. A layer the SDK turned off (dynacast) is not among them.
 */
export async function sentLayerWidths(page: Page): Promise<number[]> {
  type Stat = { type: string; kind?: string; frameWidth?: number; bytesSent?: number; active?: boolean };
  type Client = { getStats(): Promise<{ publisher?: { forEach(visit: (stat: Stat) => void): void } }> };
  return page.evaluate(async () => {
    const client = (globalThis as unknown as { truegather?: Client }).truegather;
    const widths: number[] = [];
    (await client?.getStats())?.publisher?.forEach((stat) => {
      if (stat.type !== 'outbound-rtp' || stat.kind !== 'video' || stat.active === false) return;
      if ((stat.bytesSent ?? 0) > 0 && stat.frameWidth) {
        widths.push(stat.frameWidth);
      }
    });
    return widths.sort((a, b) => a - b);
  });
}

/** The `update_subscription` payloads the page sends (its tiles' layer requests), recorded from its sockets. */
export function recordLayerRequests(page: Page): UpdateSubscription[] {
  const requests: UpdateSubscription[] = [];
  page.on('websocket', (socket) => {
    socket.on('framesent', ({ payload }) => {
      // Keepalives (`ping`) are not JSON.
      if (typeof payload !== 'string' || !payload.startsWith('{')) return;
      const frame = JSON.parse(payload) as { type?: string; payload?: UpdateSubscription };
      if (frame.type === 'update_subscription' && frame.payload) requests.push(frame.payload);
    });
  });
  return requests;
}
