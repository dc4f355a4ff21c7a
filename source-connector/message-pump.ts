/**
 * Runs replication messages through a handler in arrival order. While the handler answers
 * synchronously (almost every row change) a message costs one call: no queue, no promise,
 * no event-emitter round trip, no copy of its bytes. When the handler returns a promise
 * (Kafka back-pressure, a Relation message that registers a schema) the socket is paused,
 * messages already read off it wait here as copies, and run in order once the promise
 * settles; the socket resumes when the queue is empty.
 */
export interface PumpHandlers {
  /** Handle one message; a promise means: wait for it before the next one. */
  handle(message: Buffer): void | Promise<void>;
  /** Stop reading the socket (messages already read still arrive through push). */
  pause(): void;
  resume(): void;
  /** The handler failed: the pump stops taking messages. */
  fail(err: unknown): void;
}

export class MessagePump {
  private queue: (Buffer | undefined)[] = [];
  private head = 0;
  private busy = false;
  private stopped = false;
  /** Messages pushed. */
  received = 0;
  /** Messages whose handler has finished (or failed). */
  handled = 0;

  constructor(private readonly h: PumpHandlers) {}

  /**
   * `view` may point into the connection's read buffer, valid only during this call: it is
   * copied when it has to wait.
   */
  push(view: Buffer): void {
    if (this.stopped) return;
    this.received++;
    if (this.busy) this.queue.push(Buffer.from(view));
    else this.run(view);
  }

  /** Every pushed message has been handled. */
  get idle(): boolean {
    return this.received === this.handled;
  }

  /** Drop what waits and take nothing more. */
  stop(): void {
    this.stopped = true;
    this.queue = [];
    this.head = 0;
  }

  private run(message: Buffer): void {
    let pending: void | Promise<void>;
    try {
      pending = this.h.handle(message);
    } catch (err) {
      this.handled++;
      this.failed(err);
      return;
    }
    if (pending === undefined) {
      this.handled++;
      return;
    }
    this.busy = true;
    this.h.pause();
    pending.then(
      () => {
        this.handled++;
        this.drain();
      },
      (err: unknown) => {
        this.handled++;
        this.failed(err);
      },
    );
  }

  private drain(): void {
    this.busy = false;
    while (!this.busy && !this.stopped && this.head < this.queue.length) {
      const next = this.queue[this.head]!;
      this.queue[this.head++] = undefined;
      this.run(next);
    }
    if (this.busy || this.stopped) return;
    this.queue = [];
    this.head = 0;
    this.h.resume();
  }

  private failed(err: unknown): void {
    this.stop();
    this.h.fail(err);
  }
}
