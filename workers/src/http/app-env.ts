import type { RequestIdVariables } from 'hono/request-id';
import type { Logger } from '../../../shared/src/log.ts';
import type { EdgeConfig } from '../config.ts';
import type { Env } from '../env.ts';

/** Hono's environment for the edge app: the bindings plus what middleware puts on the context. */
export interface AppEnv {
  Bindings: Env;
  Variables: RequestIdVariables & {
    /** Parsed once per isolate (edgeConfig); absent only while the config itself is being parsed. */
    config: EdgeConfig;
    /** Carries the request id on every line. */
    logger: Logger;
  };
}
