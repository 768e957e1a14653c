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
      response.writeHead(this.answer(Buffer.concat(chunks).toString('utf8'), request.headers)).end();
    });
  });

  /** The status to answer a delivery with. */
  protected abstract answer(body: string, headers: IncomingHttpHeaders): number;

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/webhooks`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
