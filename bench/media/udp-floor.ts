/**
 * The floor of the media benchmark: a plain Node UDP fan-out with no ICE, no DTLS and no SRTP. One
 * socket receives; each datagram is sent to every subscriber address. It costs what any Node
 * forwarding path must pay (one `dgram.send` per copy). Run as a child process in two roles:
 *   forwarder — the "SFU" whose CPU is measured;
 *   load      — the source (the publisher's packet rate and sizes) and the subscriber sockets.
 */
import { createSocket, type Socket } from 'node:dgram';
import { serveBenchCommands } from './child.ts';

export type FloorCommand =
  | { op: 'bind' }
  | { op: 'targets'; ports: number[] }
  | { op: 'sinks'; count: number }
  | { op: 'source'; port: number; packetsPerSecond: number; paused: boolean }
  | { op: 'stats' }
  | { op: 'close' };

const HOST = '127.0.0.1';
/** A VP8 packet of the dummy publisher is ~1,100 bytes, Opus ~100: the mix, roughly. */
const PACKET_SIZES = [1_100, 100, 1_100, 100, 100];

const sockets: Socket[] = [];
let targets: number[] = [];
const sinkCounts: number[] = [];
let sent = 0;
let sourceTimer: NodeJS.Timeout | undefined;

async function bind(onMessage?: (message: Buffer) => void, index?: number): Promise<number> {
  const socket = createSocket('udp4');
  if (onMessage) socket.on('message', onMessage);
  if (index !== undefined) socket.on('message', () => sinkCounts[index]!++);
  await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
  sockets.push(socket);
  return socket.address().port;
}

async function execute(command: FloorCommand): Promise<unknown> {
  switch (command.op) {
    case 'bind': {
      let inbound: Socket | undefined;
      const port = await bind((message) => {
        for (const target of targets) inbound!.send(message, target, HOST);
      });
      inbound = sockets.at(-1);
      return port;
    }
    case 'targets':
      targets = command.ports;
      return null;
    case 'sinks': {
      const ports: number[] = [];
      while (sinkCounts.length < command.count) {
        sinkCounts.push(0);
        ports.push(await bind(undefined, sinkCounts.length - 1));
      }
      return ports;
    }
    case 'source': {
      clearInterval(sourceTimer);
      if (command.paused) return null;
      if (sockets.length === 0) await bind();
      const out = sockets[0]!;
      const payloads = PACKET_SIZES.map((size) => Buffer.alloc(size, 0x5a));
      // Bursts every 20 ms, like the dummy publisher's audio frames and 30 fps video.
      const perTick = command.packetsPerSecond / 50;
      let owed = 0;
      sourceTimer = setInterval(() => {
        owed += perTick;
        for (; owed >= 1; owed--) out.send(payloads[sent++ % payloads.length]!, command.port, HOST);
      }, 20);
      return null;
    }
    case 'stats':
      return { cpu: process.cpuUsage(), sent, received: sinkCounts };
    case 'close':
      clearInterval(sourceTimer);
      for (const socket of sockets) socket.close();
      setImmediate(() => process.exit(0));
      return null;
  }
}

serveBenchCommands(execute);
