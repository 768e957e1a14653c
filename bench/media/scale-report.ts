import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type StepResult,
  SYSTEM_LABELS,
  type SystemName,
  type SystemSummary,
  summarizeSystem,
  writeReadmeSection,
} from './report.ts';

/**
 * The single-room scale dimension of bench:media (issue #14): one publisher to N viewers with the
 * node's room on one worker thread, spread over several, and (once cross-node relays run in the bench)
 * over several nodes. Its figure is the N at which loss first passes 1 % in each placement.
 */

/**
 * Where the room's participants may be placed: `<nodes>x<worker threads per node>`, e.g. `1x2`; with
 * several nodes the publisher is on the first and the others pull its feed through one relay each.
 */
export interface Topology {
  key: string;
  nodes: number;
  workers: number;
  label: string;
}

export function parseTopologies(list: string): Topology[] {
  return list.split(',').map((key) => {
    const match = /^(\d+)x(\d+)$/.exec(key.trim());
    if (!match) throw new Error(`--scale takes <nodes>x<workers per node>, e.g. 1x1,1x2: not ${key}`);
    const [nodes, workers] = [Number(match[1]), Number(match[2])];
    if (nodes < 1 || workers < 1) throw new Error(`--scale ${key}: at least one node and one worker`);
    const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? '' : 's'}`;
    return { key, nodes, workers, label: `${plural(nodes, 'node')} × ${plural(workers, 'worker')}` };
  });
}

export interface ScaleReport {
  benchmark: 'media-scale';
  date: string;
  node: string;
  cpus: number;
  window_s: number;
  full_subscribers: number;
  topologies: (Topology & { steps: StepResult[] })[];
  /** The same steps on the reference SFUs, in the same run. */
  references: Partial<Record<SystemName, StepResult[]>>;
}

const round = (value: number) => Math.round(value * 100) / 100;

/** Per placement and reference: the N at which loss first passed 1 %, and the largest N completed. */
export function summarizeScale(report: ScaleReport) {
  const threshold = (summary: SystemSummary) => ({
    first_n_with_loss_over_1_percent: summary.first_n_with_loss_over_1_percent,
    largest_n_completed: summary.largest_n_completed,
  });
  const placements = Object.fromEntries(
    report.topologies.map((topology) => [topology.key, threshold(summarizeSystem(topology.steps))]),
  );
  const references = Object.fromEntries(
    Object.entries(report.references).map(([name, steps]) => [name, threshold(summarizeSystem(steps))]),
  );
  return { placements, references };
}

export function writeScaleReport(report: ScaleReport, options: { readme: boolean }): void {
  const summary = summarizeScale(report);
  const resultsFile = fileURLToPath(new URL('../results/media-scale.json', import.meta.url));
  mkdirSync(dirname(resultsFile), { recursive: true });
  writeFileSync(resultsFile, `${JSON.stringify({ ...report, summary }, null, 2)}\n`);
  const markdown = scaleMarkdown(report, summary);
  console.log(`\n${markdown}\n→ ${resultsFile}`);
  if (options.readme) writeReadmeSection('media-scale', markdown);
}

function scaleMarkdown(report: ScaleReport, summary: ReturnType<typeof summarizeScale>): string {
  const rows = [
    ...report.topologies.map((topology) => ({
      label: `media node, ${topology.label}`,
      steps: topology.steps,
      threshold: summary.placements[topology.key]!,
    })),
    ...(Object.entries(report.references) as [SystemName, StepResult[]][]).map(([name, steps]) => ({
      label: SYSTEM_LABELS[name],
      steps,
      threshold: summary.references[name]!,
    })),
  ];
  const ns = [...new Set(rows.flatMap((row) => row.steps.map((step) => step.subscribers)))].sort((a, b) => a - b);
  const cell = (steps: StepResult[], n: number) => {
    const step = steps.find((candidate) => candidate.subscribers === n);
    if (!step) return '—';
    if (step.failed) return 'failed';
    const threads = step.worker_utilization
      ? ` · ${step.worker_utilization.map((share) => `${Math.round(share * 100)}`).join('/')} % (${step.worker_peers?.join('/')})`
      : '';
    return `${step.loss_percent ?? '—'} % · ${step.cpu_percent} % CPU${threads}`;
  };
  const thresholdOf = ({
    first_n_with_loss_over_1_percent: n,
    largest_n_completed: largest,
  }: Pick<SystemSummary, 'first_n_with_loss_over_1_percent' | 'largest_n_completed'>) =>
    n === undefined ? `none up to N = ${largest ?? '—'}` : `N = ${n}`;
  const nOf = (topology: Topology | undefined) =>
    topology && summary.placements[topology.key]?.first_n_with_loss_over_1_percent;
  const base = report.topologies.find((topology) => topology.nodes === 1 && topology.workers === 1);
  const ratios = report.topologies
    .filter((topology) => topology !== base)
    .map((topology) => {
      const [n, baseN] = [nOf(topology), nOf(base)];
      return `${topology.label}: ${n && baseN ? `${round(n / baseN)}×` : '—'}`;
    });
  return [
    `Run of ${report.date.slice(0, 16).replace('T', ' ')} UTC, Node ${report.node}, ${report.cpus} CPUs, ${report.window_s} s windows; one publisher, N viewers in one room.`,
    '',
    '| system | loss first > 1 % |',
    '|---|---|',
    ...rows.map((row) => `| ${row.label} | ${thresholdOf(row.threshold)} |`),
    '',
    `N at which loss passes 1 %, against 1 node × 1 worker: ${ratios.join(', ') || '—'}`,
    '',
    'Per N: loss · SFU process CPU (% of a core, every thread) · each worker thread’s event-loop utilization (its peer connections).',
    '',
    `| system | ${ns.map((n) => `N = ${n}`).join(' | ')} |`,
    `|---|${ns.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.label} | ${ns.map((n) => cell(row.steps, n)).join(' | ')} |`),
  ].join('\n');
}
