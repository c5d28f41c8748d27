/**
 * Hands one request's events from the worker-message handler (push) to whoever reads the request
 * (async iteration). Unbounded, because a request produces at most max_ticks + 1 events; a reader
 * that is slow to write them to its client holds at most that many.
 */
export class EventChannel<T> implements AsyncIterable<T> {
  private readonly buffered: T[] = [];
  private waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  private done = false;
  private error: unknown;

  get closed(): boolean {
    return this.done;
  }

  push(event: T): void {
    if (this.done) return;
    if (this.waiting) {
      const { resolve } = this.waiting;
      this.waiting = undefined;
      resolve({ value: event, done: false });
    } else {
      this.buffered.push(event);
    }
  }

  /** No more events; the reader finishes after the buffered ones. */
  end(): void {
    this.close(undefined);
  }

  /** The reader throws `error` after the buffered events. */
  fail(error: unknown): void {
    this.close(error ?? new Error("channel failed without an error. This is a bug."));
  }

  private close(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    if (this.waiting && this.buffered.length === 0) {
      const { resolve, reject } = this.waiting;
      this.waiting = undefined;
      if (error === undefined) resolve({ value: undefined, done: true });
      else reject(error);
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    while (true) {
      const next = this.buffered.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.done) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      const result = await new Promise<IteratorResult<T>>((resolve, reject) => {
        this.waiting = { resolve, reject };
      });
      if (result.done) return;
      yield result.value;
    }
  }
}
