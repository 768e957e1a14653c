import type { Env as EdgeEnv } from '../../../workers/src/env.ts';

// `env` of cloudflare:test / cloudflare:workers is typed as Cloudflare.Env: make it the edge's bindings.
declare global {
  namespace Cloudflare {
    interface Env extends EdgeEnv {}
  }
}
