import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { findExecutable } from '../../test/support/required-tools.ts';

/**
 * Janus (Debian's package) as the reference SFU of the media benchmark: a private config folder
 * with only the VideoRoom plugin and the WebSocket transport on 127.0.0.1, no STUN, mDNS ignored
 * (../shared/notes/reference-peers.md). Installed with apt when missing. Janus never gathers on
 * loopback: its ICE uses one local address of this host (traffic to it stays on this host), and so
 * do the load generators' peers when they talk to Janus.
 */
const JANUS_LIB_DIR = '/usr/lib/x86_64-linux-gnu/janus';
export const JANUS_ROOM = 1234;

export function ensureJanusInstalled(): string {
  const existing = findExecutable('janus');
  if (existing) return existing;
  console.log('janus is not installed: apt-get install -y janus');
  execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'janus'], { stdio: 'inherit' });
  const installed = findExecutable('janus');
  if (!installed) throw new Error('apt-get installed janus, but it is not on PATH');
  return installed;
}

export class JanusProcess {
  readonly #child: ChildProcess;
  readonly #dir: string;
  readonly wsUrl: string;

  private constructor(child: ChildProcess, dir: string, wsUrl: string) {
    this.#child = child;
    this.#dir = dir;
    this.wsUrl = wsUrl;
  }

  get pid(): number {
    return this.#child.pid!;
  }

  /** `eventLoops`: 0 = Janus's default (a thread per handle); 2 = `event_loops = 2`, fair on 2 cores. */
  static async start(
    binary: string,
    options: { eventLoops: number; wsPort: number; rtpPorts: [number, number]; iceAddress: string },
  ) {
    const dir = mkdtempSync(join(tmpdir(), 'janus-bench-'));
    for (const [folder, library] of [
      ['plugins', 'libjanus_videoroom.so'],
      ['transports', 'libjanus_websockets.so'],
    ] as const) {
      mkdirSync(join(dir, folder));
      symlinkSync(join(JANUS_LIB_DIR, folder, library), join(dir, folder, library));
    }
    writeFileSync(
      join(dir, 'janus.jcfg'),
      `general: {
  configs_folder = "${dir}"
  plugins_folder = "${dir}/plugins"
  transports_folder = "${dir}/transports"
  events_folder = "${dir}/events"
  loggers_folder = "${dir}/loggers"
  debug_level = 3
  admin_secret = "unused"
  session_timeout = 0
  ${options.eventLoops > 0 ? `event_loops = ${options.eventLoops}` : ''}
}
media: {
  rtp_port_range = "${options.rtpPorts[0]}-${options.rtpPorts[1]}"
  ipv6 = false
}
nat: {
  ice_enforce_list = "${options.iceAddress}"
  ignore_mdns = true
  nice_debug = false
}
plugins: {}
transports: {}
events: { broadcast = false }
loggers: {}
`,
    );
    writeFileSync(
      join(dir, 'janus.plugin.videoroom.jcfg'),
      `room-${JANUS_ROOM}: {
  description = "bench"
  publishers = 1
  bitrate = 0
  audiocodec = "opus"
  videocodec = "vp8"
}
`,
    );
    writeFileSync(
      join(dir, 'janus.transport.websockets.jcfg'),
      `general: {
  json = "compact"
  ws = true
  ws_port = ${options.wsPort}
  ws_ip = "127.0.0.1"
  wss = false
}
admin: { admin_ws = false admin_wss = false }
`,
    );
    const child = spawn(binary, ['-F', dir, '-C', join(dir, 'janus.jcfg'), '-o'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.once('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGTERM')
        console.error(`janus exited (${code ?? signal}):\n${output.join('').slice(-3_000)}`);
    });
    const output: string[] = [];
    child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const janus = new JanusProcess(child, dir, `ws://127.0.0.1:${options.wsPort}`);
    const deadline = performance.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error('janus exited before listening');
      if (await accepts(options.wsPort)) break;
      if (performance.now() > deadline) {
        await janus.stop();
        throw new Error(`janus did not start:\n${output.join('')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return janus;
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode === null) {
      const exited = new Promise((resolve) => this.#child.once('exit', resolve));
      this.#child.kill('SIGTERM');
      const killer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

interface JanusMessage {
  janus: string;
  transaction?: string;
  data?: { id: number };
  plugindata?: { data: Record<string, unknown> };
  jsep?: { type: string; sdp: string };
  error?: { reason: string };
}

/** The part of Janus's WebSocket API the benchmark uses: one session, VideoRoom handles. */
export class JanusSession {
  readonly #socket: WebSocket;
  readonly #pending = new Map<string, (message: JanusMessage) => void>();
  #sessionId = 0;
  #transactions = 0;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.on('message', (raw) => {
      const message = JSON.parse(raw.toString()) as JanusMessage;
      // 'ack' only says a plugin message was received: its result comes as an 'event'.
      if (message.janus === 'ack' || !message.transaction) return;
      const resolve = this.#pending.get(message.transaction);
      this.#pending.delete(message.transaction);
      resolve?.(message);
    });
  }

  static async connect(url: string): Promise<JanusSession> {
    const socket = new WebSocket(url, 'janus-protocol');
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    const session = new JanusSession(socket);
    session.#sessionId = (await session.#request({ janus: 'create' })).data!.id;
    return session;
  }

  #request(body: Record<string, unknown>): Promise<JanusMessage> {
    const transaction = `t${++this.#transactions}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`janus: no answer to ${JSON.stringify(body)}`)), 20_000);
      this.#pending.set(transaction, (message) => {
        clearTimeout(timer);
        if (message.janus === 'error' || message.plugindata?.data.error) {
          reject(new Error(`janus: ${JSON.stringify(message.error ?? message.plugindata?.data)}`));
        } else resolve(message);
      });
      this.#socket.send(JSON.stringify({ ...body, transaction, session_id: this.#sessionId || undefined }));
    });
  }

  async #attach(): Promise<number> {
    return (await this.#request({ janus: 'attach', plugin: 'janus.plugin.videoroom' })).data!.id;
  }

  /** Publishes an offer in the room; returns Janus's answer and the publisher (feed) id. */
  async publish(offerSdp: string): Promise<{ answer: string; feed: number }> {
    const handle = await this.#attach();
    const reply = await this.#request({
      janus: 'message',
      handle_id: handle,
      body: { request: 'joinandconfigure', room: JANUS_ROOM, ptype: 'publisher', audio: true, video: true },
      jsep: { type: 'offer', sdp: offerSdp },
    });
    return { answer: reply.jsep!.sdp, feed: reply.plugindata!.data.id as number };
  }

  /** Subscribes a new handle to `feed`; `answer` turns Janus's offer into the subscriber's answer. */
  async subscribe(feed: number, answer: (offer: string) => Promise<string>): Promise<void> {
    const handle = await this.#attach();
    const joined = await this.#request({
      janus: 'message',
      handle_id: handle,
      body: { request: 'join', room: JANUS_ROOM, ptype: 'subscriber', streams: [{ feed }] },
    });
    const answerSdp = await answer(joined.jsep!.sdp);
    await this.#request({
      janus: 'message',
      handle_id: handle,
      body: { request: 'start', room: JANUS_ROOM },
      jsep: { type: 'answer', sdp: answerSdp },
    });
  }

  close(): void {
    this.#socket.close();
  }
}
