import { ConfigError } from '../../shared/src/config.ts';
import { createLogger } from '../../shared/src/log.ts';
import { parseMediaNodeConfig } from './config.ts';
import { loggableError } from './errors.ts';
import { startMediaNode } from './media-node.ts';

/**
 * `node media-node/src/main.ts`: the media node, configured from the environment. The first
 * SIGTERM/SIGINT drains (no new rooms, exit when the rooms have ended); a second one stops at once.
 */
const bootLogger = createLogger('info', { component: 'media-node' });

let config: ReturnType<typeof parseMediaNodeConfig>;
try {
  config = parseMediaNodeConfig(process.env);
} catch (error) {
  const variables = error instanceof ConfigError ? error.variables.join(',') : undefined;
  bootLogger.error('invalid configuration', { error: loggableError(error), variables });
  process.exit(1);
}

const logger = createLogger(config.logLevel, { node_id: config.nodeId });
process.on('unhandledRejection', (reason) => logger.error('unhandled rejection', { error: loggableError(reason) }));

const node = await startMediaNode(config, { logger }).catch((error: unknown) => {
  logger.error('media node failed to start', { error: loggableError(error) });
  process.exit(1);
});

let signals = 0;
const onSignal = (signal: NodeJS.Signals) => {
  signals++;
  logger.info('signal received', { signal, action: signals === 1 ? 'drain' : 'stop' });
  const done = signals === 1 ? node.drain() : node.close();
  done.then(
    () => process.exit(0),
    (error: unknown) => {
      logger.error('shutdown failed', { error: loggableError(error) });
      process.exit(1);
    },
  );
};
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);
