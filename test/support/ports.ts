import { createServer } from 'node:net';
import { freePort } from '../../scripts/stack.ts';

export { freePort };

/** Whether `port` accepts a listener on 127.0.0.1 right now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * The first of `count` consecutive TCP ports that were free on 127.0.0.1 a moment ago: the stack runs
 * media node i on the first + i.
 */
export async function freePortRun(count: number): Promise<number> {
  for (;;) {
    const first = await freePort();
    const rest = await Promise.all(Array.from({ length: count - 1 }, (_, index) => isFree(first + index + 1)));
    if (rest.every(Boolean)) return first;
  }
}
