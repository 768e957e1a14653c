import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type SystemName = 'node' | 'janus' | 'janus-el2' | 'floor';

/** The bench's publisher: werift's dummy VP8 + Opus, or headless Chromium sending three camera layers. */
export type PublisherKind = 'werift' | 'chromium-simulcast';

export const SYSTEM_LABELS: Record<SystemName, string> = {
  node: 'media node',
  janus: 'Janus default',
  'janus-el2': 'Janus event_loops=2',
  floor: 'UDP floor',
};

export interface StepResult {
  subscribers: number;
  /** The step could not be completed (subscribers without media, or a refused subscribe). */
  failed?: string;
  forwarded_pps: number;
  publisher_pps: number;
  cpu_percent: number;
  cpu_us_per_packet: number | undefined;
  idle_cpu_percent?: number;
  rss_mb: number;
  /** Of rss_mb, file-backed pages (the binary's and libraries' code): see ProcessSample.rssFileBytes. */
  rss_file_mb?: number;
  loss_percent: number | undefined;
  missing_sequence_numbers?: number;
  full_subscribers?: number;
  load_cpu_percent: number[];
  first_rtp_ms?: { p50: number; p95: number };
  /** After the last step: headless Chromium viewers, `subscribe` → first decoded video frame. */
  browser_first_frame_ms?: { p50: number; max: number };
  /** The media node's worker threads over the window: event-loop utilization (0–1) and peer connections. */
  worker_utilization?: number[];
  worker_peers?: number[];
}

export interface SystemSummary {
  us_per_packet: Record<number, number | undefined>;
  marginal_us_per_packet_20_60?: number;
  rss_mb_per_subscriber_20_60?: number;
  rss_mb_at_20?: number;
  rss_file_mb_at_20?: number;
  idle_us_per_s_per_subscriber?: number;
  loss_percent: Record<number, number | undefined>;
  first_n_with_loss_over_1_percent?: number;
  largest_n_completed?: number;
  first_rtp_ms?: { p50: number; p95: number };
  browser_first_frame_ms?: { p50: number; max: number };
}

export interface BenchReport {
  benchmark: 'media';
  date: string;
  node: string;
  cpus: number;
  window_s: number;
  idle_window_s: number;
  full_subscribers: number;
  /** How many times the systems ran, one after the other in turn; `systems` holds each step's medians. */
  repetitions: number;
  /** Each repetition's CPU µs per forwarded packet at N = 60, per system: the spread behind the medians. */
  us_per_packet_60_by_repetition: Partial<Record<SystemName, (number | undefined)[]>>;
  systems: Partial<Record<SystemName, StepResult[]>>;
  summary: ReturnType<typeof summarize>;
}

const round = (value: number) => Math.round(value * 100) / 100;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * One system's steps over several repetitions: each figure the median of the repetitions (of two, their
 * mean), which evens out this VM's drift between runs minutes apart. Loss and missing sequence numbers
 * take the worst repetition, and a step that failed in any repetition counts as failed.
 */
