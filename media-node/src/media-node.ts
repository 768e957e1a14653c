import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { ConfigError } from '../../shared/src/config.ts';
import { createLogger, type Logger } from '../../shared/src/log.ts';
import { mediaNodeIdentity } from '../../shared/src/media-node-trust.ts';
import { advertisesLoopbackByDefault, isWildcardHost, type MediaNodeConfig } from './config.ts';
import { createControlApi, createOperatorApi, type HealthReport } from './control-api.ts';
import { EdgeEventSender } from './edge-events.ts';
import { MediaMetrics } from './metrics.ts';
import { REGISTRY_CALL_TIMEOUT_MS, type RegistryClient, RegistryHeartbeat } from './registry.ts';
import { srtpImplementation } from './sfu/native-srtp.ts';
import { defaultHostAddresses, type RtcSettings } from './sfu/rtc-settings.ts';
import { MediaWorkerPool } from './workers/pool.ts';

/** At shutdown, events still queued for the edge get this long to go out. */
const EVENT_FLUSH_MS = 3_000;

export interface RunningMediaNode {
  /** The URL the control API is reachable at (MEDIA_PUBLIC_URL, or the bound address). */
  url: string;
  /**
   * SIGTERM: refuse new rooms, wait until the rooms on this node end (at most
   * MEDIA_DRAIN_TIMEOUT_SECONDS, then close them), then stop.
   */
  drain(): Promise<void>;
  /** Stops at once: closes every room, flushes events briefly, stops the workers and the server. */
  close(): Promise<void>;
}

export interface MediaNodeOverrides {
  logger?: Logger;
  /** Instead of an @upstash/redis client built from the config (tests). */
  registryClient?: RegistryClient;
}

