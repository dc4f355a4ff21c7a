/**
 * Contiguous-acknowledgement tracker: which WAL position may be confirmed to the source.
 *
 * Transactions arrive in commit order (pgoutput sends them so); their records are sent to
 * Kafka asynchronously and acknowledged out of order. A transaction's commit end LSN may be
 * confirmed only once it and every earlier transaction are fully acknowledged. Confirming
 * more would let PostgreSQL recycle WAL whose changes Kafka does not have.
 *
 * Pure bookkeeping: no I/O, no timers. Counts are plain numbers (exact up to 2^53).
 */

/** One source transaction. Records may be added (and acknowledged) before it is sealed. */
export class TrackedTx {
  /** Records registered / acknowledged so far; bytes registered and not yet acknowledged. */
  records = 0;
  acked = 0;
  bytes = 0;
  failed = false;
  /** Commit end LSN, set by seal(); null while the transaction is still being read. */
  endLsn: bigint | null = null;

  /** @internal use LsnTracker.begin() */
  constructor(
    private readonly tracker: LsnTracker,
    readonly epoch: number,
    /** Begin's final LSN (or any non-decreasing value): registration order is checked against it. */
    readonly orderLsn: bigint,
  ) {}

  /** Register `records` more records of this transaction carrying `bytes` bytes in total. */
  add(records = 1, bytes = 0): void {
    if (this.endLsn !== null) throw new RangeError('records added to a sealed transaction');
    checkCount(records, bytes);
    this.tracker.added(this, records, bytes);
    this.records += records;
    this.bytes += bytes;
  }

  /** The Commit message was read: no more records; `endLsn` is its end LSN. */
  seal(endLsn: bigint): void {
    if (this.endLsn !== null) throw new RangeError('transaction sealed twice');
    this.tracker.sealing(this, endLsn);
    this.endLsn = endLsn;
  }

  /** Sealed and every record acknowledged. */
  get complete(): boolean {
    return this.endLsn !== null && this.acked === this.records;
  }
}

export class LsnTracker {
  /** Transactions not yet confirmable, oldest first, from `head`. */
  private queue: TrackedTx[] = [];
  private head = 0;
  private confirmed: bigint | null;
  private lastOrderLsn = -1n;
  private lastEndLsn = -1n;
  private epoch = 0;
  private records = 0;
  private bytes = 0;
  private failure: { tx: TrackedTx; cause: unknown } | null = null;

  /** @param confirmed a position already confirmed (e.g. the slot's confirmed_flush_lsn). */
  constructor(confirmed: bigint | null = null) {
    this.confirmed = confirmed;
  }

  /** Records registered and not yet acknowledged: the in-flight count. */
  get pendingRecords(): number {
    return this.records;
  }

  /** Bytes registered and not yet acknowledged. */
  get pendingBytes(): number {
    return this.bytes;
  }

  /** Transactions still held back (open, unacknowledged, failed, or behind one of those). */
  get pendingTransactions(): number {
    return this.queue.length - this.head;
  }

  /** Set once fail() was called, until reset(). */
  get failed(): { tx: TrackedTx; cause: unknown } | null {
    return this.failure;
  }

  /** Start tracking a transaction (on its Begin message). */
  begin(orderLsn: bigint): TrackedTx {
    if (orderLsn < this.lastOrderLsn) {
      throw new RangeError(`transaction at ${orderLsn} registered after one at ${this.lastOrderLsn}: not commit order`);
    }
    this.lastOrderLsn = orderLsn;
    const tx = new TrackedTx(this, this.epoch, orderLsn);
    this.queue.push(tx);
    return tx;
  }

  /** A whole transaction at once, when its Commit is read: begin(endLsn), add, seal. */
  register(endLsn: bigint, records: number, bytes = 0): TrackedTx {
    const tx = this.begin(endLsn);
    if (records > 0 || bytes > 0) tx.add(records, bytes);
    tx.seal(endLsn);
    return tx;
  }