export function medianOfRepetitions(repetitions: StepResult[][]): StepResult[] {
  const [first, ...rest] = repetitions;
  if (!first) return [];
  return first.map((step) => {
    const same = [step, ...rest.map((steps) => steps.find((other) => other.subscribers === step.subscribers))];
    const failed = same.find((other) => other === undefined || other.failed !== undefined);
    if (failed !== undefined || same.length === 1) return failed ?? step;
    const all = same as StepResult[];
    const of = (read: (step: StepResult) => number | undefined): number | undefined => {
      const values = all.map(read);
      return values.every((value) => value !== undefined) ? round(median(values as number[])) : undefined;
    };
    const worst = (read: (step: StepResult) => number | undefined): number | undefined => {
      const values = all.map(read);
      return values.every((value) => value !== undefined) ? Math.max(...(values as number[])) : undefined;
    };
    const elementwise = (read: (step: StepResult) => number[] | undefined): number[] | undefined => {
      const arrays = all.map(read);
      if (!arrays.every((array) => array !== undefined && array.length === arrays[0]!.length)) return read(step);
      return arrays[0]!.map((_, index) => round(median(arrays.map((array) => array![index]!))));
    };
    const p50 = of((s) => s.first_rtp_ms?.p50);
    const p95 = of((s) => s.first_rtp_ms?.p95);
    const browserP50 = of((s) => s.browser_first_frame_ms?.p50);
    const browserMax = worst((s) => s.browser_first_frame_ms?.max);
    return {
      ...step,
      forwarded_pps: of((s) => s.forwarded_pps)!,
      publisher_pps: of((s) => s.publisher_pps)!,
      cpu_percent: of((s) => s.cpu_percent)!,
      cpu_us_per_packet: of((s) => s.cpu_us_per_packet),
      idle_cpu_percent: of((s) => s.idle_cpu_percent),
      rss_mb: of((s) => s.rss_mb)!,
      rss_file_mb: of((s) => s.rss_file_mb),
      loss_percent: worst((s) => s.loss_percent),
      missing_sequence_numbers: worst((s) => s.missing_sequence_numbers),
      load_cpu_percent: elementwise((s) => s.load_cpu_percent)!,
      first_rtp_ms: p50 !== undefined && p95 !== undefined ? { p50, p95 } : undefined,
      browser_first_frame_ms:
        browserP50 !== undefined && browserMax !== undefined ? { p50: browserP50, max: browserMax } : undefined,
      worker_utilization: elementwise((s) => s.worker_utilization),
      worker_peers: elementwise((s) => s.worker_peers),
    };
  });
}

export function summarizeSystem(steps: StepResult[]): SystemSummary {
  const done = steps.filter((step) => !step.failed);
  const at = (n: number) => done.find((step) => step.subscribers === n);
  const [s0, s20, s60] = [at(0), at(20), at(60)];
  const summary: SystemSummary = {
    us_per_packet: Object.fromEntries(
      done.filter((s) => s.subscribers > 0).map((s) => [s.subscribers, s.cpu_us_per_packet]),
    ),
    loss_percent: Object.fromEntries(done.filter((s) => s.subscribers > 0).map((s) => [s.subscribers, s.loss_percent])),
    largest_n_completed: done.at(-1)?.subscribers,
    first_n_with_loss_over_1_percent: done.find((s) => (s.loss_percent ?? 0) > 1)?.subscribers,
  };
  if (s20 && s60) {
    summary.marginal_us_per_packet_20_60 = round(
      (((s60.cpu_percent - s20.cpu_percent) / 100) * 1e6) / (s60.forwarded_pps - s20.forwarded_pps),
    );
    summary.rss_mb_per_subscriber_20_60 = round((s60.rss_mb - s20.rss_mb) / 40);
  }
  if (s20) {
    summary.rss_mb_at_20 = s20.rss_mb;
    summary.rss_file_mb_at_20 = s20.rss_file_mb;
  }
  if (s0 && s60 && s0.idle_cpu_percent !== undefined && s60.idle_cpu_percent !== undefined) {
    // CPU share → µs of CPU per second, per subscriber.
    summary.idle_us_per_s_per_subscriber = round((((s60.idle_cpu_percent - s0.idle_cpu_percent) / 100) * 1e6) / 60);
  }
  const latencies = done.map((s) => s.first_rtp_ms).filter((l) => l !== undefined);
  if (latencies.length > 0) {
    summary.first_rtp_ms = {
      p50: Math.max(...latencies.map((l) => l.p50)),
      p95: Math.max(...latencies.map((l) => l.p95)),
    };
  }
  const browser = done.find((s) => s.browser_first_frame_ms)?.browser_first_frame_ms;
  if (browser) summary.browser_first_frame_ms = browser;
  return summary;
}

