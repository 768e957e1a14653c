#!/bin/sh
# The media node's process: `npm start` and the tests and benchmarks (scripts/stack.ts), `npm run
# media-node` and the Dockerfile all start the node through this file, so its process settings live
# here once. It replaces itself with Node (exec): no shell stays behind, signals reach Node directly.
# Node is $NODE_BINARY when set (the stack passes the binary it runs on), else the `node` on PATH (not
# $NODE: npm sets that to the Node running npm itself, which may be another version).
#
# The settings, each for memory (bench:media, 20 subscribers):
# - MALLOC_ARENA_MAX=2: glibc gives each thread that allocates a malloc arena of its own (up to 8 per
#   core): the main thread, the media workers, V8's and libuv's threads. Two arenas keep ~6 MB less
#   resident, a usual setting for Node servers.
# - --max-semi-space-size=1: the main thread only serves the control API, metrics and the registry:
#   a 1 MB young generation (V8 grows it to 16 MB after the start's burst of allocations) keeps ~7 MB
#   less resident. The media workers have their own limits (src/workers/pool.ts).
# - --liftoff-only: the node's only WebAssembly is undici's HTTP parser, which fetch() loads with the
#   node's first call out (a media event to the edge, a registry heartbeat, a relay). V8 then also
#   compiles it with its optimizing tier, which left ~8.5 MB more resident (node after 10 events: 59 MB
#   anonymous memory, 51 MB with the flag); Liftoff, the baseline tier, parses those few small answers
#   as well. JavaScript is unaffected.
export MALLOC_ARENA_MAX=2
exec "${NODE_BINARY:-node}" --max-semi-space-size=1 --liftoff-only "$(dirname "$0")/dist/main.mjs"
