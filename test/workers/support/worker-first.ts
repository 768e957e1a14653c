/**
 * Imported first by every signaling test file. @hono/zod-openapi adds `.openapi()` to zod's prototype,
 * and zod 4 copies prototype methods into a schema when it is built: shared/ schemas built by a
 * test's imports before the Worker's app module loads would lack it, and app.ts would fail to load.
 * In the deployed Worker app.ts is imported first, so only test module order needs this.
 */
import '@hono/zod-openapi';