export function summarize(systems: BenchReport['systems']) {
  const perSystem = Object.fromEntries(
    Object.entries(systems).map(([name, steps]) => [name, summarizeSystem(steps)]),
  ) as Partial<Record<SystemName, SystemSummary>>;
  const ratio = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined && b > 0 ? round(a / b) : undefined;
  const node = perSystem.node;
  return {
    systems: perSystem,
    ratios: {
      node_vs_janus_el2_us_per_packet_60: ratio(node?.us_per_packet[60], perSystem['janus-el2']?.us_per_packet[60]),
      node_vs_janus_el2_marginal: ratio(
        node?.marginal_us_per_packet_20_60,
        perSystem['janus-el2']?.marginal_us_per_packet_20_60,
      ),
      node_vs_janus_default_us_per_packet_60: ratio(node?.us_per_packet[60], perSystem.janus?.us_per_packet[60]),
      node_vs_floor_us_per_packet_60: ratio(node?.us_per_packet[60], perSystem.floor?.us_per_packet[60]),
      janus_el2_vs_floor_us_per_packet_60: ratio(
        perSystem['janus-el2']?.us_per_packet[60],
        perSystem.floor?.us_per_packet[60],
      ),
    },
  };
}

interface Target {
  target: string;
  measured: string;
  met: boolean | undefined;
}

/** Every target of issue #10 against the measured figure. */
export function targets(report: BenchReport): Target[] {
  const { systems, ratios } = report.summary;
  const node = systems.node;
  const fmt = (value: number | undefined, unit = '') => (value === undefined ? 'not measured' : `${value}${unit}`);
  const check = (value: number | undefined, ok: (v: number) => boolean) =>
    value === undefined ? undefined : ok(value);
  const loss300 = node?.loss_percent[300];
  return [
    {
      target: 'CPU per forwarded packet at N = 60 ≤ 0.6× Janus event_loops=2',
      measured: `${fmt(ratios.node_vs_janus_el2_us_per_packet_60, '×')} (${fmt(node?.us_per_packet[60], ' µs')} vs ${fmt(systems['janus-el2']?.us_per_packet[60], ' µs')})`,
      met: check(ratios.node_vs_janus_el2_us_per_packet_60, (v) => v <= 0.6),
    },
    {
      target: 'marginal CPU per packet (N 20 → 60) ≤ 0.6× Janus event_loops=2',
      measured: `${fmt(ratios.node_vs_janus_el2_marginal, '×')} (${fmt(node?.marginal_us_per_packet_20_60, ' µs')} vs ${fmt(systems['janus-el2']?.marginal_us_per_packet_20_60, ' µs')})`,
      met: check(ratios.node_vs_janus_el2_marginal, (v) => v <= 0.6),
    },
    {
      target: 'stretch: CPU per packet at N = 60 ≤ 2× the UDP floor',
      measured: `${fmt(ratios.node_vs_floor_us_per_packet_60, '×')} (floor ${fmt(systems.floor?.us_per_packet[60], ' µs')})`,
      met: check(ratios.node_vs_floor_us_per_packet_60, (v) => v <= 2),
    },
    {
      target: 'RSS per subscriber ≤ 0.5 MB',
      measured: fmt(node?.rss_mb_per_subscriber_20_60, ' MB'),
      met: check(node?.rss_mb_per_subscriber_20_60, (v) => v <= 0.5),
    },
    {
      target: 'RSS of the node with 20 subscribers ≤ 120 MB',
      measured: `${fmt(node?.rss_mb_at_20, ' MB')}${
        node?.rss_file_mb_at_20 === undefined
          ? ''
          : `, of which ${node.rss_file_mb_at_20} MB file-backed (code of the binary)`
      }`,
      met: check(node?.rss_mb_at_20, (v) => v <= 120),
    },
    {
      target: 'idle CPU per connected subscriber ≤ 300 µs/s',
      measured: fmt(node?.idle_us_per_s_per_subscriber, ' µs/s'),
      met: check(node?.idle_us_per_s_per_subscriber, (v) => v <= 300),
    },
    {
      target: 'one publisher → 300 subscribers with < 0.5 % loss',
      measured:
        loss300 === undefined
          ? `not reached (largest N completed: ${fmt(node?.largest_n_completed)})`
          : `${loss300} % loss; loss first > 1 % at ${
              node?.first_n_with_loss_over_1_percent === undefined
                ? `no N up to ${node?.largest_n_completed}`
                : `N = ${node.first_n_with_loss_over_1_percent}`
            }`,
      met: loss300 === undefined ? false : loss300 < 0.5,
    },
    {
      target: '`subscribe` → first RTP at a werift subscriber: p50 ≤ 150 ms, p95 ≤ 400 ms',
      measured: node?.first_rtp_ms
        ? `p50 ${node.first_rtp_ms.p50} ms, p95 ${node.first_rtp_ms.p95} ms (the full subscribers, joining one at a time)`
        : 'not measured',
      met: node?.first_rtp_ms ? node.first_rtp_ms.p50 <= 150 && node.first_rtp_ms.p95 <= 400 : undefined,
    },
    {
      target: 'browser `subscribe` → first decoded frame ≤ 1 s',
      measured: node?.browser_first_frame_ms
        ? `p50 ${node.browser_first_frame_ms.p50} ms, slowest ${node.browser_first_frame_ms.max} ms (headless Chromium viewers joining one at a time after the last step, its subscribers still connected)`
        : 'not measured',
      met: node?.browser_first_frame_ms ? node.browser_first_frame_ms.max <= 1_000 : undefined,
    },
  ];
}

