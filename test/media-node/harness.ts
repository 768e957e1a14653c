import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { launchMediaNode, terminate } from '../../scripts/stack.ts';
import { newId } from '../../shared/src/ids.ts';
import {
  EDGE_MEDIA_EVENTS_PATH,
  type MediaEvent,
  MediaEventSchema,
  mediaControlPath,
  type PublishResponse,
  type SubscribeResponse,
} from '../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../shared/src/media-node-trust.ts';
import { bearerToken, bodyDigest, signServiceToken, verifyServiceToken } from '../../shared/src/service-token.ts';
import {
  EDGE_AUDIENCE,
  MEDIA_NODE_AUDIENCE,
  MediaEventTokenClaimsSchema,
  TOKEN_ISSUER,
} from '../../shared/src/token.ts';
import { type TestPublisher, type TestSubscriber, waitFor } from '../support/werift-peers.ts';

export type MediaEventOf<T extends MediaEvent['type']> = Extract<MediaEvent, { type: T }>;

/** A predicate for `waitForEvent`: an event of this type about this participant. */
export const isEvent =
  <T extends MediaEvent['type']>(type: T, participantId: string) =>
  (event: MediaEvent): event is MediaEventOf<T> =>
    event.type === type && 'participant_id' in event && event.participant_id === participantId;

/**
 * What the edge would be: receives media events, checks their service token as the edge does (bound
 * to the body's digest and the event's room; issued by `issuer` once the node's URL is known).
 */
export class EdgeEventsReceiver {
  readonly events: MediaEvent[] = [];
  /** Requests refused because of their token or body. */
  readonly refused: number[] = [];
  readonly #server: Server;
  readonly #secret: Uint8Array;
  /** The node's identity, once it listens: events must be issued by it. */
  issuer: string | undefined;

