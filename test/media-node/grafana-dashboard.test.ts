import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MediaMetrics } from '../../media-node/src/metrics.ts';
import { emptyPoolStats } from '../../media-node/src/workers/pool.ts';

const dashboard = readFileSync(new URL('../../deploy/grafana/media-node.json', import.meta.url), 'utf8');

describe('Grafana dashboard (deploy/grafana/media-node.json)', () => {
  it('queries only metrics the node exports, without per-participant labels', async () => {
    const parsed = JSON.parse(dashboard) as { panels: { targets: { expr: string }[] }[] };
    const queried = new Set(
      parsed.panels.flatMap((panel) =>
        panel.targets.flatMap((target) => target.expr.match(/\b(truegather|process)_[a-z_]+/g) ?? []),
      ),
    );
    const metrics = new MediaMetrics({
      stats: async () => emptyPoolStats(),
      draining: false,
      load: 0,
    });
    const { body } = await metrics.render();
    const exported = new Set([...body.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]!));
    expect([...queried].filter((name) => !exported.has(name))).toEqual([]);
    expect(queried).toContain('truegather_layer_switches_total');
    expect(queried).toContain('truegather_simulcast_forwarded_bytes_total');
    expect(queried).toContain('truegather_viewers_bandwidth_limited');
    expect(queried).toContain('truegather_relays_open');
    expect(queried).toContain('truegather_relayed_bytes_total');
    // Grouped by node (and layer, or relay direction) only.
    const groupings = parsed.panels.flatMap((panel) =>
      panel.targets.flatMap((target) => [...target.expr.matchAll(/by \(([^)]*)\)/g)].map((match) => match[1])),
    );
    expect(new Set(groupings)).toEqual(new Set(['instance', 'instance, layer', 'instance, direction']));
  });
});