const benchDir = fileURLToPath(new URL('..', import.meta.url));

export function writeReport(report: BenchReport, options: { readme: boolean }): void {
  const resultsFile = join(benchDir, 'results', 'media.json');
  mkdirSync(dirname(resultsFile), { recursive: true });
  writeFileSync(resultsFile, `${JSON.stringify(report, null, 2)}\n`);
  const markdown = markdownReport(report);
  console.log(`\n${markdown}\n→ ${resultsFile}`);
  if (!options.readme) return;
  writeFileSync(join(benchDir, 'media.svg'), chart(report));
  writeReadmeSection('media', markdown);
  console.log(`→ ${join(benchDir, 'media.svg')}`);
}

/** Replaces what bench/README.md holds between `<!-- bench:<name>:begin -->` and its end marker. */
export function writeReadmeSection(name: string, markdown: string): void {
  const [begin, end] = [`<!-- bench:${name}:begin -->`, `<!-- bench:${name}:end -->`];
  const readmeFile = join(benchDir, 'README.md');
  let readme: string;
  try {
    readme = readFileSync(readmeFile, 'utf8');
  } catch {
    readme = `# Benchmarks\n\n${begin}\n${end}\n`;
  }
  const start = readme.indexOf(begin);
  const stop = readme.indexOf(end);
  if (start < 0 || stop < 0) throw new Error(`${readmeFile} lacks the ${begin} / ${end} markers`);
  writeFileSync(readmeFile, `${readme.slice(0, start + begin.length)}\n${markdown}\n${readme.slice(stop)}`);
  console.log(`→ ${readmeFile}`);
}

