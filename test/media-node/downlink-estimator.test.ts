import { afterEach, describe, expect, it, vi } from 'vitest';
import { MediaStream, MediaStreamTrack, RTCPeerConnection, RtpHeader, RtpPacket } from 'werift';
import { BitrateMeter } from '../../media-node/src/sfu/bitrate.ts';
import {
  BASE_HOLD_MS,
  type BudgetTaker,
  type BudgetUse,
  CONGESTION_CONFIRM_MS,
  DownlinkEstimator,
  MAX_HOLD_MS,
  shareEstimate,
} from '../../media-node/src/sfu/downlink-estimator.ts';
import { ForwardedTrack, KEEP_LAYER_TOLERANCE } from '../../media-node/src/sfu/forwarded-track.ts';
import { createForwardingStats } from '../../media-node/src/sfu/forwarding-stats.ts';
import { SenderReportClock } from '../../media-node/src/sfu/sender-reports.ts';
import { SourceTrack } from '../../media-node/src/sfu/source-track.ts';
import { silentLogger, VP8 } from './source-tracks.ts';

/** Reports once a second (Chromium's video receiver-report pace) from `from` on; returns the time after the last. */
function reportEverySecond(
  estimator: DownlinkEstimator,
  options: { from: number; seconds: number; fractionLost?: number; sentBps: number },
): number {
  let now = options.from;
  for (let second = 0; second < options.seconds; second++) {
    now += 1_000;
    estimator.report({ fractionLost: options.fractionLost ?? 0 }, options.sentBps, now);
  }
  return now;
}

/** Heavy loss in two reports, the confirmation time apart: congestion. Returns the time of the second. */
function congest(estimator: DownlinkEstimator, fractionLost: number, sentBps: number, at: number): number {
  estimator.report({ fractionLost }, sentBps, at);
  estimator.report({ fractionLost }, sentBps, at + CONGESTION_CONFIRM_MS);
  return at + CONGESTION_CONFIRM_MS;
}

