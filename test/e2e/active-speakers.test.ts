import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningStack } from '../../scripts/stack.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { chromiumPath, launchChromium } from '../support/chromium.ts';
import { joinParticipant, publishFrom, startLoopbackStack } from '../support/e2e-stack.ts';
import { describeWithTool } from '../support/required-tools.ts';
import { PeerSet, waitFor } from '../support/werift-peers.ts';

/**
 * `active_speakers` through the real stack: `wrangler dev`, a media node, a Chromium publisher on the
 * demo page and werift peers. Chromium's default fake microphone beeps 20 ms every 500 ms (about 16 %
 * of its packets at −35 dBov or louder once Chromium's audio processing is done): by LiveKit's rule
 * (40 % of 400 ms) that is not speech. Here it plays a voiced signal instead (150 Hz and harmonics,
 * four syllables a second), which Chromium sends at about −27…−31 dBov, as a voice.
 */

/** 16-bit mono PCM WAV of `seconds` of `sample(t)` in −1..1. */
function wav(seconds: number, sample: (t: number) => number): Buffer {
  const rate = 48_000;
  const data = Buffer.alloc(rate * seconds * 2);
  for (let index = 0; index < rate * seconds; index++) {
    data.writeInt16LE(Math.round(32_767 * Math.max(-1, Math.min(1, sample(index / rate)))), index * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

const voice = (t: number) => {
  const syllables = 0.6 + 0.4 * Math.abs(Math.sin(Math.PI * 4 * t));
  let voiced = 0;
  for (let harmonic = 1; harmonic <= 8; harmonic++) voiced += Math.sin(2 * Math.PI * 150 * harmonic * t) / harmonic;
  return 0.45 * syllables * voiced;
};

type SpeakersFrame = Extract<ServerFrame, { type: 'active_speakers' }>;
const speakerFrames = (frames: ServerFrame[]) =>
  frames.filter((frame): frame is SpeakersFrame => frame.type === 'active_speakers');
const named = (frame: SpeakersFrame) => frame.payload.speakers.map((speaker) => speaker.participant_id);

describeWithTool(chromiumPath, 'REQUIRE_BROWSER')('active speakers with a Chromium publisher', () => {
  let stack: RunningStack;
  let browser: Browser;
  let audioDir: string;
  const peers = new PeerSet();

  beforeAll(async () => {
    audioDir = mkdtempSync(join(tmpdir(), 'truegather-voice-'));
    const voiceFile = join(audioDir, 'voice.wav');
    writeFileSync(voiceFile, wav(2, voice));
    stack = await startLoopbackStack();
    browser = await launchChromium({ fakeAudioFile: voiceFile });
  }, 120_000);

  afterAll(async () => {
    await peers.closeAll();
    await browser?.close();
    await stack?.stop();
    if (audioDir) rmSync(audioDir, { recursive: true, force: true });
  });

  /** Alice creates a room on the demo page and joins it: she publishes camera and microphone. */
  async function aliceOnTheDemoPage(page: Page) {
    await page.goto(`${stack.edgeUrl}/`);
    await page.getByTestId('create-form').getByRole('button').click();
    await page.waitForFunction(`document.querySelector('input[name=room]').value.includes('room=')`);
    const invite = await page.getByTestId('join-form').locator('input[name=room]').inputValue();
    await page.locator('input[name=display]').fill('Alice');
    await page.getByTestId('join-form').getByRole('button').click();
    await page.getByTestId('tile-local').waitFor();
    const roomId = new URL(invite).searchParams.get('room') ?? '';
    const aliceId = await page.evaluate(
      () => (globalThis as unknown as { truegather: { participantId: string } }).truegather.participantId,
    );
    return { roomId, aliceId };
  }

  /**
   * Who speaks now by Alice's SDK. Its getter, not a listener added here: the page's publishing is
   * under way by the time a test can add one, and Alice may already be named.
   */
  const sdkSpeakers = (page: Page) =>
    page.evaluate(() =>
      (
        globalThis as unknown as { truegather: { activeSpeakers: { participantId: string; level: number }[] } }
      ).truegather.activeSpeakers.map((speaker) => speaker.participantId),
    );

  it('names the Chromium publisher that speaks and not a silent publisher; a muted one stops being named', async () => {
    const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
    const page = await context.newPage();
    const { roomId, aliceId } = await aliceOnTheDemoPage(page);

    // A viewer (told who speaks as it joins), and a werift publisher whose every audio packet says
    // silence (−127 dBov).
    const viewer = await joinParticipant(stack, roomId, 'Viewer');
    const silent = await joinParticipant(stack, roomId, 'Silent');
    const silentPublisher = peers.track(await publishFrom(silent, 0, { audioLevel: 127 }));

    const aliceNamed = await waitFor(
      () => speakerFrames(viewer.frames).find((frame) => named(frame).includes(aliceId)),
      { timeoutMs: 30_000, message: 'active_speakers naming the Chromium publisher' },
    );
    expect(named(aliceNamed)[0]).toBe(aliceId);
    const level = aliceNamed.payload.speakers[0]!.level;
    expect(level).toBeGreaterThan(0);
    expect(level).toBeLessThanOrEqual(1);
    // The publisher's own SDK hears of it too.
    await waitFor(async () => (await sdkSpeakers(page)).includes(aliceId), {
      message: "Alice named in her SDK's activeSpeakers",
    });
    // The demo page, which listens to the SDK's `activeSpeakers` event from before it joins,
    // highlights the speaking tile (Alice's own here).
    await page.locator('[data-testid=tile-local].speaking').waitFor({ timeout: 10_000 });

    // The silent publisher is announced and flowing, and two more windows of its packets pass: never named.
    await waitFor(
      () =>
        viewer.frames.some((frame) => frame.type === 'publisher_joined' && frame.payload.publisher.id === silent.id),
      { message: 'the silent publisher announced' },
    );
    const until = silentPublisher.sentPackets.audio + 2 * 20;
    await waitFor(() => silentPublisher.sentPackets.audio >= until, { message: 'two more windows of silent audio' });
    for (const frame of speakerFrames(viewer.frames)) expect(named(frame)).not.toContain(silent.id);

    // Alice mutes her microphone through the SDK: the room hears that nobody speaks.
    const before = speakerFrames(viewer.frames).length;
    await page.evaluate(() =>
      (globalThis as unknown as { truegather: { mute(kind: string): Promise<void> } }).truegather.mute('audio'),
    );
    await waitFor(
      () =>
        speakerFrames(viewer.frames)
          .slice(before)
          .find((frame) => named(frame).length === 0),
      {
        message: 'active_speakers naming nobody after the mute',
      },
    );
    for (const frame of speakerFrames(viewer.frames)) expect(named(frame)).not.toContain(silent.id);
    await page.locator('[data-testid=tile-local].speaking').waitFor({ state: 'detached', timeout: 10_000 });
    expect(await sdkSpeakers(page)).toEqual([]);

    for (const participant of [silent, viewer]) participant.connection.close();
    await context.close();
  }, 120_000);
});
