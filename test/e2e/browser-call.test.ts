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

  /** Opens the invite link in a new page and joins as `display`. */
  async function joinByLink(context: BrowserContext, inviteLink: string, display: string) {
    const page = await context.newPage();
    await page.goto(inviteLink);
    await page.locator('input[name=display]').fill(display);
    await page.getByTestId('join-form').getByRole('button').click();
    await page.getByTestId('tile-local').waitFor();
    return page;
  }

  /** Alice creates a room on the demo page (she is its host), Bob opens her invite link; both are in the call. */
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

    const bob = await joinByLink(context, inviteLink, 'Bob');
    return { alice, bob, inviteLink };
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

    // Chat: Bob's message shows on Alice's page under his name, and on his own as his.
    await bob.getByTestId('chat-form').locator('input[name=message]').fill('Hello from Bob');
    await bob.getByTestId('chat-form').getByRole('button').click();
    await alice.getByTestId('chat-messages').getByText('Hello from Bob').waitFor({ timeout: 10_000 });
    expect(await alice.getByTestId('chat-messages').locator('li').last().textContent()).toBe('BobHello from Bob');
    expect(await bob.getByTestId('chat-messages').locator('li').last().textContent()).toBe('Bob (you)Hello from Bob');

    // Bob mutes his microphone: the badge shows on his tile on both pages.
    await bob.getByTestId('toggle-mic').click();
    await alice.getByTestId('tile-remote').getByTestId('badge-audio').waitFor({ state: 'visible', timeout: 10_000 });
    await bob.getByTestId('tile-local').getByTestId('badge-audio').waitFor({ state: 'visible', timeout: 10_000 });
    expect(await bob.getByTestId('toggle-mic').textContent()).toBe('Mic off');

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

  it('the host mutes and removes a participant and ends the meeting; a guest has no host controls', async () => {
    const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
    const { alice, bob, inviteLink } = await openCall(context);
    const carol = await joinByLink(context, inviteLink, 'Carol');
    const bobTile = alice.getByTestId('tile-remote').filter({ hasText: 'Bob' });
    await bobTile.waitFor({ timeout: 30_000 });
    await alice.getByTestId('tile-remote').filter({ hasText: 'Carol' }).waitFor({ timeout: 30_000 });
    await expect(alice.getByTestId('end-meeting').isVisible()).resolves.toBe(true);
    await expect(bob.getByTestId('end-meeting').isVisible()).resolves.toBe(false);
    await bob.getByTestId('tile-remote').filter({ hasText: 'Alice' }).waitFor({ timeout: 30_000 });
    expect(await bob.getByTestId('host-mute').filter({ visible: true }).count()).toBe(0);

    // Alice locks Bob's microphone: his badge shows everywhere, and he cannot unmute himself.
    await bobTile.getByTestId('host-mute').click();
    await bob.getByTestId('tile-local').getByTestId('badge-audio').waitFor({ state: 'visible', timeout: 10_000 });
    await carol
      .getByTestId('tile-remote')
      .filter({ hasText: 'Bob' })
      .getByTestId('badge-audio')
      .waitFor({ state: 'visible', timeout: 10_000 });
    await alice.waitForFunction(
      `[...document.querySelectorAll('[data-testid=host-mute]')].some((b) => b.textContent === 'Unlock mic')`,
    );
    await bob.getByTestId('toggle-mic').click();
    await bob.getByTestId('status').filter({ hasText: 'The host muted you' }).waitFor({ timeout: 10_000 });

    // Alice removes Carol: Carol is back in the lobby, her tile goes from the others' pages.
    await alice.getByTestId('tile-remote').filter({ hasText: 'Carol' }).getByTestId('host-remove').click();
    await carol.getByTestId('lobby').waitFor({ state: 'visible', timeout: 10_000 });
    await bob.getByTestId('tile-remote').filter({ hasText: 'Carol' }).waitFor({ state: 'detached', timeout: 10_000 });

    // Alice ends the meeting for everyone.
    await alice.getByTestId('end-meeting').click();
    for (const page of [alice, bob]) {
      await page.getByTestId('lobby').waitFor({ state: 'visible', timeout: 10_000 });
      await page.getByTestId('status').filter({ hasText: 'The call has ended' }).waitFor({ timeout: 10_000 });
    }
    await context.close();
  }, 120_000);
});
