import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { classes, Message, methods, parseMessage, RTCPeerConnection } from 'werift';
import { connectPeers, LOOPBACK_PEER_CONFIG, waitFor } from '../support/werift-peers.ts';

/**
 * How werift's ICE answers a connectivity check, as patched in patches/werift+*.patch (RFC 8445 7.3,
 * RFC 5389 10.1.2): a check must name the agent's ufrag in USERNAME and carry a MESSAGE-INTEGRITY
 * made with its password. Stock werift answered any Binding request with its own password, learned
 * the sender as a peer-reflexive candidate and let it switch the agent's role: whoever knew a media
 * port could steer the connection. The node's peer connections are werift's.
 */

type IceAgent = { iceControlling: boolean; remoteCandidates: { host: string; port: number }[] };
const agentOf = (pc: RTCPeerConnection) => (pc.iceTransports[0] as unknown as { connection: IceAgent }).connection;

const peers: RTCPeerConnection[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.close();
  await Promise.all(peers.splice(0).map((pc) => pc.close()));
});

/** A connected pair; the answerer is the controlled agent. */
async function connectedAnswerer(): Promise<{
  answerer: RTCPeerConnection;
  ufrag: string;
  password: string;
  port: number;
}> {
  const offerer = new RTCPeerConnection(LOOPBACK_PEER_CONFIG);
  const answerer = new RTCPeerConnection(LOOPBACK_PEER_CONFIG);
  peers.push(offerer, answerer);
  offerer.addTransceiver('audio', { direction: 'sendonly' });
  await connectPeers(offerer, answerer);
  const sdp = answerer.localDescription!.sdp;
  const [, ufrag] = /a=ice-ufrag:(\S+)/.exec(sdp)!;
  const [, password] = /a=ice-pwd:(\S+)/.exec(sdp)!;
  const [, port] = / udp \d+ 127\.0\.0\.1 (\d+) typ host/i.exec(sdp)!;
  return { answerer, ufrag: ufrag!, password: password!, port: Number(port) };
}

/** Sends a Binding request from a socket of its own and returns the answer (or undefined after 1 s). */
async function check(port: number, build: (request: Message) => Message) {
  const socket = createSocket('udp4');
  sockets.push(socket);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const answer = new Promise<Message | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 1_000);
    socket.once('message', (data) => {
      clearTimeout(timer);
      resolve(parseMessage(data));
    });
  });
  const request = build(new Message(methods.BINDING, classes.REQUEST).setAttribute('PRIORITY', 1));
  socket.send(request.bytes, port, '127.0.0.1');
  return { answer: await answer, from: socket.address().port };
}

/** ICE-CONTROLLED with the lowest tie-breaker: a controlled agent that heeds it becomes the controlling one. */
const claimControlled = (request: Message) => request.setAttribute('ICE-CONTROLLED', 0n);

const learned = (pc: RTCPeerConnection, port: number) =>
  agentOf(pc).remoteCandidates.some((candidate) => candidate.port === port);

describe('werift ICE authenticates connectivity checks (patches/werift+*.patch)', () => {
  it('refuses a check without USERNAME and MESSAGE-INTEGRITY (400), and learns nothing from it', async () => {
    const { answerer, port } = await connectedAnswerer();
    const { answer, from } = await check(port, (request) => claimControlled(request).addFingerprint());
    expect(answer?.messageClass).toBe(classes.ERROR);
    expect(answer?.getAttributeValue('ERROR-CODE')).toEqual([400, 'Bad Request']);
    expect(answer?.attributesKeys).not.toContain('MESSAGE-INTEGRITY');
    expect(learned(answerer, from)).toBe(false);
    expect(agentOf(answerer).iceControlling).toBe(false);
  });

  it('refuses a check signed with another password, or naming another ufrag (401), and learns nothing from it', async () => {
    const { answerer, ufrag, password, port } = await connectedAnswerer();
    const wrongPassword = await check(port, (request) =>
      claimControlled(request)
        .setAttribute('USERNAME', `${ufrag}:peer`)
        .addMessageIntegrity(Buffer.from('not-the-password-at-all'))
        .addFingerprint(),
    );
    const wrongUfrag = await check(port, (request) =>
      claimControlled(request)
        .setAttribute('USERNAME', 'nope:peer')
        .addMessageIntegrity(Buffer.from(password))
        .addFingerprint(),
    );
    for (const { answer, from } of [wrongPassword, wrongUfrag]) {
      expect(answer?.messageClass).toBe(classes.ERROR);
      expect(answer?.getAttributeValue('ERROR-CODE')).toEqual([401, 'Unauthorized']);
      expect(learned(answerer, from)).toBe(false);
    }
    expect(agentOf(answerer).iceControlling).toBe(false);
    expect(answerer.connectionState).toBe('connected');
  });

  it('answers a check signed with its password and learns the sender, which the refused checks could have done', async () => {
    const { answerer, ufrag, password, port } = await connectedAnswerer();
    const { answer, from } = await check(port, (request) =>
      request
        .setAttribute('ICE-CONTROLLING', 1n)
        .setAttribute('USERNAME', `${ufrag}:peer`)
        .addMessageIntegrity(Buffer.from(password))
        .addFingerprint(),
    );
    expect(answer?.messageClass).toBe(classes.RESPONSE);
    expect(parseMessage(Buffer.from(answer!.bytes), Buffer.from(password))).toBeDefined();
    expect(learned(answerer, from)).toBe(true);
    // A signed claim of the controlled role is heeded (werift switches roles on it).
    await check(port, (request) =>
      claimControlled(request)
        .setAttribute('USERNAME', `${ufrag}:peer`)
        .addMessageIntegrity(Buffer.from(password))
        .addFingerprint(),
    );
    await waitFor(() => agentOf(answerer).iceControlling, { message: 'the role switch' });
  });
});
