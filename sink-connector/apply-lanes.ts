/**
 * Apply lanes: a fetched batch is handed to its partition's lane and the consumer goes on to
 * its next fetch while the lane applies. kafkajs fetches again only once every batch of the
 * last fetch is handled, so applying inside the handler left the destination idle during
 * each fetch and while the last partitions of a fetch applied alone.
 *
 * Order within a partition is kept: a batch is applied once the one before it has ended. It
 * is taken before that, while there is room: kafkajs fetches again only once every batch of
 * a fetch is taken, so a handler waiting for its partition's batch to end held back the next
 * fetch of every partition, and the lanes ran dry while it came. At most `slots` batches
 * apply at once, and at most twice that many are taken and not yet ended, so the records held
 * stay bounded whatever the number of partitions: those batches plus the fetch whose handlers
 * wait for room. A lane's epoch is bumped when its partition
 * is seeked (stall, new assignment): batches handed over before that are dropped.
 */

export interface LaneWork {
  /** False once the partition was seeked or the lanes closed after this batch was handed over. */
  current(): boolean;
}

export class ApplyLanes {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly epochs = new Map<string, number>();
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private taken = 0;
  private readonly room: (() => void)[] = [];
  private generation = 0;
  /** Batches taken and not yet ended, at most: twice the slots. */
  readonly capacity: number;

  /** `onChange`: batches applying and batches taken but waiting for a slot, after each change. */
  constructor(
    private readonly slots: number,
    private readonly onChange: (applying: number, waiting: number) => void = () => {},
  ) {
    this.capacity = 2 * slots;
  }

  /** Batches of this partition handed over until now are no longer applied. */
  invalidate(key: string): void {
    this.epochs.set(key, (this.epochs.get(key) ?? 0) + 1);
  }

  /** Every lane's batches handed over until now are no longer applied. */
  invalidateAll(): void {
    this.generation++;
  }

  /**
   * Hand a batch to its lane. Resolves once the lane has taken it: when fewer than twice
   * `slots` batches are taken. `work` runs once the partition's batch before it has ended and
   * a slot is free; its errors are its own.
   */
  async handOver(key: string, work: (w: LaneWork) => Promise<void>): Promise<void> {
    const epoch = this.epochs.get(key) ?? 0;
    const generation = this.generation;
    const w: LaneWork = { current: () => (this.epochs.get(key) ?? 0) === epoch && this.generation === generation };
    while (this.taken >= this.capacity) await new Promise<void>((resolve) => this.room.push(resolve));
    if (!w.current()) {
      this.room.shift()?.(); // the room it was woken for goes to the next waiter
      return;
    }
    this.taken++;
    // A tail never rejects: the slot is always acquired, so always released below.
    const before = this.tails.get(key);
    const slot = before
      ? before.then(async () => {
          await this.acquire();
          this.report();
        })
      : this.acquire();
    this.report();
    const run = slot
      .then(() => (w.current() ? work(w) : undefined))
      .finally(() => {
        this.release();
        this.taken--;
        this.report();
        this.room.shift()?.();
      });
    const tail = run.then(
      () => {},
      () => {},
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
  }

  /** Resolves once every batch handed over has ended (applied, dropped or failed). */
  async drain(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()]);
  }

  private acquire(): Promise<void> {
    if (this.running < this.slots) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push(resolve));
  }

  private report(): void {
    this.onChange(this.running, this.taken - this.running);
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.running--;
  }
}
