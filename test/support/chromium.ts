import { type Browser, chromium } from 'playwright-core';
import { findExecutable, requireTool } from './required-tools.ts';

/** Debian's chromium (or CHROMIUM_PATH); undefined when none is installed. */
export const chromiumPath = findExecutable(
  process.env.CHROMIUM_PATH ?? 'chromium',
  'chromium-browser',
  'google-chrome',
);

/** Flags measured in ../shared/notes/werift.md: fake devices, loopback ICE, no background network. */
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

/**
 * Headless Chromium with fake camera and microphone (REQUIRE_BROWSER makes a missing one an error).
 * `fakeAudioFile`: a WAV the fake microphone plays in a loop instead of its default beep.
 */
export function launchChromium(options: { fakeAudioFile?: string } = {}): Promise<Browser> {
  const executablePath = requireTool(chromiumPath, 'chromium', 'REQUIRE_BROWSER');
  const args = options.fakeAudioFile
    ? [...CHROMIUM_FLAGS, `--use-file-for-fake-audio-capture=${options.fakeAudioFile}`]
    : CHROMIUM_FLAGS;
  return chromium.launch({ executablePath, headless: true, args });
}