export function markdownReport(report: BenchReport): string {
  const names = Object.keys(report.systems) as SystemName[];
  const steps = [...new Set(names.flatMap((name) => report.systems[name]!.map((step) => step.subscribers)))].sort(
    (a, b) => a - b,
  );
  const cell = (name: SystemName, n: number, read: (step: StepResult) => string) => {
    const step = report.systems[name]!.find((s) => s.subscribers === n);
    if (!step) return '—';
    return step.failed ? 'failed' : read(step);
  };
  const table = (title: string, read: (step: StepResult) => string) => [
    `| ${title} | ${steps.map((n) => `N = ${n}`).join(' | ')} |`,
    `|---|${steps.map(() => '---').join('|')}|`,
    ...names.map((name) => `| ${SYSTEM_LABELS[name]} | ${steps.map((n) => cell(name, n, read)).join(' | ')} |`),
  ];
  const lines = [
    `Run of ${report.date.slice(0, 16).replace('T', ' ')} UTC, Node ${report.node}, ${report.cpus} CPUs, ${report.window_s} s windows with media, ${report.idle_window_s} s without; ${report.full_subscribers} fully decrypting subscribers, the rest counting.`,
    '',
    `Every system ran ${report.repetitions === 1 ? 'once' : `${report.repetitions} times, in turn`}; each figure is the median of the repetitions (loss: the worst). CPU µs per packet at N = 60 in each repetition: ${(
      Object.entries(report.us_per_packet_60_by_repetition) as [SystemName, (number | undefined)[]][]
    )
      .map(([name, values]) => `${SYSTEM_LABELS[name]} ${values.map((value) => value ?? '—').join(' / ')}`)
      .join('; ')}.`,
    '',
    '### Targets of issue #10',
    '',
    '| target | measured | met |',
    '|---|---|---|',
    ...targets(report).map(
      (t) => `| ${t.target} | ${t.measured} | ${t.met === undefined ? '—' : t.met ? 'yes' : '**no**'} |`,
    ),
    '',
    '### Ratios (same run)',
    '',
    '| ratio | value |',
    '|---|---|',
    ...Object.entries(report.summary.ratios).map(
      ([name, value]) => `| ${name.replaceAll('_', ' ')} | ${value ?? '—'} |`,
    ),
    '',
    '### CPU µs per forwarded packet (SFU process, every thread)',
    '',
    ...table('system', (s) =>
      s.cpu_us_per_packet === undefined ? `${s.cpu_percent} % CPU` : String(s.cpu_us_per_packet),
    ),
    '',
    "### RSS (MB) · of it, file-backed pages (the binary's and libraries' code)",
    '',
    ...table('system', (s) => (s.rss_file_mb === undefined ? String(s.rss_mb) : `${s.rss_mb} · ${s.rss_file_mb}`)),
    '',
    '### Idle CPU (publisher paused, connections up), % of a core',
    '',
    ...table('system', (s) => (s.idle_cpu_percent === undefined ? '—' : String(s.idle_cpu_percent))),
    '',
    "### Loss % (received vs published × N) · load generators' CPU % (publisher, subscriber processes)",
    '',
    ...table('system', (s) => `${s.loss_percent ?? '—'} · ${s.load_cpu_percent.map((c) => Math.round(c)).join('/')}`),
    '',
    '![µs per packet and RSS against N](media.svg)',
  ];
  return lines.join('\n');
}

const COLORS: Record<SystemName, string> = {
  node: '#d62728',
  janus: '#1f77b4',
  'janus-el2': '#2ca02c',
  floor: '#7f7f7f',
};

