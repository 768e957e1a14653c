import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { RTCDtlsTransport, RTCPeerConnection } from 'werift';
import { LOOPBACK_PEER_CONFIG, waitFor } from '../support/werift-peers.ts';

/**
 * The DTLS start of a connection, as patched in patches/werift+*.patch: stock werift's DTLS client
 * waits a fixed 100 ms before its ClientHello (every subscriber's and every publishing leg's
 * `subscribe` → first RTP), because a werift server drops records that arrive before its own DTLS
 * start. The patch keeps those early records for the server and sends the ClientHello at once.
 */

/** DTLS record content type handshake (RFC 6347 §4.1); its first handshake message type follows the header. */
const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const HELLO_VERIFY_REQUEST = 3;
const RECORD_HEADER_LENGTH = 13;

type IceConnection = { send(data: Buffer): Promise<void>; onData: { subscribe(f: (data: Buffer) => void): unknown } };
type DtlsTransport = { start(): Promise<void>; iceTransport: { connection: IceConnection } };

/** The handshake message types of the DTLS records a connection sends, in order. */
function recordHandshakesSent(transport: DtlsTransport): number[] {
  const sent: number[] = [];
  const connection = transport.iceTransport.connection;
  const send = connection.send.bind(connection);
  connection.send = (data: Buffer) => {
    if (data[0] === HANDSHAKE) sent.push(data[RECORD_HEADER_LENGTH]!);
    return send(data);
  };
  return sent;
}

/** Runs `before`, then the transport's own start(), and reports what `after` saw before the next macrotask. */
function aroundStart(transport: DtlsTransport, before: () => Promise<unknown>, after: () => void): void {
  const start = transport.start.bind(transport);
  transport.start = async () => {
    await before();
    const started = start();
    await new Promise(setImmediate);
    after();
    return started;
  };
}

const peers: RTCPeerConnection[] = [];
afterEach(async () => {
  await Promise.all(peers.splice(0).map((pc) => pc.close()));
});

/**
 * An offerer (ICE-controlling, so the DTLS server) and an answerer (the client, as a werift subscriber
 * against the node), negotiated up to the server's setRemoteDescription, which the test makes.
 */
async function negotiatedPair(): Promise<{ server: RTCPeerConnection; client: RTCPeerConnection }> {
  const server = new RTCPeerConnection(LOOPBACK_PEER_CONFIG);
  const client = new RTCPeerConnection(LOOPBACK_PEER_CONFIG);
  peers.push(server, client);
  server.addTransceiver('audio', { direction: 'sendonly' });
  await server.setLocalDescription(await server.createOffer());
  await client.setRemoteDescription(server.localDescription!);
  await client.setLocalDescription(await client.createAnswer());
  return { server, client };
}

function bothConnected(server: RTCPeerConnection, client: RTCPeerConnection): Promise<true> {
  return waitFor(() => server.connectionState === 'connected' && client.connectionState === 'connected', {
    message: 'both connections up',
  });
}