  /**
   * `records` records of `tx` (carrying `bytes`) are durable in Kafka. Returns false for a
   * handle from before the last reset(): its counts no longer exist.
   */
  ack(tx: TrackedTx, records = 1, bytes = 0): boolean {
    if (tx.epoch !== this.epoch) return false;
    checkCount(records, bytes);
    if (tx.acked + records > tx.records) {
      throw new RangeError(`acknowledged ${tx.acked + records} records of a transaction that has ${tx.records}`);
    }
    if (bytes > tx.bytes) throw new RangeError(`acknowledged ${bytes} bytes of a transaction with ${tx.bytes} pending`);
    tx.acked += records;
    tx.bytes -= bytes;
    this.records -= records;
    this.bytes -= bytes;
    return true;
  }

  /** A send of `tx` failed for good: the confirm point stays before it until reset(). */
  fail(tx: TrackedTx, cause?: unknown): void {
    if (tx.epoch !== this.epoch) return;
    tx.failed = true;
    this.failure ??= { tx, cause };
  }

  /**
   * The highest end LSN such that this and every earlier transaction are sealed and fully
   * acknowledged (or the position given to the constructor / idleConfirm, if higher);
   * null if there is none yet. Never decreases.
   */
  confirmable(): bigint | null {
    const q = this.queue;
    let h = this.head;
    while (h < q.length) {
      const tx = q[h];
      if (tx.failed || tx.endLsn === null || tx.acked !== tx.records) break;
      if (this.confirmed === null || tx.endLsn > this.confirmed) this.confirmed = tx.endLsn;
      h++;
    }
    if (h !== this.head) {
      this.head = h;
      if (h === q.length) {
        q.length = 0;
        this.head = 0;
      } else if (h > 1024 && h * 2 > q.length) {
        q.splice(0, h); // compact now and then; amortised O(1)
        this.head = 0;
      }
    }
    return this.confirmed;
  }

  /**
   * On a keep-alive: if nothing is pending (no open, unacknowledged or failed transaction),
   * the server's WAL position `serverLsn` may be confirmed so an idle database does not pin
   * WAL. Returns the new confirm point, or null when something is pending.
   *
   * The caller must have registered every data message received before the keep-alive:
   * the keep-alive vouches only for WAL the stream already delivered. (Keep-alives overtake
   * the data messages that wait in the stream's message pump.)
   */
  idleConfirm(serverLsn: bigint): bigint | null {
    this.confirmable();
    if (this.head !== this.queue.length) return null;
    if (this.confirmed === null || serverLsn > this.confirmed) this.confirmed = serverLsn;
    return this.confirmed;
  }

  /**
   * Forget every transaction and count (e.g. after reconnecting the stream, which replays
   * from the confirmed position). Handles from before are ignored from now on.
   */
  reset(confirmed: bigint | null = this.confirmed): void {
    this.queue = [];
    this.head = 0;
    this.confirmed = confirmed;
    this.lastOrderLsn = -1n;
    this.lastEndLsn = -1n;
    this.epoch++;
    this.records = 0;
    this.bytes = 0;
    this.failure = null;
  }

  /** @internal called by TrackedTx.add */
  added(tx: TrackedTx, records: number, bytes: number): void {
    if (tx.epoch !== this.epoch) throw new RangeError('records added to a transaction from before reset()');
    this.records += records;
    this.bytes += bytes;
  }

  /** @internal called by TrackedTx.seal */
  sealing(tx: TrackedTx, endLsn: bigint): void {
    if (tx.epoch !== this.epoch) throw new RangeError('transaction from before reset() sealed');
    if (endLsn <= this.lastEndLsn) {
      throw new RangeError(`transaction sealed at ${endLsn} after one at ${this.lastEndLsn}: not commit order`);
    }
    this.lastEndLsn = endLsn;
  }
}

function checkCount(records: number, bytes: number): void {
  if (!Number.isSafeInteger(records) || records < 0 || !Number.isSafeInteger(bytes) || bytes < 0) {
    throw new RangeError(`invalid record/byte count ${records}/${bytes}`);
  }
}