describe('downlink estimate', () => {
  it('stays unlimited on a clean link', () => {
    const estimator = new DownlinkEstimator(0);
    reportEverySecond(estimator, { from: 0, seconds: 60, fractionLost: 0.01, sentBps: 2_500_000 });
    expect(estimator.estimateBps).toBe(Number.POSITIVE_INFINITY);
    expect(estimator.canRaise(60_000)).toBe(false);
  });

  it('steps down to what got through once heavy loss has lasted the confirmation time', () => {
    const estimator = new DownlinkEstimator(0);
    // A 400 kbps link under a 2.5 Mbps stream: 84 % lost.
    estimator.report({ fractionLost: 0.84 }, 2_500_000, 1_000);
    expect(estimator.estimateBps).toBe(Number.POSITIVE_INFINITY);
    estimator.report({ fractionLost: 0.84 }, 2_500_000, 1_000 + CONGESTION_CONFIRM_MS);
    expect(estimator.estimateBps).toBeCloseTo(2_500_000 * 0.16 * 0.9, -3);
    // Further loss never raises it, even when measured against more traffic.
    estimator.report({ fractionLost: 0.2 }, 3_000_000, 2_000);
    expect(estimator.estimateBps).toBeCloseTo(360_000, -3);
  });

  it('takes a loss burst that one report covers for no congestion', () => {
    const estimator = new DownlinkEstimator(0);
    estimator.report({ fractionLost: 0.35 }, 2_000_000, 1_000);
    estimator.report({ fractionLost: 0 }, 2_000_000, 2_000);
    estimator.report({ fractionLost: 0.35 }, 2_000_000, 3_000);
    expect(estimator.estimateBps).toBe(Number.POSITIVE_INFINITY);
  });

  it('holds on moderate loss and rises one step only after a clean hold period', () => {
    const estimator = new DownlinkEstimator(0);
    congest(estimator, 0.5, 1_000_000, 1_000);
    const low = estimator.estimateBps;
    // 5 % loss: neither down nor, however long it lasts, up.
    let now = reportEverySecond(estimator, { from: 1_000, seconds: 30, fractionLost: 0.05, sentBps: 400_000 });
    expect(estimator.estimateBps).toBe(low);
    expect(estimator.canRaise(now)).toBe(false);
    // Clean reports: a rise is allowed once they have lasted the hold.
    now = reportEverySecond(estimator, { from: now, seconds: BASE_HOLD_MS / 1_000 - 1, sentBps: 400_000 });
    expect(estimator.canRaise(now)).toBe(false);
    expect(estimator.raise(900_000, now)).toBe(false);
    now = reportEverySecond(estimator, { from: now, seconds: 1, sentBps: 400_000 });
    expect(estimator.raise(900_000, now)).toBe(true);
    expect(estimator.estimateBps).toBe(900_000);
    // The next step waits for another clean hold after this one.
    expect(estimator.canRaise(now + 1_000)).toBe(false);
    now = reportEverySecond(estimator, { from: now, seconds: BASE_HOLD_MS / 1_000, sentBps: 900_000 });
    expect(estimator.raise(Number.POSITIVE_INFINITY, now)).toBe(true);
    expect(estimator.estimateBps).toBe(Number.POSITIVE_INFINITY);
  });

  it('backs off: a rise that meets congestion doubles the hold, up to the maximum; one that holds resets it', () => {
    const estimator = new DownlinkEstimator(0);
    let now = congest(estimator, 0.5, 1_000_000, 1_000);
    const holds: number[] = [];
    for (let attempt = 0; attempt < 6; attempt++) {
      now = reportEverySecond(estimator, { from: now, seconds: estimator.holdMs / 1_000, sentBps: 400_000 });
      expect(estimator.raise(1_500_000, now)).toBe(true);
      // The link cannot carry it: the next reports lose packets.
      now = congest(estimator, 0.4, 1_500_000, now + 1_000);
      expect(estimator.estimateBps).toBeLessThan(1_000_000);
      holds.push(estimator.holdMs);
    }
    expect(holds).toEqual([8_000, 16_000, 32_000, MAX_HOLD_MS, MAX_HOLD_MS, MAX_HOLD_MS]);
    // The link recovered: the next rise holds, and the wait is the base one again.
    now = reportEverySecond(estimator, { from: now, seconds: MAX_HOLD_MS / 1_000, sentBps: 400_000 });
    expect(estimator.raise(1_500_000, now)).toBe(true);
    now = reportEverySecond(estimator, { from: now, seconds: BASE_HOLD_MS / 1_000, sentBps: 1_500_000 });
    expect(estimator.holdMs).toBe(BASE_HOLD_MS);
    expect(estimator.canRaise(now)).toBe(true);
  });

  it('ignores feedback after close', () => {
    const estimator = new DownlinkEstimator(0);
    estimator.close();
    estimator.report({ fractionLost: 0.9 }, 1_000_000, 1_000);
    expect(estimator.estimateBps).toBe(Number.POSITIVE_INFINITY);
  });

  it('does not flap on a link between two layers: probes grow rarer, and the viewer settles on the layer that fits', () => {
    // A viewer of one camera (layers of 150 kbps, 500 kbps, 1.5 Mbps) behind a 700 kbps link, with the
    // subscriber's step rule: up by the next layer when the estimate may rise, down to what fits.
    const layers = [150_000, 500_000, 1_500_000];
    const linkBps = 700_000;
    const estimator = new DownlinkEstimator(0);
    const fitting = () => {
      let index = 0;
      while (index + 1 < layers.length && layers[index + 1]! <= estimator.estimateBps) index++;
      return index;
    };
    let layer = 2;
    const switches: number[] = [];
    let secondsOnTop = 0;
    for (let now = 1_000; now <= 300_000; now += 1_000) {
      const sent = layers[layer]!;
      if (layer === 2) secondsOnTop++;
      estimator.report({ fractionLost: Math.max(0, 1 - linkBps / sent) }, sent, now);
      if (estimator.canRaise(now) && layer + 1 < layers.length) {
        estimator.raise(layers[layer + 1]!, now);
      }
      if (fitting() !== layer) {
        layer = fitting();
        switches.push(now);
      }
    }
    // Down at the second lossy report (the confirmation), to the layer the link carries.
    expect(switches[0]).toBe(2_000);
    // Each failed probe of the top layer lasts two reports, and the waits between probes double up to
    // the maximum hold: [4, 8, 16, 32, 32, …] s.
    const waits = switches.filter((_, index) => index % 2 === 1).map((at, index) => at - switches[2 * index]!);
    expect(waits.slice(0, 4)).toEqual([4_000, 8_000, 16_000, 32_000]);
    expect(Math.min(...waits.slice(3))).toBeGreaterThanOrEqual(MAX_HOLD_MS);
    // In five minutes, the viewer spent under 8 % of the time on the layer its link cannot carry.
    expect(secondsOnTop / 300).toBeLessThan(0.08);
  });
});