describe('werift DTLS start (patches/werift+*.patch)', () => {
  it('sends the ClientHello at once, and a server keeps the records that arrive before its own start', async () => {
    const { server, client } = await negotiatedPair();
    const serverTransport = server.dtlsTransports[0] as unknown as DtlsTransport;
    const clientTransport = client.dtlsTransports[0] as unknown as DtlsTransport;
    const serverSent = recordHandshakesSent(serverTransport);
    const clientSent = recordHandshakesSent(clientTransport);
    let serverReceivedBeforeStart = 0;
    serverTransport.iceTransport.connection.onData.subscribe((data) => {
      if (data[0] === HANDSHAKE) serverReceivedBeforeStart++;
    });

    // The client's ClientHello, handed to the network before its start() yields to a timer.
    let clientHellosOnStart: number[] = [];
    aroundStart(
      clientTransport,
      async () => undefined,
      () => {
        clientHellosOnStart = clientSent.filter((type) => type === CLIENT_HELLO);
      },
    );
    // The server starts only once the ClientHello has arrived: it must answer it from what it kept.
    let serverAnswersOnStart: number[] = [];
    aroundStart(
      serverTransport,
      () => waitFor(() => serverReceivedBeforeStart > 0, { intervalMs: 5, message: 'the ClientHello at the server' }),
      () => {
        serverAnswersOnStart = [...serverSent];
      },
    );

    await server.setRemoteDescription(client.localDescription!);
    await bothConnected(server, client);
    expect(clientHellosOnStart).toEqual([CLIENT_HELLO]);
    expect(serverAnswersOnStart).toEqual([HELLO_VERIFY_REQUEST]);
  });

  it('answers a ClientHello that arrived twice before its start once, and connects', async () => {
    const { server, client } = await negotiatedPair();
    const serverTransport = server.dtlsTransports[0] as unknown as DtlsTransport;
    const serverSent = recordHandshakesSent(serverTransport);
    let clientHellosReceived = 0;
    serverTransport.iceTransport.connection.onData.subscribe((data) => {
      if (data[0] === HANDSHAKE && data[RECORD_HEADER_LENGTH] === CLIENT_HELLO) clientHellosReceived++;
    });
    // A loaded server starts late: the client's first flight and its retransmission are both waiting.
    let serverAnswersOnStart: number[] = [];
    aroundStart(
      serverTransport,
      () => waitFor(() => clientHellosReceived >= 2, { intervalMs: 20, message: 'a retransmitted ClientHello' }),
      () => {
        serverAnswersOnStart = [...serverSent];
      },
    );
    await server.setRemoteDescription(client.localDescription!);
    // werift's client fails its handshake on a second HelloVerifyRequest.
    await bothConnected(server, client);
    expect(serverAnswersOnStart).toEqual([HELLO_VERIFY_REQUEST]);
  });

  it('a client given a second HelloVerifyRequest (the server answered a retransmitted ClientHello too) connects', async () => {
    const { server, client } = await negotiatedPair();
    const connection = (client.dtlsTransports[0] as unknown as DtlsTransport).iceTransport
      .connection as IceConnection & {
      onData: { execute(data: Buffer): void };
    };
    // Every HelloVerifyRequest reaches the client twice, the copy after the original's handling began.
    let duplicated = 0;
    connection.onData.subscribe((data) => {
      if (data[0] !== HANDSHAKE || data[RECORD_HEADER_LENGTH] !== HELLO_VERIFY_REQUEST || duplicated > 0) return;
      duplicated++;
      setImmediate(() => connection.onData.execute(Buffer.from(data)));
    });
    await server.setRemoteDescription(client.localDescription!);
    // Stock werift's client fails its handshake on the copy (its flight 3 throws when already in flight 3).
    await bothConnected(server, client);
    expect(duplicated).toBe(1);
  });

  it('loads the X.509 generator only to generate a certificate, never for a connection given one', async () => {
    const { certPem, privateKey, signatureHash } = await RTCDtlsTransport.SetupCertificate();
    // A fresh thread, as a media worker: which modules does an offer with the node's certificate load?
    const modulesLoaded = (withCertificate: boolean) =>
      new Promise<string[]>((resolve, reject) => {
        const script = `
          import { registerHooks } from 'node:module';
          import { parentPort, workerData } from 'node:worker_threads';
          const loaded = [];
          registerHooks({ resolve: (specifier, context, next) => { loaded.push(specifier); return next(specifier, context); } });
          const { RTCPeerConnection } = await import(workerData.werift);
          const pc = new RTCPeerConnection({ iceServers: [], dtls: workerData.keys ? { keys: workerData.keys } : undefined });
          pc.addTransceiver('audio', { direction: 'sendonly' });
          await pc.setLocalDescription(await pc.createOffer());
          await pc.close();
          parentPort.postMessage(loaded);`;
        const keys = withCertificate ? { certPem, keyPem: privateKey, signatureHash } : undefined;
        const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(script)}`), {
          workerData: { keys, werift: import.meta.resolve('werift') },
        });
        worker.once('message', (loaded: string[]) => {
          resolve(loaded);
          void worker.terminate();
        });
        worker.once('error', reject);
      });
    expect(await modulesLoaded(true)).not.toContain('@peculiar/x509');
    expect(await modulesLoaded(false)).toContain('@peculiar/x509');
  });
});