/** Two panels (µs per packet, RSS) against N, one polyline per system. */
export function chart(report: BenchReport): string {
  const names = Object.keys(report.systems) as SystemName[];
  const panel = (x0: number, title: string, read: (s: StepResult) => number | undefined) => {
    const points = names.map((name) => ({
      name,
      points: report.systems[name]!.filter((s) => !s.failed)
        .map((s) => [s.subscribers, read(s)] as const)
        .filter((p): p is readonly [number, number] => p[1] !== undefined),
    }));
    const maxX = Math.max(1, ...points.flatMap((p) => p.points.map(([n]) => n)));
    const maxY = Math.max(1, ...points.flatMap((p) => p.points.map(([, v]) => v))) * 1.1;
    const [w, h, left, top] = [340, 220, 45, 30];
    const px = (n: number) => x0 + left + (n / maxX) * w;
    const py = (v: number) => top + h - (v / maxY) * h;
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
      const v = Math.round(maxY * f);
      return `<line x1="${x0 + left}" x2="${x0 + left + w}" y1="${py(v)}" y2="${py(v)}" stroke="#eee"/><text x="${x0 + left - 5}" y="${py(v) + 4}" text-anchor="end">${v}</text>`;
    });
    const xTicks = [...new Set(points.flatMap((p) => p.points.map(([n]) => n)))].map(
      (n) => `<text x="${px(n)}" y="${top + h + 15}" text-anchor="middle">${n}</text>`,
    );
    const lines = points.map(
      ({ name, points: pts }) =>
        `<polyline fill="none" stroke="${COLORS[name]}" stroke-width="2" points="${pts.map(([n, v]) => `${px(n).toFixed(1)},${py(v).toFixed(1)}`).join(' ')}"/>` +
        pts
          .map(([n, v]) => `<circle cx="${px(n).toFixed(1)}" cy="${py(v).toFixed(1)}" r="3" fill="${COLORS[name]}"/>`)
          .join(''),
    );
    return [
      `<text x="${x0 + left + w / 2}" y="18" text-anchor="middle" font-weight="bold">${title}</text>`,
      ...ticks,
      ...xTicks,
      `<text x="${x0 + left + w / 2}" y="${top + h + 32}" text-anchor="middle">subscribers (N)</text>`,
      ...lines,
    ].join('\n');
  };
  const legend = names.map(
    (name, i) =>
      `<rect x="${60 + i * 190}" y="300" width="14" height="4" fill="${COLORS[name]}"/><text x="${80 + i * 190}" y="305">${SYSTEM_LABELS[name]}</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="820" height="320" font-family="sans-serif" font-size="11">
<title>CPU µs per forwarded packet and RSS against the number of subscribers, per system</title>
<rect width="820" height="320" fill="white"/>
${panel(0, 'CPU µs per forwarded packet', (s) => s.cpu_us_per_packet)}
${panel(410, 'RSS (MB)', (s) => s.rss_mb)}
${legend.join('\n')}
</svg>
`;
}

/** The same steps with the werift publisher (when it ran) and with the Chromium simulcast publisher. */
export interface SimulcastComparison {
  werift: BenchReport | undefined;
  simulcast: BenchReport;
}

/**
 * Prints, per system and N, what a forwarded packet costs with each publisher, and writes
 * bench/results/media-simulcast.json. bench/README.md is left alone: its figures are the werift run's.
 */
export function writeSimulcastReport(comparison: SimulcastComparison): void {
  const resultsFile = join(benchDir, 'results', 'media-simulcast.json');
  mkdirSync(dirname(resultsFile), { recursive: true });
  writeFileSync(resultsFile, `${JSON.stringify(comparison, null, 2)}\n`);
  const { werift, simulcast } = comparison;
  const rows: string[] = [];
  for (const [name, steps] of Object.entries(simulcast.systems) as [SystemName, StepResult[]][]) {
    for (const step of steps) {
      if (step.subscribers === 0) continue;
      const plain = werift?.systems[name]?.find((s) => s.subscribers === step.subscribers && !s.failed);
      const ratio =
        plain?.cpu_us_per_packet && step.cpu_us_per_packet
          ? round(step.cpu_us_per_packet / plain.cpu_us_per_packet)
          : undefined;
      const figures = (s: StepResult | undefined) =>
        s ? (s.failed ? 'failed' : `${s.cpu_us_per_packet} µs · ${s.forwarded_pps} pkt/s · ${s.cpu_percent} %`) : '—';
      rows.push(
        `| ${SYSTEM_LABELS[name]} | ${step.subscribers} | ${figures(plain)} | ${figures(step)} | ${step.failed ? '—' : step.publisher_pps} | ${ratio ?? '—'} | ${step.loss_percent ?? '—'} |`,
      );
    }
  }
  const markdown = [
    `Run of ${simulcast.date.slice(0, 16).replace('T', ' ')} UTC, ${simulcast.cpus} CPUs, ${simulcast.window_s} s windows.`,
    '',
    '| system | N | werift publisher: CPU per forwarded packet · forwarded · SFU CPU | Chromium simulcast publisher: the same | simulcast publisher sends (pkt/s, 3 layers + audio) | µs per packet, simulcast ÷ werift | simulcast loss % (sequence gaps) |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  console.log(`\n${markdown}\n→ ${resultsFile}`);
}