describe('sharing a viewer’s estimate', () => {
  /** A track with these layer bitrates (lowest first; one for audio or a single-layer video), recording its budget. */
  function track(name: string, kind: 'audio' | 'video', layers: number[], calls: string[]) {
    const taker: BudgetTaker & { budget?: number; layer?: number } = {
      source: { kind, simulcast: layers.length > 1 },
      applyBudget(budgetBps: number): BudgetUse {
        calls.push(name);
        taker.budget = budgetBps;
        let index = layers.length - 1;
        while (index > 0 && layers[index]! > budgetBps) index--;
        taker.layer = index;
        const next = layers[index + 1];
        return next === undefined
          ? { usedBps: layers[index]!, limited: false, upgradeBps: Number.POSITIVE_INFINITY }
          : { usedBps: layers[index]!, limited: true, upgradeBps: next - layers[index]! };
      },
    };
    return taker;
  }

  it('budgets audio first, then single-layer video (screen shares), then simulcast cameras in order', () => {
    const calls: string[] = [];
    const cameraA = track('camera A', 'video', [150_000, 500_000, 1_500_000], calls);
    const audio = track('audio', 'audio', [50_000], calls);
    const screen = track('screen', 'video', [1_200_000], calls);
    const cameraB = track('camera B', 'video', [150_000, 500_000, 1_500_000], calls);
    const plan = shareEstimate(2_100_000, [cameraA, audio, screen, cameraB], 0);
    expect(calls).toEqual(['audio', 'screen', 'camera A', 'camera B']);
    expect([screen.budget, cameraA.budget, cameraB.budget]).toEqual([2_050_000, 850_000, 350_000]);
    expect([cameraA.layer, cameraB.layer]).toEqual([1, 0]);
    // The cheapest next step: camera B's 150 → 500 kbps.
    expect(plan).toEqual({ usedBps: 1_900_000, limited: true, upgradeBps: 350_000 });
  });

  it('gives every track its top layer when unlimited, and its lowest when nothing is left', () => {
    const calls: string[] = [];
    const tracks = [
      track('audio', 'audio', [50_000], calls),
      track('screen', 'video', [1_200_000], calls),
      track('camera', 'video', [150_000, 500_000, 1_500_000], calls),
    ];
    expect(shareEstimate(Number.POSITIVE_INFINITY, tracks, 0)).toEqual({
      usedBps: 2_750_000,
      limited: false,
      upgradeBps: Number.POSITIVE_INFINITY,
    });
    // 100 kbps: the screen share cannot step down and takes it all; the camera keeps its lowest layer.
    expect(shareEstimate(100_000, tracks, 0)).toEqual({ usedBps: 1_400_000, limited: true, upgradeBps: 350_000 });
    expect(tracks[2]!.budget).toBe(0);
  });
});

describe('bitrate meter', () => {
  it('measures over one-second windows, averages two, and reads 0 once packets stop', () => {
    const meter = new BitrateMeter();
    // 100 packets of 1,250 bytes per second: 1 Mbps.
    for (let now = 0; now < 3_000; now += 10) meter.add(1_250, now);
    expect(meter.bps(3_000)).toBeCloseTo(1_000_000, -4);
    for (let now = 3_000; now < 4_000; now += 10) meter.add(2_500, now);
    expect(meter.bps(4_000)).toBeCloseTo(1_500_000, -4);
    expect(meter.bps(6_500)).toBe(0);
  });

  it('is not measured until a full window of packets flowed, nor after packets stopped or came back', () => {
    const meter = new BitrateMeter();
    expect(meter.measured(0)).toBe(false);
    for (let now = 0; now < 900; now += 10) meter.add(1_250, now);
    expect(meter.measured(900)).toBe(false);
    for (let now = 900; now < 2_000; now += 10) meter.add(1_250, now);
    expect(meter.measured(2_000)).toBe(true);
    expect(meter.bps(2_000)).toBeCloseTo(1_000_000, -4);
    // Dynacast turned the layer off: after two silent windows it is no longer measured…
    expect(meter.measured(4_000)).toBe(false);
    // …and when it comes back, one packet's rate is no measurement (it read 0 or diluted before).
    meter.add(1_250, 5_000);
    expect(meter.measured(5_010)).toBe(false);
    for (let now = 5_010; now < 6_100; now += 10) meter.add(1_250, now);
    expect(meter.measured(6_100)).toBe(true);
    expect(meter.bps(6_100)).toBeCloseTo(1_000_000, -4);
  });
});

