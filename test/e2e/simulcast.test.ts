import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningStack } from '../../scripts/stack.ts';
import { metricValue } from '../media-node/harness.ts';
import { chromiumPath, launchChromium } from '../support/chromium.ts';
import { startLoopbackStack } from '../support/e2e-stack.ts';
import { describeWithTool } from '../support/required-tools.ts';
import { waitFor } from '../support/werift-peers.ts';

/**
 * Simulcast through the real stack: the demo page's SDK publishes a 1280×720 fake camera as three
 * layers; two viewers (audio-only publishers, so the machine's two cores encode one video) get
 * the layer their preference asks for.
 */

/** Replaces the page's camera request: `video: false` (audio only) or a size. */
function cameraOverride(video: false | { width: number; height: number }) {
  return `(() => {
    const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (constraints) =>
      original({ ...constraints, video: ${JSON.stringify(video)} });
  })();`;
}

interface InboundVideo {
  framesDecoded: number;
  frameWidth: number;
  audioPackets: number;
}

/** The page's inbound media (the publisher's only video), through the SDK's getStats(). */
async function inbound(page: Page): Promise<InboundVideo> {
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

/** The widths of the publisher's video layers that are being sent (bytes flowing). */
async function sentLayerWidths(page: Page): Promise<number[]> {
  type Stat = { type: string; kind?: string; frameWidth?: number; bytesSent?: number; rid?: string };
  type Client = { getStats(): Promise<{ publisher?: { forEach(visit: (stat: Stat) => void): void } }> };
  return page.evaluate(async () => {
    const client = (globalThis as unknown as { truegather?: Client }).truegather;
    const widths: number[] = [];
    (await client?.getStats())?.publisher?.forEach((stat) => {
      if (stat.type === 'outbound-rtp' && stat.kind === 'video' && (stat.bytesSent ?? 0) > 0 && stat.frameWidth) {
        widths.push(stat.frameWidth);
      }
    });
    return widths.sort((a, b) => a - b);
  });
}

/** Calls an SDK method in the page with the publisher's id (found by display name) first. */
function callClient(page: Page, method: string, publisherDisplay: string, ...args: unknown[]): Promise<void> {
  type Client = {
    publishers: Map<string, { display: string }>;
    [method: string]: unknown;
  };
  return page.evaluate(
    async ({ method, publisherDisplay, args }) => {
      const client = (globalThis as unknown as { truegather: Client }).truegather;
      const id = [...client.publishers.entries()].find(([, publisher]) => publisher.display === publisherDisplay)?.[0];
      if (!id) throw new Error(`no publisher ${publisherDisplay}`);
      await (client[method] as (...values: unknown[]) => Promise<void>).call(client, id, ...args);
    },
    { method, publisherDisplay, args },
  );
}

describeWithTool(chromiumPath, 'REQUIRE_BROWSER')('simulcast from a Chromium publisher', () => {
  let stack: RunningStack;
  let browser: Browser;
  let context: BrowserContext;
  let alice: Page;
  let capped: Page;
  let uncapped: Page;

  beforeAll(async () => {
    stack = await startLoopbackStack();
    browser = await launchChromium();
    context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await stack?.stop();
  });

  /** Joins from the invite link; a join the page reports as failed fails the test with the page's message. */
  async function join(page: Page, link: string, display: string) {
    await page.goto(link);
    await page.locator('input[name=display]').fill(display);
    await page.getByTestId('join-form').getByRole('button').click();
    const joined = page.getByTestId('tile-local').or(page.getByTestId('lobby-error').filter({ hasText: /\S/ }));
    await joined.first().waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('lobby-error').textContent()).toBe('');
  }

  it('publishes three layers, and each viewer gets the one its size asks for', async () => {
    alice = await context.newPage();
    await alice.addInitScript(cameraOverride({ width: 1280, height: 720 }));
    await alice.goto(`${stack.edgeUrl}/`);
    await alice.getByTestId('create-form').getByRole('button').click();
    await alice.waitForFunction(`document.querySelector('input[name=room]').value.includes('room=')`);
    const link = await alice.getByTestId('join-form').locator('input[name=room]').inputValue();
    await join(alice, link, 'Alice');

    // The node's bandwidth feedback lets Chromium ramp up to all three layers.
    const widths = await waitFor(
      async () => ((await sentLayerWidths(alice)).length === 3 ? sentLayerWidths(alice) : false),
      {
        timeoutMs: 15_000,
        intervalMs: 250,
        message: 'Chromium sending all three layers',
      },
    );
    expect(widths).toEqual([320, 640, 1280]);

    capped = await context.newPage();
    uncapped = await context.newPage();
    for (const page of [capped, uncapped]) await page.addInitScript(cameraOverride(false));
    await join(capped, link, 'Carol');
    await join(uncapped, link, 'Bob');
    for (const page of [capped, uncapped]) {
      await page.getByTestId('tile-remote').filter({ hasText: 'Alice' }).waitFor({ timeout: 30_000 });
    }
    // The SDK's layer_changed events, kept in the page.
    await capped.evaluate(() => {
      type Client = { on(event: string, listener: (layer: { rid: string | null; width?: number }) => void): void };
      const scope = globalThis as unknown as { truegather: Client; layers: { rid: string | null; width?: number }[] };
      scope.layers = [];
      scope.truegather.on('layer_changed', (layer) => scope.layers.push(layer));
    });
    await callClient(capped, 'setPreferredSize', 'Alice', 320, 180);

    const large = await waitFor(
      async () => {
        const media = await inbound(uncapped);
        return media.framesDecoded > 0 && media.frameWidth >= 960 && media;
      },
      { timeoutMs: 15_000, intervalMs: 250, message: 'the uncapped viewer decoding the 1280-px layer' },
    );
    expect(large.frameWidth).toBe(1280);
    // The capped viewer decodes the small layer (and keeps doing so: frames keep coming at ≤ 400 px).
    const small = await waitFor(
      async () => {
        const media = await inbound(capped);
        return media.framesDecoded > 0 && media.frameWidth > 0 && media.frameWidth <= 400 && media;
      },
      { timeoutMs: 15_000, intervalMs: 250, message: 'the capped viewer decoding a layer ≤ 400 px wide' },
    );
    const later = await waitFor(
      async () => {
        const media = await inbound(capped);
        return media.framesDecoded > small.framesDecoded + 20 && media;
      },
      { timeoutMs: 10_000, intervalMs: 250, message: 'more frames at the capped viewer' },
    );
    expect(later.frameWidth).toBeLessThanOrEqual(400);
    // The viewer was told: it now gets the 320-px layer.
    const told = await capped.evaluate(() => (globalThis as unknown as { layers: unknown[] }).layers);
    expect(told.at(-1)).toMatchObject({ rid: 'q', width: 320, height: 180 });
    expect((await inbound(uncapped)).frameWidth).toBe(1280);
  }, 120_000);

  it('lifting the cap switches up within 5 s without a stall over 1 s', async () => {
    const before = await inbound(capped);
    expect(before.frameWidth).toBeLessThanOrEqual(400);
    const node = { url: stack.mediaUrl };
    // Whether the viewers' first layers counted as switches depends on which layer's keyframe came first.
    const switchesBefore = await metricValue(node, 'truegather_layer_switches_total');
    await callClient(capped, 'setPreferredSize', 'Alice');
    const liftedAt = performance.now();
    let longestStallMs = 0;
    let lastFrames = before.framesDecoded;
    let lastProgressAt = liftedAt;
    // Sampled every 100 ms for as long as the switch takes, and 2 s beyond.
    let switchedAt: number | undefined;
    await waitFor(
      async () => {
        const media = await inbound(capped);
        const now = performance.now();
        if (media.framesDecoded > lastFrames) {
          lastFrames = media.framesDecoded;
          lastProgressAt = now;
        }
        longestStallMs = Math.max(longestStallMs, now - lastProgressAt);
        if (switchedAt === undefined && media.frameWidth >= 960) switchedAt = now;
        return switchedAt !== undefined && now - switchedAt > 2_000;
      },
      { timeoutMs: 10_000, intervalMs: 100, message: 'the capped viewer switching up' },
    );
    expect(switchedAt! - liftedAt).toBeLessThan(5_000);
    expect(longestStallMs).toBeLessThan(1_000);
    // The node counted the capped viewer's switch up, and what each layer cost.
    expect(await metricValue(node, 'truegather_layer_switches_total')).toBeGreaterThan(switchesBefore);
    for (const layer of ['low', 'high']) {
      const bytes = await metricValue(node, `truegather_simulcast_forwarded_bytes_total{layer="${layer}"}`);
      expect(bytes, layer).toBeGreaterThan(0);
    }
  }, 60_000);

  it('paused stops the video but not the audio, and resuming brings it back', async () => {
    await callClient(capped, 'pauseVideo', 'Alice');
    // Frames already on their way are decoded; then none: wait until a second passes without one.
    let previous = (await inbound(capped)).framesDecoded;
    let stableSince = performance.now();
    const stopped = await waitFor(
      async () => {
        const media = await inbound(capped);
        if (media.framesDecoded !== previous) {
          previous = media.framesDecoded;
          stableSince = performance.now();
        }
        return performance.now() - stableSince > 1_000 && media;
      },
      { timeoutMs: 10_000, intervalMs: 100, message: 'video frames stopping' },
    );
    // Audio keeps arriving (100 packets: ~2 s of Opus), and no video frame meanwhile.
    const audioLater = await waitFor(
      async () => {
        const media = await inbound(capped);
        return media.audioPackets >= stopped.audioPackets + 100 && media;
      },
      { timeoutMs: 10_000, intervalMs: 200, message: 'audio still flowing while paused' },
    );
    expect(audioLater.framesDecoded).toBe(stopped.framesDecoded);

    await callClient(capped, 'resumeVideo', 'Alice');
    await waitFor(async () => (await inbound(capped)).framesDecoded > stopped.framesDecoded + 10, {
      timeoutMs: 5_000,
      intervalMs: 100,
      message: 'video again after resuming',
    });
  }, 60_000);
});
