import { type ChildProcess, fork } from 'node:child_process';

interface BenchRequest<Command> {
  id: number;
  command: Command;
}

type BenchReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** A bench child process (load generator, UDP floor) driven by request/response over IPC. */
export class BenchChild<Command extends { op: string }> {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  #ids = 0;

  constructor(script: URL, args: string[] = []) {
    this.#child = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#child.on('message', (message: BenchReply) => {
      const pending = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (message.ok) pending?.resolve(message.result);
      else pending?.reject(new Error(message.error));
    });
    this.#child.on('exit', (code) => {
      for (const pending of this.#pending.values()) pending.reject(new Error(`bench child exited (${code})`));
      this.#pending.clear();
    });
  }

  get pid(): number {
    return this.#child.pid!;
  }

  send<T = unknown>(command: Command, timeoutMs = 60_000): Promise<T> {
    const id = ++this.#ids;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`bench child: no answer to ${command.op} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.#child.send({ id, command } satisfies BenchRequest<Command>);
    });
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    await this.send({ op: 'close' } as Command, 20_000).catch(() => this.#child.kill('SIGKILL'));
    const killer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killer);
  }
}

/** The child's side of {@link BenchChild}: runs each command from the parent and sends back its result or error. */
export function serveBenchCommands<Command>(execute: (command: Command) => Promise<unknown>): void {
  process.on('message', (message: BenchRequest<Command>) => {
    const reply = (answer: BenchReply) => process.send!(answer);
    execute(message.command).then(
      (result) => reply({ id: message.id, ok: true, result }),
      (error: unknown) => reply({ id: message.id, ok: false, error: String(error) }),
    );
  });
}
