/**
 * Runs async tasks one after another. Offer/answer is a state machine: two negotiations of the same
 * peer connection must never interleave, whatever order the control API calls arrive in.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    // The next task waits for this one to settle, whether it succeeded or not.
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
