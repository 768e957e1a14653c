import { mkdirSync } from 'node:fs';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningStack } from '../../scripts/stack.ts';
import { chromiumPath, launchChromium } from '../support/chromium.ts';
import { startLoopbackStack } from '../support/e2e-stack.ts';
import { describeWithTool } from '../support/required-tools.ts';
import { waitFor } from '../support/werift-peers.ts';

/** Inbound media of the page's subscriber connection, read through the SDK's getStats(). */
async function inboundMedia(page: Page) {
  // Runs in the page; typed structurally because this file compiles without the DOM library.
  type Stat = { type: string; kind?: string; framesDecoded?: number; packetsReceived?: number };
  type Client = { getStats(): Promise<{ subscriber?: { forEach(visit: (stat: Stat) => void): void } }> };
  return page.evaluate(async () => {
    const client = (globalThis as unknown as { truegather?: Client }).truegather;
    const report = (await client?.getStats())?.subscriber;
    let framesDecoded = 0;
    let audioPackets = 0;
    report?.forEach((stat) => {
      if (stat.type !== 'inbound-rtp') return;
      if (stat.kind === 'video') framesDecoded += stat.framesDecoded ?? 0;
      if (stat.kind === 'audio') audioPackets += stat.packetsReceived ?? 0;
    });
    return { framesDecoded, audioPackets };
  });
}

describeWithTool(chromiumPath, 'REQUIRE_BROWSER')('browser call on the demo page', () => {
  let stack: RunningStack;
  let browser: Browser;

  beforeAll(async () => {
    stack = await startLoopbackStack();
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  /** Alice creates a room on the demo page, Bob opens her invite link; both are in the call. */
  async function openCall(context: BrowserContext) {
    const alice = await context.newPage();
    await alice.goto(`${stack.edgeUrl}/`);
    await alice.getByTestId('create-form').getByRole('button').click();
    await alice.waitForFunction(`document.querySelector('input[name=room]').value.includes('room=')`);
    const inviteLink = await alice.getByTestId('join-form').locator('input[name=room]').inputValue();
    expect(inviteLink).toContain('/?room=');
    await alice.locator('input[name=display]').fill('Alice');
    await alice.getByTestId('join-form').getByRole('button').click();
    await alice.getByTestId('tile-local').waitFor();

    const bob = await context.newPage();
    await bob.goto(inviteLink);
    await bob.locator('input[name=display]').fill('Bob');
    await bob.getByTestId('join-form').getByRole('button').click();
    return { alice, bob };
  }

  /** Each page shows the other's tile, decodes its video and receives its audio. */
  async function expectMediaBothWays(alice: Page, bob: Page) {
    for (const [page, other] of [
      [alice, 'Bob'],
      [bob, 'Alice'],
    ] as const) {
      await page.getByTestId('tile-remote').filter({ hasText: other }).waitFor({ timeout: 30_000 });
      const media = await waitFor(
        async () => {
          const m = await inboundMedia(page);
          return m.framesDecoded > 0 && m.audioPackets > 0 && m;
        },
        { timeoutMs: 30_000, intervalMs: 250, message: `${other}'s video and audio` },
      );
      expect(media.framesDecoded).toBeGreaterThan(0);
      expect(media.audioPackets).toBeGreaterThan(0);
    }
  }

  it('two tabs see and hear each other, and a leaving tab disappears', async () => {
    const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
    const { alice, bob } = await openCall(context);
    await expectMediaBothWays(alice, bob);

    mkdirSync('test-results', { recursive: true });
    await alice.screenshot({ path: 'test-results/demo-call.png' });

    await bob.getByTestId('leave').click();
    await alice.getByTestId('tile-remote').waitFor({ state: 'detached', timeout: 30_000 });
    await context.close();
  }, 120_000);

  it('a call recovers by itself after the media node crashes and restarts', async () => {
    const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
    const { alice, bob } = await openCall(context);
    await expectMediaBothWays(alice, bob);

    await stack.restartMediaNode();
    // Video decodes again on both sides: frames that arrive after the restart, on new peer connections.
    for (const page of [alice, bob]) {
      await waitFor(
        async () => {
          const before = (await inboundMedia(page)).framesDecoded;
          await new Promise((resolve) => setTimeout(resolve, 500));
          return (await inboundMedia(page)).framesDecoded > before;
        },
        { timeoutMs: 60_000, message: 'video decoding again after the restart' },
      );
    }
    expect(await alice.getByTestId('tile-remote').count()).toBe(1);
    expect(await bob.getByTestId('tile-remote').count()).toBe(1);
    await context.close();
  }, 120_000);
});
