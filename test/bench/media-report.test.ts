import { describe, expect, it } from 'vitest';
import { medianOfRepetitions, type StepResult } from '../../bench/media/report.ts';

/** bench:media runs every system several times in turn; each step's figure is the median of the runs. */
const step = (subscribers: number, cpuUsPerPacket: number, lossPercent: number): StepResult => ({
  subscribers,
  forwarded_pps: subscribers * 80,
  publisher_pps: 80,
  cpu_percent: (cpuUsPerPacket * subscribers * 80) / 1e4,
  cpu_us_per_packet: cpuUsPerPacket,
  idle_cpu_percent: 1,
  rss_mb: 100,
  loss_percent: lossPercent,
  missing_sequence_numbers: 0,
  full_subscribers: 20,
  load_cpu_percent: [3, cpuUsPerPacket],
});

describe('bench:media repetitions', () => {
  it('takes the median of three runs per step, so that one outlier moves nothing, and the worst loss', () => {
    const merged = medianOfRepetitions([
      [step(20, 30, 0), step(60, 17.6, 0)],
      [step(20, 28, 0.2), step(60, 12.6, 0)],
      [step(20, 29, 0), step(60, 15.5, 0.05)],
    ]);
    expect(merged.map((result) => result.subscribers)).toEqual([20, 60]);
    expect(merged.map((result) => result.cpu_us_per_packet)).toEqual([29, 15.5]);
    expect(merged.map((result) => result.loss_percent)).toEqual([0.2, 0.05]);
    expect(merged[1]!.load_cpu_percent).toEqual([3, 15.5]);
  });

  it('averages the middle two of an even number of runs', () => {
    const [merged] = medianOfRepetitions([[step(60, 11.76, 0)], [step(60, 15.81, 0)]]);
    expect(merged!.cpu_us_per_packet).toBeCloseTo(13.79, 2);
  });

  it('reports a step that failed in any run as failed', () => {
    const failed = { subscribers: 300, failed: 'subscriber 212 never connected' } as StepResult;
    const merged = medianOfRepetitions([
      [step(60, 14, 0), step(300, 9, 0)],
      [step(60, 13, 0), failed],
    ]);
    expect(merged[1]).toBe(failed);
    expect(merged[0]!.cpu_us_per_packet).toBe(13.5);
  });
});
