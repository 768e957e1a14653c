import type { Browser, Page } from 'playwright-core';
import { openLocalhostPage } from './chromium-page.ts';

/**
 * The media benchmark's browser viewers: headless Chromium answering the SFU's subscribe offers, one
 * peer connection per viewer, to time `subscribe` → the first video frame Chromium's decoder put out
 * (issue #10's browser latency target). Chromium runs in processes of its own: its CPU is never
 * counted as the SFU's.
 */
export class ChromiumViewer {
  readonly #browser: Browser;
  readonly #page: Page;

  private constructor(browser: Browser, page: Page) {
    this.#browser = browser;
    this.#page = page;
  }

  static async launch(): Promise<ChromiumViewer> {
    const { browser, page } = await openLocalhostPage();
    return new ChromiumViewer(browser, page);
  }

  /** A new viewer's answer to the SFU's offer, with every ICE candidate in it (the bench does not trickle). */
  answer(offer: string): Promise<string> {
    return this.#page.evaluate(async (sdp) => {
      // Runs in the page; typed structurally because this file compiles without the DOM library.
      type Pc = {
        setRemoteDescription(description: unknown): Promise<void>;
        createAnswer(): Promise<unknown>;
        setLocalDescription(description: unknown): Promise<void>;
        localDescription: { sdp: string };
        iceGatheringState: string;
        addEventListener(event: string, listener: () => void): void;
      };
      const scope = globalThis as unknown as { RTCPeerConnection: new () => Pc; bench?: { viewers: Pc[] } };
      const pc = new scope.RTCPeerConnection();
      scope.bench ??= { viewers: [] };
      scope.bench.viewers.push(pc);
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      if (pc.iceGatheringState !== 'complete') {
        await new Promise<void>((resolve) =>
          pc.addEventListener('icegatheringstatechange', () => {
            if (pc.iceGatheringState === 'complete') resolve();
          }),
        );
      }
      return pc.localDescription.sdp;
    }, offer);
  }

  /**
   * When the latest viewer decoded its first video frame (epoch ms, as `performance.timeOrigin +
   * performance.now()` in the bench): its stats, polled every 10 ms. Throws after `timeoutMs`.
   */
  firstDecodedFrameAt(timeoutMs: number): Promise<number> {
    return this.#page.evaluate(async (timeoutMs) => {
      type Stats = { forEach(visit: (stat: { type: string; kind?: string; framesDecoded?: number }) => void): void };
      const { viewers } = (globalThis as unknown as { bench: { viewers: { getStats(): Promise<Stats> }[] } }).bench;
      const pc = viewers.at(-1)!;
      const deadline = performance.now() + timeoutMs;
      while (performance.now() < deadline) {
        let decoded = 0;
        (await pc.getStats()).forEach((stat) => {
          if (stat.type === 'inbound-rtp' && stat.kind === 'video') decoded += stat.framesDecoded ?? 0;
        });
        if (decoded > 0) return performance.timeOrigin + performance.now();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error(`no video frame decoded within ${timeoutMs} ms`);
    }, timeoutMs);
  }

  close(): Promise<void> {
    return this.#browser.close();
  }
}
