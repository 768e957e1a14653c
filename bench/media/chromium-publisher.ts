import type { Browser, Page } from 'playwright-core';
import { CAMERA_SIMULCAST_ENCODINGS } from '../../client/src/camera-layers.ts';
import { openLocalhostPage } from './chromium-page.ts';

/**
 * The media benchmark's simulcast publisher: headless Chromium with its fake 1280×720 camera and
 * microphone, publishing the SDK's three camera layers (¼, ½, full) and Opus on one sendonly peer
 * connection, as the SDK's `publish()` does. The bench hands its offer to the SFU the way it does the
 * werift publisher's. Chromium runs in processes of its own: its CPU is never counted as the SFU's.
 */
export class ChromiumSimulcastPublisher {
  readonly #browser: Browser;
  readonly #page: Page;

  private constructor(browser: Browser, page: Page) {
    this.#browser = browser;
    this.#page = page;
  }

  static async launch(): Promise<ChromiumSimulcastPublisher> {
    const { browser, page } = await openLocalhostPage({ permissions: ['camera', 'microphone'] });
    return new ChromiumSimulcastPublisher(browser, page);
  }

  /** The publishing offer, with every ICE candidate in it (the SFU's control API takes no trickle). */
  createOffer(): Promise<string> {
    return this.#page.evaluate(async (encodings) => {
      // Runs in the page; typed structurally because this file compiles without the DOM library.
      type Track = { kind: string };
      type Sender = unknown;
      type Pc = {
        addTransceiver(track: Track, init: unknown): { sender: Sender };
        createOffer(): Promise<unknown>;
        setLocalDescription(description: unknown): Promise<void>;
        localDescription: { sdp: string };
        iceGatheringState: string;
        addEventListener(event: string, listener: () => void): void;
      };
      const scope = globalThis as unknown as {
        navigator: { mediaDevices: { getUserMedia(constraints: unknown): Promise<{ getTracks(): Track[] }> } };
        RTCPeerConnection: new (config: unknown) => Pc;
        bench: { pc: Pc; senders: [Sender, Track][] };
      };
      const stream = await scope.navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: 1280, height: 720 },
      });
      const pc = new scope.RTCPeerConnection({ bundlePolicy: 'max-bundle' });
      const senders = stream.getTracks().map((track): [Sender, Track] => {
        const init = { direction: 'sendonly', streams: [stream] };
        const video = track.kind === 'video';
        return [pc.addTransceiver(track, video ? { ...init, sendEncodings: encodings } : init).sender, track];
      });
      scope.bench = { pc, senders };
      await pc.setLocalDescription(await pc.createOffer());
      if (pc.iceGatheringState !== 'complete') {
        await new Promise<void>((resolve) =>
          pc.addEventListener('icegatheringstatechange', () => {
            if (pc.iceGatheringState === 'complete') resolve();
          }),
        );
      }
      return pc.localDescription.sdp;
    }, CAMERA_SIMULCAST_ENCODINGS);
  }

  setAnswer(sdp: string): Promise<void> {
    return this.#page.evaluate(async (sdp) => {
      const { pc } = (globalThis as unknown as { bench: { pc: { setRemoteDescription(d: unknown): Promise<void> } } })
        .bench;
      await pc.setRemoteDescription({ type: 'answer', sdp });
    }, sdp);
  }

  /** Stops (or resumes) sending any media, with the connection kept up: the idle window's publisher. */
  pause(paused: boolean): Promise<void> {
    return this.#page.evaluate(async (paused) => {
      type Sender = { replaceTrack(track: unknown): Promise<void> };
      const { senders } = (globalThis as unknown as { bench: { senders: [Sender, unknown][] } }).bench;
      await Promise.all(senders.map(([sender, track]) => sender.replaceTrack(paused ? null : track)));
    }, paused);
  }

  /** RTP packets sent so far, every layer and the audio. */
  sentPackets(): Promise<number> {
    return this.#page.evaluate(async () => {
      type Stats = { forEach(visit: (stat: { type: string; packetsSent?: number }) => void): void };
      const { pc } = (globalThis as unknown as { bench: { pc: { getStats(): Promise<Stats> } } }).bench;
      let sent = 0;
      (await pc.getStats()).forEach((stat) => {
        if (stat.type === 'outbound-rtp') sent += stat.packetsSent ?? 0;
      });
      return sent;
    });
  }

  /** The widths of the video layers being sent (bytes flowing), smallest first. */
  sentLayerWidths(): Promise<number[]> {
    return this.#page.evaluate(async () => {
      type Stat = { type: string; kind?: string; frameWidth?: number; bytesSent?: number };
      type Stats = { forEach(visit: (stat: Stat) => void): void };
      const { pc } = (globalThis as unknown as { bench: { pc: { getStats(): Promise<Stats> } } }).bench;
      const widths: number[] = [];
      (await pc.getStats()).forEach((stat) => {
        if (stat.type === 'outbound-rtp' && stat.kind === 'video' && (stat.bytesSent ?? 0) > 0 && stat.frameWidth) {
          widths.push(stat.frameWidth);
        }
      });
      return widths.sort((a, b) => a - b);
    });
  }

  close(): Promise<void> {
    return this.#browser.close();
  }
}
