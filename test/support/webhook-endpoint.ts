import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An app server's webhook endpoint on loopback, for tests: the edge's queue consumer POSTs to
 * `listen()`'s URL, and each request's raw body and headers go to `answer`, whose status is returned.
 */
export abstract class WebhookEndpoint {
  readonly #server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const answer = this.answer(Buffer.concat(chunks).toString('utf8'), request.headers, request.url ?? '/');
      const { status, headers } = typeof answer === 'number' ? { status: answer, headers: {} } : answer;
      response.writeHead(status, headers).end();
    });
  });

  /** The status (and headers, such as a redirect's location) to answer a delivery to `path` with. */
  protected abstract answer(
    body: string,
    headers: IncomingHttpHeaders,
    path: string,
  ): number | { status: number; headers: Record<string, string> };

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/webhooks`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