describe('a viewer’s layer within its budget', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A VP8 payload: descriptor without picture ID, a keyframe header with the size when given, padded to `bytes`. */
  function vp8(bytes: number, keyframe?: { width: number; height: number }) {
    const payload = Buffer.alloc(bytes);
    payload[0] = 0x10; // S, partition 0
    if (keyframe) {
      payload[1] = 0x00; // P = 0: keyframe
      payload.set([0x9d, 0x01, 0x2a], 4);
      payload.writeUInt16LE(keyframe.width, 7);
      payload.writeUInt16LE(keyframe.height, 9);
    } else payload[1] = 0x01;
    return payload;
  }

  it('takes the highest layer whose measured bitrate fits, keeps the current one within the tolerance, never less than the lowest', async () => {
    vi.useFakeTimers({ toFake: ['performance', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'] });
    const tracks = ['q', 'h', 'f'].map((rid) => new MediaStreamTrack({ kind: 'video', rid }));
    const keyframeRequests: number[] = [];
    const source = new SourceTrack({
      publisherId: 'publisher',
      kind: 'video',
      mid: '0',
      codec: VP8,
      receiver: { sendRtcpPLI: async (ssrc: number) => keyframeRequests.push(ssrc) } as never,
      tracks,
      stats: createForwardingStats(),
      logger: silentLogger,
    });
    const sizes = [
      { width: 320, height: 180, bytes: 200 },
      { width: 640, height: 360, bytes: 600 },
      { width: 1280, height: 720, bytes: 2_000 },
    ];
    // 100 packets a second per layer for 2 s: ~211 kbps, ~531 kbps and ~1.65 Mbps with headers.
    for (let step = 0; step < 200; step++) {
      tracks.forEach((track, index) => {
        const size = sizes[index]!;
        const header = new RtpHeader({
          ssrc: 10 + index,
          sequenceNumber: step,
          timestamp: step * 900,
          payloadType: 96,
        });
        track.onReceiveRtp.execute(new RtpPacket(header, vp8(size.bytes, step === 0 ? size : undefined)));
      });
      vi.advanceTimersByTime(10);
    }
    const pc = new RTCPeerConnection({ iceServers: [] });
    const track = new ForwardedTrack({
      source,
      peerConnection: pc,
      stream: new MediaStream({ id: 'publisher' }),
      stats: createForwardingStats(),
      senderReports: new SenderReportClock(),
      logger: silentLogger,
      sent: { bytes: 0 },
    });
    const now = performance.now();
    const bitrates = source.layers.map((layer) => layer.bitrate.bps(now));
    expect(bitrates[0]).toBeCloseTo(211_200, -3);
    expect(track.applyBudget(Number.POSITIVE_INFINITY, now)).toEqual({
      usedBps: bitrates[2],
      limited: false,
      upgradeBps: Number.POSITIVE_INFINITY,
    });
    expect(track.applyBudget(700_000, now)).toEqual({
      usedBps: bitrates[1],
      limited: true,
      upgradeBps: bitrates[2]! - bitrates[1]!,
    });
    // The layer it already waits for stays within the tolerance; a lower budget moves it down.
    expect(track.applyBudget(bitrates[1]! / KEEP_LAYER_TOLERANCE + 1_000, now).usedBps).toBe(bitrates[1]);
    expect(track.applyBudget(bitrates[1]! / KEEP_LAYER_TOLERANCE - 1_000, now).usedBps).toBe(bitrates[0]);
    // Not even the lowest fits: the lowest all the same.
    expect(track.applyBudget(10_000, now).usedBps).toBe(bitrates[0]);
    // A size preference caps the ladder: within it, the viewer is not limited.
    track.setPreference({ maxWidth: 320, maxHeight: 180 });
    expect(track.applyBudget(300_000, now).limited).toBe(false);
    // Each target asked its layer for a keyframe (the switch waits for it).
    expect(keyframeRequests).toContain(12);
    expect(keyframeRequests).toContain(11);
    // The top layer stops for 3 s (dynacast turned it off) and comes back: one packet of it is no
    // measurement, so a limited viewer does not take it for a free layer, and no rise is priced on it.
    track.setPreference({});
    const send = (index: number, step: number) => {
      const header = new RtpHeader({ ssrc: 10 + index, sequenceNumber: step, timestamp: step * 900, payloadType: 96 });
      tracks[index]!.onReceiveRtp.execute(new RtpPacket(header, vp8(sizes[index]!.bytes)));
    };
    for (let step = 200; step < 500; step++) {
      send(0, step);
      send(1, step);
      vi.advanceTimersByTime(10);
    }
    send(2, 500);
    const later = performance.now();
    expect(source.layers[2]!.bitrate.measured(later)).toBe(false);
    expect(track.applyBudget(700_000, later)).toEqual({
      usedBps: source.layers[1]!.bitrate.bps(later),
      limited: true,
      upgradeBps: Number.POSITIVE_INFINITY,
    });
    track.close('done');
    source.close();
    await pc.close();
  });
});
