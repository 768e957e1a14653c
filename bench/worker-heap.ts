import { writeFileSync } from 'node:fs';
import WebSocket from 'ws';

/**
 * The live JavaScript heap of the Worker's isolate under `wrangler dev` (the Worker and every Durable
 * Object of it run there), from a heap snapshot taken over the DevTools protocol through wrangler's
 * inspector port. A snapshot counts only what is reachable after a full GC: what our code keeps,
 * as opposed to what workerd's process holds (RSS).
 */
export async function workerHeap(inspectorPort: number, saveTo?: string): Promise<{ live_mb: number }> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as {
    webSocketDebuggerUrl: string;
  }[];
  const target = targets[0];
  if (!target) throw new Error('wrangler dev lists no inspector target');
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  // wrangler's inspector proxy numbers its own requests from 100000001: ours stay below.
  let nextId = 1;
  const pending = new Map<number, () => void>();
  const chunks: string[] = [];
  socket.on('message', (data) => {
    const message = JSON.parse(String(data)) as { id?: number; method?: string; params?: { chunk: string } };
    if (message.method === 'HeapProfiler.addHeapSnapshotChunk' && message.params) chunks.push(message.params.chunk);
    const settle = message.id === undefined ? undefined : pending.get(message.id);
    if (settle) {
      pending.delete(message.id as number);
      settle();
    }
  });
  const send = (method: string, params: object = {}) =>
    new Promise<void>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => reject(new Error(`${method}: no answer from the inspector`)), 120_000);
      pending.set(id, () => {
        clearTimeout(timer);
        resolve();
      });
      socket.send(JSON.stringify({ id, method, params }));
    });
  try {
    await send('HeapProfiler.enable');
    await send('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
  } finally {
    socket.close();
  }
  const text = chunks.join('');
  if (saveTo) writeFileSync(saveTo, text);
  return { live_mb: Math.round(liveBytes(JSON.parse(text)) / 1e5) / 10 };
}

/** The sum of every node's own size in a V8 heap snapshot. */
function liveBytes(snapshot: { snapshot: { meta: { node_fields: string[] } }; nodes: number[] }): number {
  const fields = snapshot.snapshot.meta.node_fields;
  const selfSize = fields.indexOf('self_size');
  let total = 0;
  for (let index = selfSize; index < snapshot.nodes.length; index += fields.length) total += snapshot.nodes[index] ?? 0;
  return total;
}