/** Starts the media node: worker threads, control API, events to the edge, registry heartbeat. */
export async function startMediaNode(
  config: MediaNodeConfig,
  overrides: MediaNodeOverrides = {},
): Promise<RunningMediaNode> {
  const logger = overrides.logger ?? createLogger(config.logLevel, { node_id: config.nodeId });
  const settings = rtcSettings(config);
  if (settings.hostAddresses.length === 0) {
    throw new ConfigError([
      {
        code: 'custom',
        path: ['MEDIA_RTC_LISTEN_IP'],
        message: 'is required: there is no non-loopback IPv4 interface to gather ICE candidates on',
        input: undefined,
      },
    ]);
  }
  if (config.ice.turn && !config.ice.turn.secret) {
    logger.warn('TURN_SERVER without TURN_SECRET: the media node does not use TURN itself');
  }

  // The node is known by the URL the edge dials (mediaNodeIdentity). With MEDIA_PORT=0 that URL is
  // known once the control API listens, which is before any control call or media event.
  let url: string | undefined;
  const identity = () => {
    if (!url) throw new Error('the media node has no URL before it listens');
    return mediaNodeIdentity(url);
  };
  const events = new EdgeEventSender({ edgeUrl: config.edgeUrl, secret: config.secret, identity, logger });
  const pool = new MediaWorkerPool({
    workers: config.workers,
    busyUtilization: config.workerBusyUtilization,
    roomAffinity: config.roomAffinity,
    capacity: config.capacity,
    connectTimeoutMs: config.connectTimeoutSeconds * 1_000,
    nodeId: config.nodeId,
    logLevel: config.logLevel,
    settings,
    portRange: config.rtcPortRange,
    secret: config.secret,
    logger,
    onEvent: (event) => events.send(event),
  });
  await pool.start();
  const metrics = new MediaMetrics(pool);
  const health = (): HealthReport => ({
    status: pool.draining ? 'draining' : 'ok',
    node_id: config.nodeId,
    load: pool.load,
    capacity: pool.capacity,
    draining: pool.draining,
    rooms: pool.roomCount,
    workers: pool.workerCount,
  });
  const operatorDeps = { health, metrics: () => metrics.render() };
  const app = createControlApi(
    { secret: config.secret, identity, rooms: pool, logger, ...operatorDeps },
    { operatorRoutes: !config.operator },
  );

  const server = await listen(app, config.host, config.port);
  const { port } = server.address() as AddressInfo;
  url = config.publicUrl ?? dialUrl(config.host, port);
  // With MEDIA_OPERATOR_PORT, /health and /metrics answer on a listener of their own.
  let operatorServer: Awaited<ReturnType<typeof listen>> | undefined;
  let operatorUrl = url;
  if (config.operator) {
    operatorServer = await listen(createOperatorApi(operatorDeps), config.operator.host, config.operator.port);
    operatorUrl = dialUrl(config.operator.host, (operatorServer.address() as AddressInfo).port);
  }

  const registryClient =
    overrides.registryClient ??
    (config.upstash
      ? // Loaded only when a registry is configured: the client's ~1 MB of heap is for nodes that use it.
        new (await import('@upstash/redis')).Redis({
          url: config.upstash.url,
          token: config.upstash.token,
          // A fresh deadline per command (retries included): a hung request ends instead of lingering.
          signal: () => AbortSignal.timeout(REGISTRY_CALL_TIMEOUT_MS),
        })
      : undefined);
  const registry = registryClient
    ? new RegistryHeartbeat({
        client: registryClient,
        nodeId: config.nodeId,
        url,
        secret: config.secret,
        status: health,
        logger,
      })
    : undefined;
  if (registry && advertisesLoopbackByDefault(config)) {
    // The edge dials what the registry says: a loopback URL only works when the edge runs on this host.
    logger.warn('MEDIA_PUBLIC_URL is unset: the registry advertises a loopback URL', { url });
  }
  await registry?.start();
  logger.info('media node listening', {
    url,
    port,
    operator_url: operatorUrl,
    workers: config.workers,
    rtc_ports: `${config.rtcPortRange.min}-${config.rtcPortRange.max}`,
    announced_ip: config.announcedIp ?? null,
    registry: registry ? 'upstash' : 'none',
    srtp: srtpImplementation,
  });

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await pool.closeAllRooms();
      await events.flush(EVENT_FLUSH_MS);
      await registry?.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (operatorServer) await new Promise<void>((resolve) => operatorServer?.close(() => resolve()));
      await pool.stop();
      logger.info('media node stopped');
    })();
    return stopped;
  };

  return {
    url,
    async drain() {
      if (!pool.draining) {
        pool.draining = true;
        logger.info('draining: no new rooms', { rooms: pool.roomCount, timeout_s: config.drainTimeoutSeconds });
        await registry?.beat();
      }
      const ended = await waitForNoRooms(pool, config.drainTimeoutSeconds * 1_000);
      if (!ended) logger.warn('drain timeout: closing the remaining rooms', { rooms: pool.roomCount });
      await stop();
    },
    close: stop,
  };
}

async function listen(app: { fetch: (request: Request) => Response | Promise<Response> }, host: string, port: number) {
  const server = serve({ fetch: app.fetch, port, hostname: host });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return server;
}

/** The URL to dial a listener bound to host:port (a wildcard bind is dialled on loopback). */
function dialUrl(host: string, port: number): string {
  const dialHost = isWildcardHost(host) ? '127.0.0.1' : host;
  return `http://${dialHost.includes(':') ? `[${dialHost}]` : dialHost}:${port}`;
}

function rtcSettings(config: MediaNodeConfig): RtcSettings {
  return {
    hostAddresses: defaultHostAddresses(config.rtcListenIp),
    listenIp: config.rtcListenIp,
    announcedIp: config.announcedIp,
    stunUrl: config.ice.stunUrl,
    turn: config.ice.turn,
    dynacast: config.dynacast,
  };
}

function waitForNoRooms(pool: MediaWorkerPool, timeoutMs: number): Promise<boolean> {
  if (pool.roomCount === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onRooms = (count: number) => {
      if (count > 0) return;
      clearTimeout(timer);
      pool.off('rooms', onRooms);
      resolve(true);
    };
    const timer = setTimeout(() => {
      pool.off('rooms', onRooms);
      resolve(false);
    }, timeoutMs);
    pool.on('rooms', onRooms);
  });
}