  private constructor(secret: Uint8Array) {
    this.#secret = secret;
    this.#server = createServer(async (request, response) => {
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const status = await this.#accept(request.url, request.headers.authorization, Buffer.concat(chunks).toString());
      if (status !== 204) this.refused.push(status);
      response.writeHead(status).end();
    });
  }

  static async start(secret: Uint8Array): Promise<EdgeEventsReceiver> {
    const receiver = new EdgeEventsReceiver(secret);
    await new Promise<void>((resolve) => receiver.#server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async #accept(path: string | undefined, authorization: string | undefined, body: string): Promise<number> {
    if (path !== EDGE_MEDIA_EVENTS_PATH) return 404;
    let claims: { iss: string; room: string; body_sha256: string };
    try {
      claims = await verifyServiceToken(
        bearerToken(authorization) ?? '',
        this.#secret,
        EDGE_AUDIENCE,
        this.issuer,
        MediaEventTokenClaimsSchema,
      );
    } catch {
      return 401;
    }
    if (claims.body_sha256 !== (await bodyDigest(body))) return 401;
    const parsed = MediaEventSchema.safeParse(JSON.parse(body));
    if (!parsed.success) return 400;
    if (parsed.data.room_id !== claims.room) return 403;
    this.events.push(parsed.data);
    return 204;
  }

  /** The first event matching `predicate`, waiting for it if needed. */
  waitForEvent<T extends MediaEvent>(predicate: (event: MediaEvent) => event is T, timeoutMs = 10_000): Promise<T> {
    return waitFor(() => this.events.find(predicate), { timeoutMs, message: 'a media event' }) as Promise<T>;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

export interface ControlResponse<T = unknown> {
  status: number;
  body: T;
}

/** The media node as a child process, started exactly as production starts it. */
export class MediaNodeProcess {
  readonly secret: Uint8Array;
  readonly events: EdgeEventsReceiver;
  readonly logs: string[] = [];
  readonly url: string;
  readonly nodeId: string;
  readonly #child: ChildProcess;
  readonly exited: Promise<number | null>;

  private constructor(
    child: ChildProcess,
    identity: { url: string; nodeId: string },
    secret: Uint8Array,
    events: EdgeEventsReceiver,
    logs: string[],
  ) {
    this.#child = child;
    this.url = identity.url;
    this.nodeId = identity.nodeId;
    this.secret = secret;
    this.events = events;
    this.logs = logs;
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null) resolve(child.exitCode);
      else child.once('exit', (code) => resolve(code));
    });
  }

  /** Starts a node; nodes that relay to each other share a MEDIA_NODE_SECRET given in `env`. */
  static async start(env: Record<string, string> = {}): Promise<MediaNodeProcess> {
    const secretText = env.MEDIA_NODE_SECRET ?? randomBytes(32).toString('base64url');
    const secret = new TextEncoder().encode(secretText);
    const events = await EdgeEventsReceiver.start(secret);
    // A port window of its own per node, so that test files running side by side never compete.
    const minPort = 20_000 + randomInt(0, 400) * 100;
    const nodeId = `test-${newId().slice(0, 8)}`;
    const logs: string[] = [];
    const child = launchMediaNode(
      {
        MEDIA_NODE_SECRET: secretText,
        MEDIA_HOST: '127.0.0.1',
        MEDIA_PORT: '0',
        MEDIA_NODE_ID: nodeId,
        MEDIA_RTC_LISTEN_IP: '127.0.0.1',
        MEDIA_RTC_MIN_PORT: String(minPort),
        MEDIA_RTC_MAX_PORT: String(minPort + 99),
        MEDIA_WORKERS: '1',
        EDGE_URL: events.url,
        LOG_LEVEL: 'info',
        ...env,
      },
      (line) => logs.push(line),
    );
    try {
      const listening = await waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`media node exited early:\n${logs.join('\n')}`);
          return logs.map(parseLogLine).find((line) => line?.message === 'media node listening');
        },
        { timeoutMs: 20_000, message: 'the media node to listen' },
      );
      events.issuer = mediaNodeIdentity(String(listening.url));
      return new MediaNodeProcess(child, { url: String(listening.url), nodeId }, secret, events, logs);
    } catch (error) {
      await terminate(child, 'SIGKILL');
      await events.close();
      throw error;
    }
  }

  /** A control-API token as the edge signs it for this node; options make it wrong on purpose. */
  token(
    options: { audience?: string; lifetimeSeconds?: number; secret?: Uint8Array; node?: string } = {},
  ): Promise<string> {
    return signServiceToken(options.secret ?? this.secret, {
      issuer: TOKEN_ISSUER,
      audience: options.audience ?? MEDIA_NODE_AUDIENCE,
      lifetimeSeconds: options.lifetimeSeconds,
      claims: { node: options.node ?? mediaNodeIdentity(this.url) },
    });
  }

  async request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    options: { token?: string | null; rawBody?: string } = {},
  ): Promise<ControlResponse<T>> {
    const token = options.token === undefined ? await this.token() : options.token;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const response = await fetch(new URL(path, this.url), {
      method,
      headers,
      body: options.rawBody ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  /** The node's process id (a benchmark reads its CPU and memory from /proc). */
  get pid(): number {
    return this.#child.pid!;
  }

  signal(signal: NodeJS.Signals): void {
    this.#child.kill(signal);
  }

  /** Stops the node at once (no drain), as the stack stops it, and the events receiver. */
  async stop(): Promise<void> {
    await terminate(this.#child);
    await this.events.close();
  }
}

/** Publishes `publisher` as `participantId` through the control API and applies the answer. */
export async function publishThrough(
  node: MediaNodeProcess,
  roomId: string,
  participantId: string,
  publisher: TestPublisher,
): Promise<PublishResponse> {
  const offer = await publisher.createOffer();
  const response = await node.request<PublishResponse>('POST', mediaControlPath('publish', roomId), {
    participant_id: participantId,
    sdp: offer,
  });
  if (response.status !== 201) throw new Error(`publish answered ${response.status}: ${JSON.stringify(response.body)}`);
  await publisher.setAnswer(response.body.sdp);
  return response.body;
}

/** Sets a subscriber's feeds through the control API, answers the offer and sends the answer back. */
export async function subscribeThrough(
  node: MediaNodeProcess,
  roomId: string,
  participantId: string,
  subscriber: TestSubscriber,
  feeds: string[],
): Promise<SubscribeResponse> {
  const response = await node.request<SubscribeResponse>('PUT', mediaControlPath('subscribe', roomId, participantId), {
    feeds,
  });
  if (response.status !== 200)
    throw new Error(`subscribe answered ${response.status}: ${JSON.stringify(response.body)}`);
  await answerOffer(node, roomId, participantId, subscriber, response.body.sdp);
  return response.body;
}

/** Answers an offer of the node (from PUT subscribers or a subscriber_offer event). */
export async function answerOffer(
  node: MediaNodeProcess,
  roomId: string,
  participantId: string,
  subscriber: TestSubscriber,
  offerSdp: string,
): Promise<void> {
  const answer = await subscriber.answer(offerSdp);
  const response = await node.request('POST', mediaControlPath('setSubscriberAnswer', roomId, participantId), {
    sdp: answer,
  });
  if (response.status !== 200) throw new Error(`answer answered ${response.status}: ${JSON.stringify(response.body)}`);
}

/** The value of one sample of the node's /metrics (the sum over label sets). */
/** The sum of a metric's samples (every label set) on a media node's `/metrics`. */
export async function metricValue(node: Pick<MediaNodeProcess, 'url'>, name: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', node.url))).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

function parseLogLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
