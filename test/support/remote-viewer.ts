import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const PROCESS_SCRIPT = fileURLToPath(new URL('./remote-viewer-process.ts', import.meta.url));

type ViewerMessage =
  | { type: 'answer'; sdp: string }
  | { type: 'keyframe'; width: number; height: number }
  | { type: 'error'; message: string };

/**
 * A werift viewer in a child process, so that it can live in another network namespace: `wrap`
 * turns its command line into one run there (e.g. {@link LimitedLink.commandInside}). It only
 * does WebRTC; the test does its signaling.
 */
export class RemoteViewer {
  /** The sizes of the VP8 keyframes it received, in order. */
  readonly keyframes: { width: number; height: number }[] = [];
  readonly #child: ChildProcess;
  readonly #answers: ((message: ViewerMessage) => void)[] = [];
  #stderr = '';

  constructor(
    address: string,
    wrap: (command: string[]) => [string, string[]] = (command) => [command[0]!, command.slice(1)],
  ) {
    const [file, args] = wrap([process.execPath, PROCESS_SCRIPT, address]);
    this.#child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4_000);
    });
    createInterface({ input: this.#child.stdout! }).on('line', (line) => {
      const message = JSON.parse(line) as ViewerMessage;
      if (message.type === 'keyframe') this.keyframes.push({ width: message.width, height: message.height });
      else this.#answers.shift()?.(message);
    });
  }

  /** Applies an offer in the child and returns its answer. */
  answer(offerSdp: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const exited = () => reject(new Error(`the viewer process exited: ${this.#stderr}`));
      this.#child.once('exit', exited);
      this.#answers.push((message) => {
        this.#child.off('exit', exited);
        if (message.type === 'answer') resolve(message.sdp);
        else reject(new Error(message.type === 'error' ? message.message : 'unexpected reply'));
      });
      this.#child.stdin!.write(`${JSON.stringify({ type: 'offer', sdp: offerSdp })}\n`);
    });
  }

  /** The width of the last keyframe received (0 before the first). */
  get width(): number {
    return this.keyframes.at(-1)?.width ?? 0;
  }

  /** Ends the child (closing its stdin ends its connection); kills it if it lingers. */
  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.stdin!.end();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
