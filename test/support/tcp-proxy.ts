import { connect, createServer, type Socket } from 'node:net';

/**
 * A loopback TCP proxy whose connections can be cut at will: the way to drop a client's WebSocket
 * abruptly (no close frame, as a network switch would) and watch it reconnect, to make a server
 * unreachable for a while, or to make it hang.
 */
export async function startTcpProxy(target: { host: string; port: number }) {
  const sockets = new Set<Socket>();
  let refusing = false;
  let stalling = false;
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    if (stalling) {
      // Accepted, and then nothing: no upstream, no answer.
      sockets.add(client);
      client.once('close', () => sockets.delete(client));
      client.on('error', () => client.destroy());
      client.pause();
      return;
    }
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
    }
    client.pipe(upstream).pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('proxy has no address');
  return {
    port: address.port,
    /** Destroys every proxied connection without a WebSocket close handshake. */
    cutAll(): void {
      for (const socket of sockets) socket.destroy();
    },
    /** Cuts every connection and refuses new ones until {@link accept}: the target looks down. */
    refuse(): void {
      refusing = true;
      for (const socket of sockets) socket.destroy();
    },
    /**
     * Keeps every connection open but forwards nothing either way, and holds new ones likewise: the
     * target hangs for whoever goes through the proxy (a black-holed path, a hung control API), while
     * what it does by itself (heartbeats) goes on.
     */
    stall(): void {
      stalling = true;
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
    },
    accept(): void {
      refusing = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
